"""The vocabulary projection and the per-token loss it gives, the scorer's largest single matmul
(about a fifth of a SmolLM2-sized model's FLOPs). `make_head` picks one of two:

- `FullHead`: fp32 logits for a chunk of rows, post-processed as the model's own forward does
  (see `logits_postprocess`), then log-sum-exp minus the target's logit. A reduced-precision
  model's head runs on an fp32 copy of its weight (on CUDA through TF32, exact for bf16-valued
  inputs), so the log-sum-exp sees fp32 logits, not logits rounded to the model's dtype.
- `CentredHead`, for bf16 models on CPU: the logits come out of a bf16 matmul already relative
  to each row's target logit (computed exactly in fp32 and folded in as one more input column),
  so bf16's rounding of the output is relative to l_i - l_target, the differences the loss is
  made of, rather than to the logits' size. The loss keeps about fp32's value (within 2^-9 of
  the terms that carry it) at bf16's speed, where fp32 logits would cost a third of the time."""

from __future__ import annotations

import logging

log = logging.getLogger("lacy")
ALIGN = 16  # the centred weight's inner dimension is padded to a multiple of this (bf16 blocks)


def logits_postprocess(config):
    """What a causal-LM forward does to `lm_head(hidden)` before returning logits, for the
    families transformers ships that do anything (identity otherwise)."""
    import torch

    scaling = getattr(config, "logits_scaling", None)  # Granite: logits / logits_scaling
    scale = getattr(config, "logit_scale", None)  # Cohere: logits * logit_scale
    cap = getattr(config, "final_logit_softcapping", None)  # Gemma 2/3: cap * tanh(logits / cap)

    def post(logits):
        if scaling:
            logits = logits / scaling
        if scale:
            logits = logits * scale
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    post.identity = not (scaling or scale or cap)
    return post


def logsumexp_(x):
    """torch.logsumexp over the last dimension, computed in x's own memory (x is overwritten):
    the same operations as torch's, without a second logits-sized temporary per chunk."""
    m = x.amax(dim=-1, keepdim=True)
    m.masked_fill_(m.abs() == float("inf"), 0)
    return x.sub_(m).exp_().sum(dim=-1).log_().add_(m[:, 0])


def fp32_linear(x, weight, bias):
    """An fp32 matmul on the fastest kernel here: oneDNN's on CPU when this torch has it (MKL's,
    torch's default, runs at about half its rate on AMD CPUs), torch's elsewhere."""
    import torch

    from lacy_labels.kernels import onednn_available

    if x.device.type == "cpu" and onednn_available():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.nn.functional.linear(x, weight, bias)


class FullHead:
    """Losses from fp32 logits (see the module docstring)."""

    kind = "fp32"

    def __init__(self, layer, post):
        import torch

        self.layer, self.post, self.weight32 = layer, post, None
        if layer.weight.dtype != torch.float32:
            bias = getattr(layer, "bias", None)
            self.weight32 = (layer.weight.float(), None if bias is None else bias.float())
            if layer.weight.device.type == "cuda":
                enable_tf32_matmul()

    def losses(self, h, targets):
        """Per-row loss of `targets` (int64) after hidden states `h` (rows x hidden)."""
        if self.weight32 is None:
            logits = self.layer(h).float()
        elif h.device.type == "cuda":
            import torch

            logits = torch.nn.functional.linear(h.float(), *self.weight32)
        else:
            logits = fp32_linear(h.float(), *self.weight32)
        logits = self.post(logits)
        picked = logits.gather(1, targets[:, None])[:, 0]
        return logsumexp_(logits) - picked


class CentredHead:
    """Losses from bf16 logits centred on each row's target logit (see the module docstring)."""

    kind = "bf16-centred"

    def __init__(self, layer):
        import torch

        weight = layer.weight.detach()
        rows, dim = weight.shape
        self.dim, self.width = dim, -(-(dim + 1) // ALIGN) * ALIGN
        self.weight = weight  # bf16: target rows are gathered from it (exact in fp32)
        bias = getattr(layer, "bias", None)
        self.bias = None if bias is None else bias.detach()
        wide = torch.zeros(rows, self.width, dtype=weight.dtype, device=weight.device)
        wide[:, :dim] = weight
        wide[:, dim] = 1  # times the input's extra column: minus the row's offset
        self.wide = wide

    def losses(self, h, targets):
        import torch

        target_logit = (h.float() * self.weight[targets].float()).sum(-1)
        if self.bias is not None:
            target_logit += self.bias[targets].float()
        offset = target_logit.to(h.dtype)  # what the matmul can carry; its rounding is known
        wide = torch.zeros(len(h), self.width, dtype=h.dtype, device=h.device)
        wide[:, : self.dim] = h
        wide[:, self.dim] = -offset
        centred = torch.nn.functional.linear(wide, self.wide, self.bias).float()
        return logsumexp_(centred) - (target_logit - offset.float())


def make_head(model, post) -> FullHead | CentredHead:
    """The head a Scorer of `model` uses: centred bf16 for a bf16 model on CPU whose forward
    does not post-process its logits, full fp32 otherwise."""
    import torch

    layer = model.get_output_embeddings()
    cpu = layer.weight.device.type == "cpu"
    if cpu and layer.weight.dtype == torch.bfloat16 and getattr(post, "identity", False):
        return CentredHead(layer)
    return FullHead(layer, post)


def enable_tf32_matmul() -> None:
    """Let CUDA fp32 matmuls run on TF32 tensor cores, for the whole process, once, when a
    reduced-precision scorer is built (never toggled per call: threads of one process share a
    model). For the fp32 head over bf16-valued inputs TF32 is exact (TF32 keeps 10 mantissa
    bits, bf16 has 7); a scoring worker runs no other fp32 matmul that it could change."""
    import torch

    if not torch.backends.cuda.matmul.allow_tf32:
        log.info("reduced-precision scoring on CUDA: TF32 matmuls on for this process")
        torch.backends.cuda.matmul.allow_tf32 = True
