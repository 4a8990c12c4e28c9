"""The fact world's report: the headline figures, the verdict (does lacy beat every rival beyond
seed noise?) and the results page with its plot."""

from __future__ import annotations

import json

import numpy as np

from bench.common import mean_std_table

HEADLINE = (
    "value_accuracy@values",
    "uncertainty_value_accuracy@values",
    "calls_on_values@values",
    "calls_on_choices@values",
    "value_accuracy@22%",
    "uncertainty_value_accuracy@22%",
    "calls_on_choices@22%",
    "gen_factscore",
    "gen_call_rate",
    "gen_no_value_rate",
    "gen_uncertainty_factscore",
    "slm_value_accuracy",
)


CLAIMS = ("value_accuracy@values", "value_accuracy@22%", "gen_factscore")


def baseline_of(metric: str) -> str:
    """The uncertainty-baseline figure of a claim's metric."""
    if metric.startswith("gen_"):
        return "gen_uncertainty_" + metric.removeprefix("gen_")
    return f"uncertainty_{metric}"


def verdict(results: dict, winner: str = "lacy") -> dict:
    """Per claim metric, the rivals `winner` does not beat beyond seed noise: its mean minus its
    sample std (ddof 1) must exceed each other arm's and each uncertainty baseline's mean plus
    std. Also whether it puts fewer calls on choices than the loss rules."""

    def band(runs, key):
        v = np.array([r[key] for r in runs], dtype=np.float64)
        sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        return float(v.mean()), sd

    if winner not in results:
        return {}
    out = {}
    for m in CLAIMS:
        mean, sd = band(results[winner], m)
        rivals = {a: band(r, m) for a, r in results.items() if a != winner}
        rivals |= {f"{a} (uncertainty)": band(r, baseline_of(m)) for a, r in results.items()}
        out[m] = sorted(a for a, (mu, s) in rivals.items() if not mean - sd > mu + s)
    key = "calls_on_choices@values"
    loss_arms = [a for a in ("loss", "loss-online") if a in results]
    mine = band(results[winner], key)[0]
    out["fewer_calls_on_choices_than"] = {a: mine < band(results[a], key)[0] for a in loss_arms}
    return out


def write_results(path: str, summary: dict, profile: dict, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipelines.report import png_bytes

    lines = [
        f"Fact world ({meta['world']}): {meta['train_docs']} training and {meta['heldout_docs']} "
        f"held-out biographies, budget {meta['budget']} ground-truth targets, {meta['seeds']} "
        f"seeds, {meta['preset']} SLMs, oracle cascade. "
        f"Value-token share {meta['value_share']:.3f}; "
        f"reference loss on values {profile['value_mean_ref_loss']} nats, on choices "
        f"{profile['choice_mean_ref_loss']}. {meta['cpu']}, {meta['date']}, "
        f"{meta['total_time_s']:.0f} s in all.",
        "",
        *mean_std_table(summary, HEADLINE, digits=3),
    ]
    lines += ["", "Beyond seed noise (lacy's mean - std > mean + std, sample std over seeds); "
              "rivals lacy does not beat:", ""]  # fmt: skip
    for m, rivals in meta["verdict"].items():
        lines.append(f"- {m}: {json.dumps(rivals) if rivals else 'none'}")
    lines += ["", "Labels (training biographies): " + json.dumps(meta["labels"])]
    with open(f"{path}.md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = list(summary)
    bars = (("value_accuracy@values", "#e0502a"), ("uncertainty_value_accuracy@values", "#999999"),
            ("gen_factscore", "#2a6fdb"))  # fmt: skip
    for j, (metric, color) in enumerate(bars):
        ax.bar([i + 0.27 * j for i in range(len(names))], [summary[n][metric][0] for n in names],
               0.27, yerr=[summary[n][metric][1] for n in names], capsize=3, color=color,
               label=metric)  # fmt: skip
    ax.set_xticks([i + 0.27 for i in range(len(names))], names)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    with open(f"{path}.png", "wb") as f:
        f.write(png_bytes(fig, dpi=100))
