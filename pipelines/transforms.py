"""Beam DoFns around the lacy_labels stages. Models load once per worker process through a
`Shared` handle in `setup`, never per element or bundle. A document that makes a stage fail is
isolated (the batch is retried one document at a time) and rejected with the error."""

from __future__ import annotations

import hashlib
import logging
import time

import apache_beam as beam
import numpy as np
from apache_beam.utils import shared

from lacy_labels.annotate import Annotator
from lacy_labels.records import add_labels
from lacy_labels.reference import load_reference
from lacy_labels.scoring import Scorer
from lacy_labels.validate import Reject
from pipelines.config import LabelConfig

REJECTS = "rejects"
log = logging.getLogger("lacy")


def stable_bucket(key: str, buckets: int) -> int:
    """Process-independent hash bucket (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % max(buckets, 1)


def _reject(doc: dict, stage: str, err: Exception) -> beam.pvalue.TaggedOutput:
    r = Reject(
        doc["id"],
        doc.get("source", ""),
        doc.get("index", -1),
        "processing_error",
        f"{stage}: {type(err).__name__}: {err}",
    )
    return beam.pvalue.TaggedOutput(REJECTS, r.to_dict())


class _Isolating(beam.DoFn):
    """Runs `work` on a whole batch; on failure, once per document, rejecting the ones that fail."""

    stage = ""

    def work(self, items: list) -> list:
        raise NotImplementedError

    def run_batch(self, items: list):
        try:
            return self.work(items), []
        except Exception:  # noqa: BLE001 - isolate the document that breaks the batch
            log.warning("%s failed on a batch of %d; retrying one by one", self.stage, len(items))
        good, bad = [], []
        for item in items:
            try:
                good.extend(self.work([item]))
            except Exception as e:  # noqa: BLE001
                bad.append(_reject(item, self.stage, e))
        return good, bad


class WorkerModels:
    """What a worker process loads once and both stages share: the reference model with its
    tokenizer (the subword vocabulary) and the spaCy pipeline."""

    def __init__(self, cfg: LabelConfig):
        ref = load_reference(
            cfg.reference_model,
            cfg.model_cache,
            cfg.device,
            cfg.dtype,
            cfg.threads,
            cfg.linear_kernel,
        )
        self.annotator = Annotator(
            ref.tokenizer,
            cfg.spacy_model,
            cfg.fact_rule(),
            cfg.spacy_batch_size,
            cfg.max_parse_chars,
        )
        self.scorer = Scorer(ref, cfg.score_config())


def acquire_models(handle: shared.Shared, cfg: LabelConfig) -> WorkerModels:
    return handle.acquire(lambda: WorkerModels(cfg), tag="models")


class AnnotateDoFn(_Isolating):
    """(batch key, documents) -> one list of records (spaCy + subwords + alignment + facts)."""

    stage = "annotate"

    def __init__(self, cfg: LabelConfig, handle: shared.Shared):
        self.cfg, self.handle = cfg, handle

    def setup(self):
        self.annotator = acquire_models(self.handle, self.cfg).annotator

    def work(self, docs):
        records = self.annotator.annotate(docs)
        for d, r in zip(docs, records):
            r["source"], r["index"] = d["source"], d["index"]
        return records

    def process(self, element):
        _, docs = element
        docs = sorted(docs, key=lambda d: d["id"])
        records, rejects = self.run_batch(docs)
        yield from rejects
        if records:
            yield records


class ScoreDoFn(_Isolating):
    """List of records -> records with `ref_loss`, scored in length-bucketed batches."""

    stage = "score"

    def __init__(self, cfg: LabelConfig, handle: shared.Shared):
        self.cfg, self.handle = cfg, handle
        self.docs = self.tokens = 0
        self.t0 = self.last = None

    def setup(self):
        self.scorer = acquire_models(self.handle, self.cfg).scorer

    def work(self, records):
        losses = self.scorer.score([r["input_ids"] for r in records], progress=self._progress)
        for r, loss in zip(records, losses):
            r["ref_loss"] = loss
        return records

    def process(self, records):
        if self.t0 is None:
            self.t0 = self.last = time.monotonic()
        scored, rejects = self.run_batch(records)
        yield from rejects
        yield from scored

    def _progress(self, tokens: int, docs: int):
        """Called after every forward batch: logs this worker's rate every 5 seconds."""
        now = time.monotonic()
        self.tokens += tokens
        self.docs += docs
        if now - self.last >= 5.0:
            dt = max(now - self.t0, 1e-9)
            log.info(
                "labelled %d docs, %d tokens: %.1f docs/s, %.0f tokens/s (this worker)",
                self.docs,
                self.tokens,
                self.docs / dt,
                self.tokens / dt,
            )
            self.last = now


def label_record(r: dict, thresholds: dict, rule) -> dict:
    """Attach `delegate` using the dataset-wide threshold (or the document's own)."""
    return add_labels(r, r["ref_loss"], rule, thresholds.get("threshold"))


def population(r: dict, rule) -> list[float]:
    """The losses the rule's threshold is taken over (a batch for the loss sketch)."""
    return rule.population(r["ref_loss"], r["is_fact"])


def all_losses(r: dict) -> np.ndarray:
    return r["ref_loss"]
