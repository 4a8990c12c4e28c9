"""lacy_labels: the domain library behind LaCy delegation labels (no Beam inside).

Data flows one way: corpus -> grammar (spaCy) -> align (subwords) -> scoring (reference
losses) -> rules (delegate) -> schema (Arrow rows). The public API is one import:

    from lacy_labels import Annotator, LabelRule, Scorer, add_labels, load_reference, rows_to_table

Names are imported on first use, so `import lacy_labels` stays light (no spaCy, no torch).
"""

from lacy_labels.lazy import lazy_exports

__version__ = "0.1.0"

_API = {
    "Annotator": "lacy_labels.annotate",
    "add_labels": "lacy_labels.records",
    "build_record": "lacy_labels.records",
    "Reference": "lacy_labels.reference",
    "load_reference": "lacy_labels.reference",
    "DEFAULT_MODEL": "lacy_labels.reference",
    "Scorer": "lacy_labels.scoring",
    "ScoreConfig": "lacy_labels.scoring",
    "LabelRule": "lacy_labels.rules",
    "FactRule": "lacy_labels.facts",
    "LossSketch": "lacy_labels.thresholds",
    "SCHEMA": "lacy_labels.schema",
    "rows_to_table": "lacy_labels.schema",
    "validate_table": "lacy_labels.schema",
    "read_metadata": "lacy_labels.schema",
    "load_spacy": "lacy_labels.grammar",
    "DEFAULT_SPACY_MODEL": "lacy_labels.grammar",
    "align_subwords": "lacy_labels.align",
    "iter_wiki_docs": "lacy_labels.corpus",
    "Reject": "lacy_labels.validate",
    "REASONS": "lacy_labels.validate",
}
__all__ = sorted(_API)

__getattr__, __dir__ = lazy_exports(__name__, _API)
