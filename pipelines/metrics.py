"""lacy's Beam metrics as one flat dict by name (counters summed, distributions merged over the
steps that report them), from a PipelineResult or, for Flink, from the job's accumulator."""

from __future__ import annotations

NAMESPACE = "lacy"  # the Beam metrics namespace of lacy's counters


def add_counter(out: dict, name: str, value: int) -> None:
    out[name] = out.get(name, 0) + value


def add_distribution(out: dict, name: str, count: int, total: int, lo: int, hi: int) -> None:
    prev = out.get(name, {"count": 0, "sum": 0, "min": lo, "max": hi})
    out[name] = {
        "count": prev["count"] + count,
        "sum": prev["sum"] + total,
        "min": min(prev["min"], lo),
        "max": max(prev["max"], hi),
    }


def beam_counters(result) -> dict:
    """lacy's counters and distributions (committed values) of a finished job; {} for a runner
    without metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        q = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except NotImplementedError:  # e.g. Beam's DaskRunner keeps no metrics
        return {}
    out: dict = {}
    for c in q["counters"]:
        add_counter(out, c.key.metric.name, c.committed)
    for d in q["distributions"]:
        v = d.committed
        add_distribution(out, d.key.metric.name, v.count, v.sum, v.min, v.max)
    return dict(sorted(out.items()))
