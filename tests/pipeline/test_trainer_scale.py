"""The trainer at scale: shards read through fsspec (an HTTPS server on loopback, an in-memory
filesystem, the Hub id mapping) and data-parallel training with torchrun (two CPU processes,
gloo), checked against a single process with the same global batch."""

import datetime
import http.server
import io
import ipaddress
import json
import os
import re
import ssl
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_trainer import small_cfg

from pipelines.loopback import free_port
from trainer.data import (
    SequenceLoader,
    ShardError,
    data_url,
    iter_documents,
    iter_sequences,
    shard_files,
)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Python's file server plus HTTP range requests (what object stores and the Hub serve),
    counting the ranges it answered."""

    ranges: list = []

    def send_head(self):
        path = self.translate_path(self.path)
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if not m or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        start, end = int(m[1]), min(int(m[2] or size - 1), size - 1)
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        type(self).ranges.append((self.path, start, end))
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args):
        pass


def self_signed(tmp_path):
    """A certificate for 127.0.0.1 (the client trusts it through SSL_CERT_FILE)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    # One for the module: fsspec caches its HTTP filesystem, and with it the trust it loaded.
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_root(certificate, shards, monkeypatch):
    """The folder holding the labelled output, served over HTTPS on 127.0.0.1."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    RangeHandler.ranges = []
    handler = lambda *a, **kw: RangeHandler(*a, directory=str(shards.parent), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/{shards.name}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def big_shards(shards, tmp_path):
    """The labelled output's rows four times over in one shard of several row groups: past the
    64 KiB that pyarrow reads from a file's end at once (its first read then starts mid-file)."""
    table = pq.read_table(next((shards / "data").glob("*.parquet")))
    out = tmp_path / "big" / "data"
    out.mkdir(parents=True)
    pq.write_table(
        pa.concat_tables([table] * 4), out / "train-00000-of-00001.parquet", row_group_size=16
    )
    assert (out / "train-00000-of-00001.parquet").stat().st_size > 1 << 17
    return out.parent


@pytest.fixture
def plain_http_root(big_shards, certificate, monkeypatch):
    """A labelled output served by the standard library's `http.server` as it is (no range
    requests: the first thing people try)."""
    shards = big_shards
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # fsspec caches its filesystem

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = lambda *a, **kw: Quiet(*a, directory=str(shards.parent), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{shards.name}"
    server.shutdown()
    server.server_close()


def first_batches(data, n=3):
    loader = SequenceLoader(data, seq_len=32, batch_size=4, eot_id=0)
    return [loader.next_batch() for _ in range(n)]


def same_batches(a, b):
    return all(
        np.array_equal(getattr(x, k), getattr(y, k), equal_nan=True)
        for x, y in zip(a, b)
        for k in ("input_ids", "targets", "delegate", "is_fact", "ref_loss")
    )


def test_a_server_without_range_requests_is_read_whole_with_one_warning(
    plain_http_root, big_shards, tmp_path, caplog
):
    from trainer.train import Trainer

    many = 2 * sum(len(d[0]) for d in iter_documents(shard_files(big_shards))) // (4 * 32)
    with caplog.at_level("WARNING", logger="lacy"):  # two passes over the shard
        assert same_batches(first_batches(plain_http_root, many), first_batches(big_shards, many))
    warned = [r for r in caplog.records if "ignores HTTP range requests" in r.getMessage()]
    assert len(warned) == 1 and plain_http_root in warned[0].getMessage()
    hist = Trainer(small_cfg(plain_http_root, tmp_path / "ck", max_steps=2)).fit().history
    assert len(hist) == 2 and np.isfinite(hist[-1]["loss"])


def test_training_from_an_https_url(https_root, shards, tmp_path):
    from trainer.train import Trainer

    listed = shard_files(https_root)
    assert [p.rsplit("/", 1)[1] for p in listed.paths] == sorted(
        p.name for p in (shards / "data").glob("*.parquet")
    )
    assert same_batches(first_batches(https_root), first_batches(shards))
    assert RangeHandler.ranges  # read by ranges (footer, then row groups), not downloaded whole
    hist = Trainer(small_cfg(https_root, tmp_path / "ck", max_steps=2)).fit().history
    assert len(hist) == 2 and np.isfinite(hist[-1]["loss"])


def test_broken_shard_over_https_names_its_url(https_root, shards, tmp_path):
    (shards.parent / "broken").mkdir(exist_ok=True)
    (shards.parent / "broken/x.parquet").write_bytes(b"PAR1 not really")
    url = https_root.rsplit("/", 1)[0] + "/broken"
    with pytest.raises(ShardError, match=r"https://127\.0\.0\.1:\d+/broken/x\.parquet: not a read"):
        next(iter_sequences(url, 8, 0))
    with pytest.raises(ShardError, match="no Parquet shards"):
        shard_files(https_root.rsplit("/", 1)[0] + "/nothing-here")


def test_training_data_through_another_fsspec_filesystem(shards):
    import fsspec

    mem = fsspec.filesystem("memory")
    for f in (shards / "data").glob("*.parquet"):
        mem.pipe(f"/labels/data/{f.name}", f.read_bytes())
    assert same_batches(first_batches("memory://labels"), first_batches(shards))
    assert same_batches(first_batches(f"memory://labels/data/{f.name}"), first_batches(f))


def test_hub_ids_and_local_paths():
    assert data_url("my-org/wiki-labels") == "hf://datasets/my-org/wiki-labels"
    assert data_url("gs://bucket/labels") == "gs://bucket/labels"
    assert data_url("/abs/path") == "/abs/path"
    assert data_url("./rel/path") == "./rel/path"


# -- data-parallel training ---------------------------------------------------------------------


TRAIN_ARGS = [
    "--objective",
    "lacy",
    "--seq-len",
    "32",
    "--batch-size",
    "4",
    "--warmup-steps",
    "3",
    "--lr",
    "3e-3",
    "--log-every",
    "1",
    "--no-progress",
]


def torchrun(data, out, *extra, nproc=2):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "trainer.train",
        "--data",
        str(data),
        "--output",
        str(out),
        *TRAIN_ARGS,
        *map(str, extra),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def losses(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_two_processes_match_one_with_the_same_global_batch(shards, tmp_path):
    from trainer.train import Trainer

    done = torchrun(shards, tmp_path / "ddp", "--max-steps", 8)
    assert done.stdout.count('"steps": 8') == 1  # one rank prints, writes metrics and saves
    ddp = losses(tmp_path / "ddp")
    assert len(ddp) == 8 and ddp[-1] < ddp[0] - 0.5  # the loss falls
    one = (
        Trainer(small_cfg(shards, tmp_path / "one", max_steps=8, global_batch_tokens=256))
        .fit()
        .history
    )
    assert one[0]["trained_targets"] == 256  # 2 micro-batches x 4 sequences x 32 targets
    assert np.allclose(ddp[:3], [h["loss"] for h in one[:3]], atol=1e-4)


def test_resume_continues_a_two_process_run_identically(shards, tmp_path):
    from safetensors.numpy import load_file

    from trainer.train import Trainer

    torchrun(shards, tmp_path / "full", "--max-steps", 4)
    torchrun(shards, tmp_path / "part", "--max-steps", 4, "--stop-after", 2)
    assert len(losses(tmp_path / "part")) == 2
    torchrun(shards, tmp_path / "part", "--max-steps", 4, "--resume")
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    a, b = (
        load_file(tmp_path / "full/model.safetensors"),
        load_file(tmp_path / "part/model.safetensors"),
    )
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="same world size"):
        Trainer(small_cfg(shards, tmp_path / "part", max_steps=6, resume=True))


class FlakyHandler(RangeHandler):
    """Range requests, of which the second fails with a 503 and the third with a connection
    that drops mid-answer."""

    served = 0

    def send_head(self):
        if "Range" in self.headers:
            type(self).served += 1
            if type(self).served in (2, 3):
                if type(self).served == 2:
                    self.send_error(503, "try again")
                else:
                    self.close_connection = True
                    self.wfile.write(
                        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 999\r\n"
                        b"Content-Range: bytes 0-998/999\r\n\r\nPAR1"
                    )  # then drops
                return None
        return super().send_head()


@pytest.fixture
def flaky_root(big_shards, monkeypatch):
    monkeypatch.setattr("trainer.data.time.sleep", lambda s: None)  # the backoff, not the test
    FlakyHandler.served = 0
    handler = lambda *a, **kw: FlakyHandler(*a, directory=str(big_shards.parent), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{big_shards.name}"
    server.shutdown()
    server.server_close()


def test_shard_reads_survive_network_errors(flaky_root, big_shards, caplog):
    """Two of the server's answers fail: every document still arrives once, in order."""
    with caplog.at_level("WARNING", logger="lacy"):
        got = list(iter_documents(shard_files(flaky_root)))
    want = list(iter_documents(shard_files(big_shards)))
    assert len(got) == len(want) and all(np.array_equal(a[0], b[0]) for a, b in zip(got, want))
    assert FlakyHandler.served >= 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_a_shard_over_the_size_cap_is_refused_before_it_is_read(https_root):
    with pytest.raises(ShardError, match="more than --max_shard_bytes 1,000"):
        next(iter_sequences(https_root, 8, 0, max_bytes=1000))
