"""Reference-model per-token losses: ref_loss[i] = -log p(token_i | start token, tokens < i).

Documents are cut into windows of at most `window` positions; a window after the first starts
`min_context` positions before the first token it scores, so every token keeps at least that much
left context and memory stays bounded for any document length. Windows of many documents are
sorted by length and batched under a token budget (little compute goes to padding); the vocabulary
projection runs in row chunks so that logits for a whole batch never sit in memory at once
(lacy_labels.head: fp32 logits, or bf16 ones centred on the target on CPU).

Because the head is recomputed here (the backbone's hidden states times the output embeddings),
the logit post-processing some families apply in their forward is applied too (Granite's
`logits_scaling`, Cohere's `logit_scale`, Gemma 2/3's final softcapping), and every Scorer checks
at construction that its losses equal the model's own `log_softmax(model(ids).logits)` on a
probe, refusing a model whose forward does something else."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lacy_labels.head import logits_postprocess, make_head
from lacy_labels.reference import Reference

PROBE_TEXTS = (
    "Ada Lovelace was born in London on 10 December 1815.",
    "The Rhine flows 1,230 km from the Alps to the North Sea.",
)
PROBE_TOLERANCE = {"float32": 1e-3}  # nats; reduced precision: PROBE_TOLERANCE_REDUCED
# The model's own bf16 forward rounds its logits to bf16 (lacy's head stays fp32): ~0.1 nats.
PROBE_TOLERANCE_REDUCED = 0.2
BATCH_TOKENS = {"cpu": 1024, "cuda": 32768}  # padded positions per forward batch, by device


def default_batch_tokens(device_type: str) -> int:
    """The forward batch size (padded positions) a device gets unless one is set: CPU batches
    stay cache-sized; a GPU needs large batches to be busy."""
    return BATCH_TOKENS.get(str(device_type).split(":")[0], BATCH_TOKENS["cuda"])


@dataclass(frozen=True)
class ScoreConfig:
    window: int = 1024
    min_context: int | None = None  # default: window // 8
    batch_tokens: int | None = None  # padded positions per forward batch (None: by device)
    row_chunk: int = 128  # rows per vocabulary projection: bounds logits memory, cache-sized

    def context(self) -> int:
        c = self.window // 8 if self.min_context is None else self.min_context
        if not 0 <= c < self.window:
            raise ValueError(
                f"min_context must be in [0, window): got {c} for window {self.window}"
            )
        return c


@dataclass(frozen=True)
class Segment:
    """Sequence positions [a, b) of document `doc`, scoring targets keep..b-1 (sequence indices)."""

    doc: int
    a: int
    b: int
    keep: int


def plan_windows(doc: int, length: int, window: int, context: int) -> list[Segment]:
    """Windows over a sequence of `length` positions (start token included)."""
    if length < 2:
        return []
    segs, a, keep = [], 0, 1
    while True:
        b = min(a + window, length)
        segs.append(Segment(doc, a, b, keep))
        if b == length:
            return segs
        keep, a = b, b - context


def plan_batches(segs: list[Segment], batch_tokens: int) -> list[list[Segment]]:
    """Longest-first length bucketing: each batch's rows x longest row <= batch_tokens."""
    order = sorted(segs, key=lambda s: (-(s.b - s.a), s.doc, s.a))
    batches, cur = [], []
    for s in order:
        longest = (cur[0].b - cur[0].a) if cur else (s.b - s.a)
        if cur and (len(cur) + 1) * longest > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(s)
    if cur:
        batches.append(cur)
    return batches


class Scorer:
    """Scores token-id arrays with a loaded reference model."""

    def __init__(self, ref: Reference, config: ScoreConfig = ScoreConfig(), check: bool = True):
        self.ref = ref
        self.config = config
        self.context = config.context()
        self.backbone = ref.model.base_model
        self.head = make_head(ref.model, logits_postprocess(ref.model.config))
        self.device = next(ref.model.parameters()).device
        self.batch_tokens = config.batch_tokens or default_batch_tokens(self.device.type)
        if check:
            self.check_against_forward()

    def check_against_forward(self) -> float:
        """Max |lacy loss - the model's own forward loss| on two probe texts (padded together);
        raises ValueError naming the model type when it exceeds the dtype's tolerance."""

        tok = self.ref.tokenizer
        fits = self.config.window - 1  # a probe inside one window: no context is cut
        docs = [
            np.asarray(tok(t, add_special_tokens=False)["input_ids"][:fits]) for t in PROBE_TEXTS
        ]
        ours = self.score(docs)
        worst = 0.0
        for seq, got in zip(self.sequences(docs), ours):
            want = forward_losses(self.ref.model, seq).cpu().numpy()
            worst = max(worst, float(np.nanmax(np.abs(got[-len(want) :] - want))))
        dtype = str(next(self.ref.model.parameters()).dtype).removeprefix("torch.")
        tol = PROBE_TOLERANCE.get(dtype, PROBE_TOLERANCE_REDUCED)
        if not worst <= tol:
            kind = getattr(self.ref.model.config, "model_type", type(self.ref.model).__name__)
            raise ValueError(
                f"reference model type {kind!r} is not supported: lacy's losses differ from the "
                f"model's own forward by {worst:.3g} nats (tolerance {tol})"
            )
        return worst

    def sequences(self, docs: list[np.ndarray]) -> list[np.ndarray]:
        start = self.ref.start_token_id
        if start is None:
            return [np.asarray(d, dtype=np.int64) for d in docs]
        return [np.concatenate([[start], np.asarray(d, dtype=np.int64)]) for d in docs]

    def score(self, docs: list[np.ndarray], progress=None) -> list[np.ndarray]:
        """float32 losses per token of each document (NaN where undefined: the first token of a
        model without a plain-text start token). `progress(tokens, docs)` is called after each
        forward batch with the tokens it scored and the documents it completed."""
        import torch

        seqs = self.sequences(docs)
        offset = 0 if self.ref.start_token_id is None else 1
        out = [np.full(len(d), np.nan, dtype=np.float32) for d in docs]
        segs = [
            s
            for i, q in enumerate(seqs)
            for s in plan_windows(i, len(q), self.config.window, self.context)
        ]
        remaining = np.bincount([s.doc for s in segs], minlength=len(docs))
        if progress is not None and (remaining == 0).any():
            progress(0, int((remaining == 0).sum()))  # documents with nothing to score
        pending = []  # (batch, losses on the device): copied back once, so the device never waits
        with torch.inference_mode():
            for batch in plan_batches(segs, self.batch_tokens):
                pending.append((batch, self._forward(batch, seqs)))
                if progress is not None:
                    finished = 0
                    for s in batch:
                        remaining[s.doc] -= 1
                        finished += int(remaining[s.doc] == 0)
                    progress(sum(s.b - s.keep for s in batch), finished)
            if pending:
                flat = torch.cat([loss for _, loss in pending]).cpu().numpy()
        at = 0
        for batch, _ in pending:
            for s in batch:
                n = s.b - s.keep
                out[s.doc][s.keep - offset : s.b - offset] = flat[at : at + n]
                at += n
        return out

    def _forward(self, batch: list[Segment], seqs: list[np.ndarray]):
        """Losses of one padded batch, left on the device (a float32 tensor, segment by segment)."""
        import torch

        width = max(s.b - s.a for s in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        rows, cols, targets = [], [], []
        for r, s in enumerate(batch):
            ids[r, : s.b - s.a] = seqs[s.doc][s.a : s.b]
            mask[r, : s.b - s.a] = 1
            t = np.arange(s.keep, s.b)
            rows.append(np.full(len(t), r))
            cols.append(t - 1 - s.a)
            targets.append(seqs[s.doc][s.keep : s.b])
        ids_t, mask_t, rows_t, cols_t, tgt = (
            self._to_device(a)
            for a in (
                ids,
                mask,
                np.concatenate(rows),
                np.concatenate(cols),
                np.concatenate(targets),
            )
        )
        hidden = self.backbone(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        h = hidden[rows_t, cols_t]
        loss = torch.empty(len(tgt), dtype=torch.float32, device=self.device)
        step = self.config.row_chunk
        for i in range(0, len(tgt), step):
            loss[i : i + step] = self.head.losses(h[i : i + step], tgt[i : i + step])
        return loss

    def _to_device(self, a: np.ndarray):
        """Host -> device without a stall: pinned memory and an asynchronous copy on CUDA."""
        import torch

        t = torch.from_numpy(a)
        if self.device.type != "cuda":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)


def forward_losses(model, seq):
    """The plain model's own per-token losses of one sequence (its start token included): one
    full forward and an fp32 log-softmax over every logit, the yardstick the Scorer is checked
    and timed against. A float32 tensor of len(seq) - 1 losses, on the model's device."""
    import torch

    device = next(model.parameters()).device
    ids = torch.as_tensor(np.asarray(seq, dtype=np.int64), device=device)[None]
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        return -lp.gather(1, ids[0, 1:, None])[:, 0]
