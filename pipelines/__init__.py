"""Apache Beam wiring, I/O and options for LaCy labelling (the domain logic is in lacy_labels)."""
