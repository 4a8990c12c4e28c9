"""The Hugging Face dataset card (DIR/README.md) for a labelled output directory: YAML header
(license, language, task categories, configs -> data files, dataset_info features) and a body
describing every column, the rule, thresholds, versions and headline stats."""

from __future__ import annotations

import json

import yaml

from lacy_labels.schema import COLUMN_DOCS, SCHEMA
from pipelines.stats import COUNT_KEYS, SHARE_KEYS


def card_header(license: str, n_docs: int) -> dict:
    import datasets

    features = datasets.Features.from_arrow_schema(SCHEMA)
    return {
        "license": license,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["lacy", "delegation-labels", "token-classification-labels"],
        "size_categories": [_size_category(n_docs)],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}
        ],
        "dataset_info": {
            "features": yaml_features(features),
            "splits": [{"name": "train", "num_examples": n_docs}],
        },
    }


def yaml_features(features) -> list[dict]:
    """The Hub card's `dataset_info.features` for flat columns and lists of values (all this
    schema has), written from datasets' public feature types."""
    import datasets

    out = []
    for name, f in features.items():
        item = getattr(f, "feature", None)
        if isinstance(f, datasets.Value):
            out.append({"name": name, "dtype": f.dtype})
        elif isinstance(item, datasets.Value):
            out.append({"name": name, "list": item.dtype})
        else:
            raise ValueError(f"column {name!r}: no card YAML for feature {f!r}")
    return out


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return name
    return "n>1M"


def render_card(settings: dict, provenance: dict, stats: dict) -> str:
    header = yaml.safe_dump(
        card_header(settings["license"], stats["documents_out"]),
        sort_keys=False,
        allow_unicode=True,
    )
    cols = "\n".join(f"| `{f.name}` | `{f.type}` | {COLUMN_DOCS[f.name]} |" for f in SCHEMA)
    rule = provenance["label_rule"]
    versions = {k: v for k, v in provenance.items() if k not in ("fact_rule", "label_rule")}
    headline = {k: stats.get(k) for k in (*COUNT_KEYS, *SHARE_KEYS, "wall_time_s")}
    return f"""---
{header}---

# LaCy delegation labels

Token-level delegation labels made with [lacy](https://arxiv.org/abs/2602.12005)-style
labelling: a subword is a `<CALL>` target (`delegate`) when a spaCy-based fact proxy flags it
**and** its reference-model loss is high. One row per document.

## Columns

| column | type | meaning |
|---|---|---|
{cols}

## Labelling rule

- Rule: `{rule["rule"]}` (scope `{rule["scope"]}`): {_rule_text(rule)}
- Threshold used: `{stats.get("threshold")}` nats (from {stats.get("threshold_source")}).
- Fact proxy: `{json.dumps(provenance["fact_rule"])}` (a word is a fact when it lies in a named
  entity of the listed types (empty = any), or its coarse POS or dependency label is listed,
  and its coarse POS is not excluded).
- Reference losses: `-log p(token | start token, all preceding tokens)`, windows of
  {provenance["window"]} positions with at least {provenance["min_context"]} tokens of left
  context.

## Versions

```json
{json.dumps(versions, indent=1, sort_keys=True)}
```

## Headline statistics

```json
{json.dumps(headline, indent=1)}
```

Rejected input records are listed in `rejects/rejects-*.jsonl` with their reason; full statistics
are in `stats.json` and the resolved settings in `config.json`.
"""


def _rule_text(rule: dict) -> str:
    floor = rule.get("min_loss") or 0.0
    also = f" and at least {floor:g} nats" if floor else ""
    if rule["rule"] == "lacy":
        return (
            f"fact tokens whose loss is at or above the {rule['fact_quantile']:.0%} quantile "
            f"of fact-token losses{also} are delegated (the top {1 - rule['fact_quantile']:.0%}"
            f"{', above the floor' if floor else ''})."
        )
    if rule["rule"] == "loss":
        return f"the top {rule['loss_fraction']:.0%} of all tokens by loss{also} are delegated."
    return "nothing is delegated."
