"""Grammar-stage throughput: spaCy alone vs spaCy + tokenization + alignment + record building.

python -m bench.grammar --docs 300
"""

from __future__ import annotations

import os
import time

from bench.common import emit, wiki_docs
from lacy_labels import cli


def main() -> None:
    ap = cli.ArgParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="best of N timings per variant")
    args = ap.parse_args()

    from lacy_labels.annotate import Annotator
    from lacy_labels.reference import load_tokenizer, resolve_model_dir

    docs = wiki_docs(args.docs)
    texts = [d["text"] for d in docs]
    ann = Annotator(load_tokenizer(resolve_model_dir()), batch_size=args.batch_size)
    ann.annotate(docs[:8])  # warm-up
    spacy_s, stage_s, stage_cpu, subwords = [], [], [], 0
    for _ in range(args.repeats):
        t = time.perf_counter()
        for _doc in ann.nlp.pipe(texts, batch_size=args.batch_size):
            pass
        spacy_s.append(time.perf_counter() - t)
        t, c = time.perf_counter(), time.process_time()
        records = ann.annotate(docs)
        stage_s.append(time.perf_counter() - t)
        stage_cpu.append(time.process_time() - c)
        subwords = sum(len(r["input_ids"]) for r in records)
    spacy_t, stage_t = min(spacy_s), min(stage_s)
    emit(
        {
            "docs": len(docs),
            "subword_tokens": subwords,
            "spacy_only_tokens_per_s": round(subwords / spacy_t, 1),
            "grammar_stage_tokens_per_s": round(subwords / stage_t, 1),
            "overhead_ratio": round(stage_t / spacy_t, 4),
            # CPU seconds over all threads of this process: a per-core rate even if BLAS threads.
            "subword_tokens_per_s_per_core": round(subwords / min(stage_cpu), 1),
            "processes": 1,
            "cpu_count": os.cpu_count(),
        }
    )


if __name__ == "__main__":
    main()
