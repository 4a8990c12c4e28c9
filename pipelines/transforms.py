"""Beam steps around the lacy_labels stages. The grammar stage (spaCy + subwords, CPU work) and
the scoring stage (the reference model, accelerator work) are separate, so that a runner can put
them on different workers. Models load once per worker process (a `Shared` handle for spaCy and
the tokenizer; RunInference's model management for the reference model, one copy per GPU when
scoring runs on one), never per element. A document that makes a stage fail is isolated (its
group is retried one document at a time) and rejected with the error."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.utils import shared

from lacy_labels import codec
from lacy_labels.memory import release_free_memory
from lacy_labels.records import add_labels
from lacy_labels.validate import Reject, resolve_duplicates
from pipelines.config import LabelConfig
from pipelines.metrics import NAMESPACE

REJECTS = "rejects"
log = logging.getLogger("lacy")


def stable_bucket(key: str, buckets: int) -> int:
    """Process-independent hash bucket (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % max(buckets, 1)


def _reject(doc: dict, stage: str, err: Exception) -> dict:
    return Reject(
        doc["id"],
        doc.get("source", ""),
        doc.get("index", -1),
        "processing_error",
        f"{stage}: {type(err).__name__}: {err}",
    ).to_dict()


def isolate(work, items: list, stage: str) -> tuple[list, list[dict]]:
    """`work(items)` on the whole list; on failure once per item, rejecting those that fail."""
    try:
        return work(items), []
    except Exception:  # noqa: BLE001 - isolate the document that breaks the group
        log.warning("%s failed on a group of %d; retrying one by one", stage, len(items))
    good, bad = [], []
    for item in items:
        try:
            good.extend(work([item]))
        except Exception as e:  # noqa: BLE001
            bad.append(_reject(item, stage, e))
    return good, bad


def count_rejects(reject: dict) -> dict:
    """Beam Metrics for one reject (a pass-through)."""
    Metrics.counter(NAMESPACE, "documents_rejected").inc()
    Metrics.counter(NAMESPACE, f"rejected_{reject['reason']}").inc()
    return reject


# -- grammar stage ------------------------------------------------------------------------------


class GrammarModels:
    """What the grammar stage loads once per worker process: spaCy and the reference tokenizer
    (its vocabulary makes the subwords; the reference model's weights are not loaded here).
    A runner may process bundles in several threads of one process (Dataflow's SDK harness
    does, so does --direct_running_mode=multi_threading): the lock lets one of them at a time
    use spaCy, whose vocabulary and memory zones are not thread-safe (its parse holds the GIL
    most of the time anyway)."""

    def __init__(self, cfg: LabelConfig):
        from lacy_labels.annotate import Annotator
        from lacy_labels.reference import resolve_model_dir, shared_tokenizer

        tok = shared_tokenizer(str(resolve_model_dir(cfg.reference_model, cfg.model_cache)))
        self.annotator = Annotator(
            tok, cfg.spacy_model, cfg.fact_rule(), cfg.spacy_batch_size, cfg.max_parse_chars
        )
        self.lock = threading.Lock()


class AnnotateDoFn(beam.DoFn):
    """(group key, documents) -> the group's records (spaCy + subwords + alignment + facts),
    packed as one `bytes` (lacy_labels.codec) for the shuffle to the scorers. Documents sharing an
    id are in the same group (the key is a hash of the id), so duplicate ids are resolved here,
    deterministically, without a shuffle of their own."""

    def __init__(self, cfg: LabelConfig, handle: shared.Shared):
        self.cfg, self.handle = cfg, handle

    def setup(self):
        cfg = self.cfg
        self.models = self.handle.acquire(lambda: GrammarModels(cfg), tag="grammar")

    def _work(self, docs: list[dict]) -> list[dict]:
        with self.models.lock:
            records = self.models.annotator.annotate(docs)
        for d, r in zip(docs, records):
            r["source"], r["index"] = d["source"], d["index"]
        return records

    def process(self, element):
        _, docs = element
        docs, dups = unique_by_id(docs)
        for d in dups:
            yield beam.pvalue.TaggedOutput(REJECTS, d)
        records, rejects = isolate(self._work, docs, "annotate")
        for r in rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if records:
            yield codec.pack_many(records)


def unique_by_id(docs: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """Documents sorted by id, one per id (the first by source and index), and the rejects."""
    by_id: dict[str, list[dict]] = {}
    for d in docs:
        by_id.setdefault(d["id"], []).append(d)
    keep, rejects = [], []
    for doc_id in sorted(by_id):
        first, dups = resolve_duplicates(doc_id, by_id[doc_id])
        keep.append(first)
        rejects.extend(r.to_dict() for r in dups)
    return keep, rejects


# -- scoring stage ------------------------------------------------------------------------------


class ScoreModelHandler(ModelHandler):
    """RunInference handler: a pre-batched group of records in, the same records out with
    `ref_loss` (or ("reject", reject dict) for a document that failed). lacy's Scorer does the
    windowing and the length bucketing inside the group."""

    def __init__(self, cfg: LabelConfig, threads: int | None = None):
        super().__init__()
        self.cfg, self.threads = cfg, threads
        self.progress = Progress()

    def load_model(self):
        from lacy_labels.reference import load_reference
        from lacy_labels.scoring import Scorer

        cfg = self.cfg
        ref = load_reference(
            cfg.reference_model, cfg.model_cache, cfg.device, cfg.dtype, self.threads,
            cfg.linear_kernel,
        )  # fmt: skip
        log.info(
            "reference model loaded for scoring: %s on %s (%s, %s torch threads)",
            cfg.reference_model, cfg.device, cfg.dtype, torch_threads(),
        )  # fmt: skip
        return Scorer(ref, cfg.score_config())

    def run_inference(self, batch, model, inference_args=None):
        # A model shared across processes is a proxy: a callback would run (and count) in the
        # process that holds the model, so the distribution is kept per group here instead.
        if self.share_model_across_processes():
            progress = None
            self.progress.per_batch.update(sum(len(r["input_ids"]) for r in batch))
        else:
            progress = self.progress

        def work(records):
            docs = [r["input_ids"] for r in records]
            for r, loss in zip(records, model.score(docs, progress=progress)):
                r["ref_loss"] = loss
            return records

        scored, rejects = isolate(work, list(batch), "score")
        release_free_memory()  # the group's logits blocks, before its records pile up downstream
        return [("ok", r) for r in scored] + [("reject", r) for r in rejects]

    def get_num_bytes(self, batch) -> int:
        # Beam's default pickles the whole batch to measure it; the ids are what is scored.
        return sum(r["input_ids"].nbytes for r in batch)

    def should_skip_batching(self) -> bool:
        return True  # elements are already groups

    def share_model_across_processes(self) -> bool:
        # One copy per accelerator however many SDK processes the worker runs; on CPU every
        # process scores with its own copy (sharing would ship every record between processes).
        return self.cfg.device.split(":")[0] == "cuda"

    def get_metrics_namespace(self) -> str:
        return "lacy_score"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


class Progress:
    """Scorer progress callback: a Beam distribution per forward batch, and a log line with this
    handler's rate every `every` seconds. One per ScoreModelHandler (each DoFn instance holds
    its own copy of the handler)."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.tokens = self.docs = 0
        self.t0 = self.last = None
        self.per_batch = Metrics.distribution(NAMESPACE, "tokens_per_batch")

    def __call__(self, tokens: int, docs: int) -> None:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = self.last = now
        if tokens:
            self.per_batch.update(tokens)
        self.tokens += tokens
        self.docs += docs
        if now - self.last >= self.every:
            dt = max(now - self.t0, 1e-9)
            log.info(
                "scored %d docs, %d tokens: %.1f docs/s, %.0f tokens/s (this worker)",
                self.docs, self.tokens, self.docs / dt, self.tokens / dt,
            )  # fmt: skip
            self.last = now


def split_scored(result):
    kind, value = result
    if kind == "ok":
        yield value
    else:
        yield beam.pvalue.TaggedOutput(REJECTS, value)


def score_transform(cfg: LabelConfig, threads: int | None = None) -> beam.PTransform:
    """RunInference over groups (`threads` torch threads per scoring process), with Beam
    resource hints when an accelerator is named."""
    from apache_beam.ml.inference.base import RunInference

    step = RunInference(ScoreModelHandler(cfg, threads))
    if cfg.score_accelerator:
        step = step.with_resource_hints(accelerator=cfg.score_accelerator)
    return step


# -- labels -------------------------------------------------------------------------------------


class LabelDoFn(beam.DoFn):
    """Packed scored record -> the record with `delegate` under the dataset-wide (or fixed)
    threshold, or the document's own; counts what was labelled."""

    def __init__(self, rule):
        self.rule = rule
        self.out = Metrics.counter(NAMESPACE, "documents_out")
        self.tokens = Metrics.counter(NAMESPACE, "tokens")
        self.facts = Metrics.counter(NAMESPACE, "fact_tokens")
        self.delegated = Metrics.counter(NAMESPACE, "delegated_tokens")
        self.per_doc = Metrics.distribution(NAMESPACE, "tokens_per_document")

    def process(self, packed: bytes, threshold: float | None):
        r = codec.unpack(packed)
        r = add_labels(r, r["ref_loss"], self.rule, threshold)
        self.out.inc()
        self.tokens.inc(len(r["input_ids"]))
        self.facts.inc(int(r["is_fact"].sum()))
        self.delegated.inc(int(r["delegate"].sum()))
        self.per_doc.update(len(r["input_ids"]))
        yield r


def population(r: dict, rule):
    """The losses the rule's threshold is taken over (a batch for the loss sketch)."""
    return rule.population(r["ref_loss"], r["is_fact"])


def all_losses(r: dict):
    return r["ref_loss"]
