"""A fact world where the truth is known: do LaCy labels teach an SLM when to delegate?

    python -m bench.factworld [--world bench/assets/factworld.json] [--budget 150000] [--seeds 5]

Invented people get attribute values (drawn once per person) and biographies built from
templates; `{a|b|c}` in a template is a harmless choice drawn afresh at every use: wording that
states no fact and that no model can predict either. Facts about held-out people are truly
unpredictable, and the generator knows exactly which characters are values and which are
choices. The real pipeline labels the training biographies (spaCy fact proxy, reference-model
losses, the rules), the real trainer trains SLMs on the shards, the real cascade code scores
them, and the evaluation uses the generator's spans, not spaCy:

- oracle cascade, teacher-forced, at a call budget equal to the value-token share and at 22%: a
  called position counts as right (a database that knows the world answers it), otherwise the
  SLM's top non-<CALL> token must be: value accuracy, and where the calls land (values,
  choices, elsewhere); the same for each SLM's uncertainty baseline;
- generation (FactScore in this world): the held-out biography up to a value is the prompt; a
  call is answered with the true value; a stated value is right if it is the true one and a
  hallucination if it is another value of that attribute.

Writes factworld.md and factworld.png under --results and prints one JSON object last.

One module per job: `world` (the generator), `labels` (labelling and token classes),
`evaluation` (oracle cascade, FactScore, diagnosis; the arithmetic is trainer.calls'), `report`
(verdict and results page) and `run` (`main`)."""

from bench.factworld.evaluation import evaluate, generation, oracle
from bench.factworld.labels import (
    CHOICE,
    KINDS,
    NAME_AGAIN,
    NAME_FIRST,
    OTHER,
    VALUE,
    eval_shards,
    label,
    label_profile,
    read_rows,
    row_classes,
    stream_classes,
    token_classes,
)  # fmt: skip
from bench.factworld.report import CLAIMS, HEADLINE, baseline_of, verdict
from bench.factworld.run import OBJECTIVES, main
from bench.factworld.world import (
    DEFAULT_WORLD,
    SECOND_WORLD,
    attribute_values,
    build_corpus,
    load_world,
    prompts,
    render,
    stated_value,
)  # fmt: skip
from trainer.calls import factscore, threshold_at

__all__ = [
    "CHOICE", "CLAIMS", "DEFAULT_WORLD", "HEADLINE", "KINDS", "NAME_AGAIN", "NAME_FIRST",
    "OBJECTIVES", "OTHER", "SECOND_WORLD", "VALUE", "attribute_values", "baseline_of",
    "build_corpus", "eval_shards", "evaluate", "factscore", "generation", "label",
    "label_profile", "load_world", "main", "oracle", "prompts", "read_rows", "render",
    "row_classes", "stated_value", "stream_classes", "threshold_at", "token_classes", "verdict",
]  # fmt: skip
