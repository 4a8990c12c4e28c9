"""lacy_labels: the domain library behind LaCy delegation labels (no Beam inside).

Data flows one way: corpus -> grammar (spaCy) -> align (subwords) -> scoring (reference
losses) -> rules (delegate) -> schema (Arrow rows).
"""

__version__ = "0.1.0"
