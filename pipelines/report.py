"""DIR/report.html: one self-contained page (plots embedded as PNG, no network) with counts,
fact and delegation shares, thresholds, loss histograms, delegation rates by POS and entity
type, and sample documents with fact / delegated tokens highlighted and the loss on hover.

    python -m pipelines.report DIR
"""

from __future__ import annotations

import base64
import html
import io
import sys
from dataclasses import dataclass

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from lacy_labels import cli
from lacy_labels.cli import setting
from pipelines.layout import DATA_DIR
from pipelines.outputs import read_json, write_bytes
from pipelines.stats import COUNT_KEYS, SHARE_KEYS

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
.plots img{max-width:49%}.doc{border:1px solid #ddd;padding:.6em;margin:.6em 0;line-height:1.7}
.t{border-radius:3px}.fact{background:#cfe3ff}.delegate{background:#ff9f80;font-weight:600}
.legend span{padding:2px 6px;margin-right:8px}
"""


def png_bytes(fig, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes (shared with bench/replicate.py)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _png(fig) -> str:
    return base64.b64encode(png_bytes(fig)).decode()


def plots(stats: dict) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    h = stats["loss_histogram"]
    edges = h["bin_edges"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, color in (("nonfact", "#999"), ("fact", "#2a6fdb")):
        total = max(sum(h[name]), 1)
        ax.stairs(
            [c / total for c in h[name]],
            edges,
            label=name.replace("nonfact", "non-fact"),
            color=color,
        )
    if stats.get("threshold") is not None:
        ax.axvline(stats["threshold"], color="#e0502a", ls="--", label="threshold")
    ax.set_xlabel("reference loss (nats)")
    ax.set_ylabel("share of tokens")
    ax.legend()
    out.append(("Reference-loss histogram: fact vs non-fact tokens", _png(fig)))
    plt.close(fig)
    for key, title in (
        ("delegation_rate_by_pos", "Delegation rate by POS"),
        ("delegation_rate_by_ent_type", "Delegation rate by entity type"),
    ):
        rates = {k or "(none)": v for k, v in stats[key].items()}
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar(list(rates), list(rates.values()), color="#e0502a")
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=60, labelsize=8)
        ax.set_ylabel("delegated share")
        out.append((title, _png(fig)))
        plt.close(fig)
    return out


def render_sample(row: dict) -> str:
    """The document's text with each subword in a span: classes fact/delegate, loss on hover."""
    text, parts, pos = row["text"], [], 0
    for s, e, fact, dele, loss in zip(
        row["char_start"], row["char_end"], row["is_fact"], row["delegate"], row["ref_loss"]
    ):
        s = max(s, pos)
        if e <= s:
            continue
        if s > pos:
            parts.append(html.escape(text[pos:s]))
        cls = "t delegate" if dele else "t fact" if fact else "t"
        tip = "no loss" if loss is None else f"loss {loss:.2f}"
        parts.append(f'<span class="{cls}" title="{tip}">{html.escape(text[s:e])}</span>')
        pos = e
    parts.append(html.escape(text[pos:]))
    return f'<div class="doc"><b>{html.escape(row["id"])}</b><br>{"".join(parts)}</div>'


def sample_rows(out_dir: str, n: int) -> list[dict]:
    files = sorted(
        m.path
        for r in FileSystems.match([f"{out_dir}/{DATA_DIR}/*.parquet"])
        for m in r.metadata_list
    )
    rows = []
    for path in files:
        with FileSystems.open(path) as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=max(n, 1)):
                rows.extend(batch.to_pylist()[: n - len(rows)])
                break
        if len(rows) >= n:
            break
    return rows


def render_report(stats: dict, samples: list[dict]) -> str:
    figures = {k.replace("_", " "): stats.get(k) for k in (*COUNT_KEYS, *SHARE_KEYS)}
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in figures.items())
    reasons = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
        for k, v in stats.get("rejected_by_reason", {}).items()
    ) or ("<tr><td>none</td></tr>")
    imgs = "".join(
        f'<figure style="display:inline-block;width:49%;margin:0">'
        f'<img style="max-width:100%" alt="{html.escape(t)}" '
        f'src="data:image/png;base64,{b}"><figcaption>{html.escape(t)}</figcaption>'
        f"</figure>"
        for t, b in plots(stats)
    )
    docs = "".join(render_sample(r) for r in samples)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>LaCy labels report</title>
<style>{STYLE}</style></head><body>
<h1>LaCy delegation labels</h1>
<h2>Counts</h2><table id="counts">{rows}</table>
<h3>Rejected by reason</h3><table id="rejects">{reasons}</table>
<h2>Plots</h2><div class="plots">{imgs}</div>
<h2>Samples</h2>
<p class="legend"><span class="fact">fact</span><span class="delegate">delegated</span>
hover a token for its reference loss</p>
<div id="samples">{docs}</div>
</body></html>"""


def write_report(out_dir: str, n_samples: int = 10) -> str:
    out_dir = out_dir.rstrip("/")
    page = render_report(read_json(f"{out_dir}/stats.json"), sample_rows(out_dir, n_samples))
    path = f"{out_dir}/report.html"
    write_bytes(path, page.encode("utf-8"))
    return path


@dataclass
class ReportConfig:
    folder: str = setting(help="a labelled output folder", positional=True)
    samples: int = setting(10, "sample documents shown")


def main(argv: list[str] | None = None) -> int:
    args, _ = cli.parse(ReportConfig, argv, "lacy-report", "Rewrite report.html of an output.")
    print(write_report(args.folder, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
