"""The <CALL> trainer and cascade generation (not implemented yet: see the trainer issue)."""
