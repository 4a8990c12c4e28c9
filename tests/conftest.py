"""Shared fixtures (the real spaCy model, the real SmolLM2 tokenizer and reference model, loaded
once per test session) and the tiers. A test's tier is its folder, marked here, never by hand:

- unit/: library code on small inputs; no Beam pipeline, no training, no real reference model,
  no Java or Chromium (`make test-fast`). A unit test that does one of those fails and says so.
- pipeline/: Beam pipelines on the local runners, training, the real SmolLM2, the CLIs.
- cluster/: a real Flink cluster on loopback (needs java and mvn).

`slow` marks the last two (`-m "not slow"` is the unit tier)."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

TIERS = ("unit", "pipeline", "cluster")
HEAVY_FIXTURES = ("reference", "shards", "label_leads")  # the real SmolLM2; labelling runs


def tier_of(path: Path) -> str:
    parts = Path(path).parts
    return next((t for t in TIERS if t in parts[-2:-1]), "unit")


def pytest_collection_modifyitems(items):
    for item in items:
        tier = tier_of(item.path)
        item.add_marker(tier)
        if tier != "unit":
            item.add_marker("slow")


@pytest.fixture(autouse=True)
def _unit_tier_stays_light(request, monkeypatch):
    """In unit/, running a Beam pipeline, training or loading the real reference model fails the
    test with the tier it belongs to (so the markers stay true)."""
    if tier_of(request.node.path) != "unit":
        return
    heavy = [f for f in HEAVY_FIXTURES if f in request.fixturenames]
    if heavy:
        pytest.fail(f"a unit test may not use {heavy}: move it to tests/pipeline/")

    def refuse(what):
        def stop(*args, **kwargs):
            raise AssertionError(f"a unit test {what}: move it to tests/pipeline/")

        return stop

    import apache_beam as beam

    import lacy_labels.reference as reference
    import trainer.train as train

    monkeypatch.setattr(beam.Pipeline, "run", refuse("runs a Beam pipeline"))
    monkeypatch.setattr(train.Trainer, "fit", refuse("trains"))
    real = reference.load_reference

    def load_reference(model=reference.DEFAULT_MODEL, *args, **kwargs):
        if str(model) == reference.DEFAULT_MODEL:
            refuse("loads the real reference model")()
        return real(model, *args, **kwargs)

    monkeypatch.setattr(reference, "load_reference", load_reference)


@pytest.fixture(scope="session")
def nlp():
    from lacy_labels.grammar import load_spacy

    return load_spacy()


@pytest.fixture(scope="session")
def model_dir():
    from lacy_labels.reference import resolve_model_dir

    return resolve_model_dir()


@pytest.fixture(scope="session")
def smol_tok(model_dir):
    from lacy_labels.reference import load_tokenizer

    return load_tokenizer(model_dir)


@pytest.fixture(scope="session")
def gpt2_tok():
    from lacy_labels.tokens import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture(scope="session")
def reference():
    from lacy_labels.reference import load_reference

    return load_reference(threads=2)


@pytest.fixture(scope="session")
def wiki_docs():
    from lacy_labels.corpus import iter_wiki_docs

    return list(iter_wiki_docs(limit=12))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smol_tok):
    """A small random Llama with SmolLM2's real tokenizer, saved as a local model folder: the
    real loading and scoring code paths, fast enough for 100k-token documents in tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(smol_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    smol_tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def label_leads(tiny_model_dir):
    """`label_leads(out, limit, *flags)`: lacy-label on the first `limit` shipped leads with the
    tiny reference model, written to `out` (returned)."""
    from pipelines import label

    def run(out, limit: int, *flags):
        model = ["--reference_model", str(tiny_model_dir)]
        label.run(["--output", str(out), "--limit", str(limit), *model, *map(str, flags)])
        return out

    return run


@pytest.fixture(scope="session")
def shards(tmp_path_factory, label_leads):
    """A small labelled output (20 leads, the tiny reference model) for trainer tests."""
    return label_leads(tmp_path_factory.mktemp("shards") / "out", 20, "--report", "false")


@pytest.fixture(scope="session")
def s3():
    """A real S3 API on loopback (moto's server) with a bucket, and the Beam options that point
    Beam's S3 filesystem at it (set for this process's FileSystems too)."""
    import boto3
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    flags = [f"--s3_endpoint_url={url}", "--s3_access_key_id=testing",
             "--s3_secret_access_key=moto-secret-value", "--s3_region_name=us-east-1"]  # fmt: skip
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "moto-secret-value"}
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **keys)
    client.create_bucket(Bucket="lacy")
    FileSystems.set_options(PipelineOptions(flags))
    yield {"flags": flags, "client": client, "bucket": "lacy"}
    server.stop()
