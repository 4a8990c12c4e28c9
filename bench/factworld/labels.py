"""The fact world's labels: the real pipeline labels the biographies, and each labelled token is
classed by the generator's spans (value, choice, name mention, other), not by spaCy."""

from __future__ import annotations

import os

import numpy as np

from bench.common import label_docs as label  # noqa: F401 - the fact world's labelling helper

OTHER, VALUE, CHOICE = 0, 1, 2
KINDS = {"value": VALUE, "choice": CHOICE}
NAME_FIRST, NAME_AGAIN = 3, 4


def token_classes(char_start, char_end, spans) -> np.ndarray:
    """OTHER, VALUE or CHOICE per token: the kind of span its characters overlap (a value wins)."""
    cls = np.zeros(len(char_start), dtype=np.int8)
    start, end = np.asarray(char_start), np.asarray(char_end)
    for kind in ("choice", "value"):  # values last: they win where both overlap
        for s, e, k, _ in spans:
            if k == kind:
                cls[(start < e) & (end > s)] = KINDS[kind]
    return cls


def read_rows(out_dir: str) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for name in sorted(os.listdir(f"{out_dir}/data")):
        rows += pq.read_table(f"{out_dir}/data/{name}").to_pylist()
    return rows


def label_profile(out_dir: str, spans: dict) -> dict:
    """Mean reference loss and the share delegated, on value, choice and other tokens."""
    loss, dele, cls = [], [], []
    for r in read_rows(out_dir):
        loss.append(np.array(r["ref_loss"], dtype=np.float64))
        dele.append(np.array(r["delegate"], dtype=bool))
        cls.append(token_classes(r["char_start"], r["char_end"], spans[r["id"]]))
    loss, dele, cls = (np.concatenate(a) for a in (loss, dele, cls))
    out = {}
    for name, k in (("value", VALUE), ("choice", CHOICE), ("other", OTHER)):
        m = cls == k
        out[f"{name}_tokens"] = int(m.sum())
        out[f"{name}_mean_ref_loss"] = round(float(np.nanmean(loss[m])), 3)
        out[f"{name}_delegated"] = round(float(dele[m].mean()), 4)
    out["delegated_share"] = round(float(dele.mean()), 4)
    return out


def eval_shards(out_dir: str, spans: dict, dest: str) -> None:
    """The held-out shards with the generator's truth in the columns the trainer's reader
    carries: `is_fact` = value token, `delegate` = choice token."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_rows(out_dir)
    classes = [token_classes(r["char_start"], r["char_end"], spans[r["id"]]) for r in rows]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "input_ids": [r["input_ids"] for r in rows],
            "is_fact": [(c == VALUE).tolist() for c in classes],
            "delegate": [(c == CHOICE).tolist() for c in classes],
            "ref_loss": [r["ref_loss"] for r in rows],
        }
    )
    os.makedirs(f"{dest}/data", exist_ok=True)
    pq.write_table(table, f"{dest}/data/train-00000-of-00001.parquet")


def row_classes(row: dict, spans: list) -> np.ndarray:
    """Per token of one labelled row: value, choice, first or repeated name mention, other (a
    value or choice wins where a name overlaps it)."""
    cls = token_classes(row["char_start"], row["char_end"], spans).astype(np.int8)
    start, end = np.asarray(row["char_start"]), np.asarray(row["char_end"])
    names = [(s, e) for s, e, k, _ in spans if k == "name"]
    for i, (s, e) in enumerate(names):
        hit = (start < e) & (end > s) & (cls == OTHER)
        cls[hit] = NAME_FIRST if i == 0 else NAME_AGAIN
    return cls


def stream_classes(heldout_labelled: str, spans: dict) -> np.ndarray:
    """Per target position of the held-out stream (documents in shard order, a separator after
    each, as trainer.data reads them): `row_classes` of each document."""
    parts = []
    for r in read_rows(heldout_labelled):
        parts += [row_classes(r, spans[r["id"]]), np.array([OTHER], dtype=np.int8)]
    return np.concatenate(parts)[1:]
