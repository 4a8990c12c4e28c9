"""Training throughput: one process against two data-parallel processes (torchrun, gloo) at the
same global batch, for the `tiny` and `small` presets.

    python -m bench.trainer --docs 300 --steps 8

Shards: N shipped leads tokenized with the reference tokenizer, with random labels (the trainer's
speed does not depend on them). One process uses every core through torch threads; two
processes use one thread each (OMP_NUM_THREADS=1) and half the micro-batches each. tokens/s is
measured between the first and the last step (start-up and the first step's warm-up excluded).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from bench.common import cpu_name, emit, wiki_docs
from lacy_labels import cli
from pipelines.loopback import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_shards(n_docs: int, out: str) -> int:
    """Tokenized leads with random labels as one shard; returns the token count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.model import load_slm_tokenizer

    tok = load_slm_tokenizer()
    rng = np.random.default_rng(0)
    ids = [tok(d["text"], add_special_tokens=False)["input_ids"] for d in wiki_docs(n_docs)]
    flags = [rng.random(len(i)) for i in ids]
    table = pa.table(
        {
            "input_ids": ids,
            "delegate": [(f < 0.15).tolist() for f in flags],
            "is_fact": [(f < 0.25).tolist() for f in flags],
            "ref_loss": [(f * 5).astype("float32").tolist() for f in flags],
        }
    )
    os.makedirs(f"{out}/data", exist_ok=True)
    pq.write_table(table, f"{out}/data/part-00000-of-00001.parquet")
    return sum(map(len, ids))


def train(data: str, out: str, preset: str, steps: int, nproc: int, batch: int, seq: int) -> dict:
    args = [
        "-m",
        "trainer.train",
        "--data",
        data,
        "--output",
        out,
        "--objective",
        "lacy",
        "--preset",
        preset,
        "--max-steps",
        str(steps),
        "--seq-len",
        str(seq),
        "--batch-size",
        str(batch),
        "--global-batch-tokens",
        str(2 * batch * seq),
        "--log-every",
        "1",
        "--no-progress",
    ]
    env = dict(os.environ)
    if nproc > 1:
        launch = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc)]
        launch += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        args = launch + args
        env["OMP_NUM_THREADS"] = "1"
    subprocess.run([sys.executable, *args], check=True, env=env, cwd=ROOT, capture_output=True)
    rows = [json.loads(line) for line in open(f"{out}/metrics.jsonl")]
    seconds = rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]
    tokens = (len(rows) - 1) * 2 * batch * seq
    return {"tokens_per_s": round(tokens / seconds, 1), "losses": [r["loss"] for r in rows]}


def main() -> None:
    ap = cli.ArgParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=300, help="shipped leads in the shard")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4, help="sequences per micro-batch")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--presets", nargs="*", default=["tiny", "small"])
    a = ap.parse_args()
    figures = {"cpu": cpu_name(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        figures["shard_tokens"] = write_shards(a.docs, f"{tmp}/labels")
        for preset in a.presets:
            runs = {
                n: train(
                    f"{tmp}/labels",
                    f"{tmp}/{preset}-{n}",
                    preset,
                    a.steps,
                    n,
                    a.batch_size,
                    a.seq_len,
                )
                for n in (1, 2)
            }
            same = max(abs(x - y) for x, y in zip(runs[1]["losses"], runs[2]["losses"]))
            figures[preset] = {
                "tokens_per_s_1proc": runs[1]["tokens_per_s"],
                "tokens_per_s_2proc": runs[2]["tokens_per_s"],
                "speedup_2proc": round(runs[2]["tokens_per_s"] / runs[1]["tokens_per_s"], 3),
                "max_loss_diff_1_vs_2proc": round(same, 6),
            }
            print(preset, json.dumps(figures[preset]), file=sys.stderr)
    emit(figures)


if __name__ == "__main__":
    main()
