"""The <CALL> trainer (`trainer.train`), its data stream, objectives, evaluation and cascade
generation with a bigger model."""
