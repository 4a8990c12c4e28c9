"""Credentials never written: Beam options that carry them, passwords in URLs and secret query
parameters are masked in what lacy saves and logs."""

import logging

from pipelines.redact import MASK, is_secret_name, mask_in_logs, redact, redact_args, secret_values


def test_secret_options_lose_their_values_in_both_spellings():
    args = ["--runner=DataflowRunner", "--s3_secret_access_key=AKIA/xyz",
            "--azure_connection_string", "DefaultEndpointsProtocol=https;AccountKey=abc",
            "--s3_session_token=tok", "--hf-token", "hf_abc", "--dataflow_kms_key=projects/p/k",
            "--batch_tokens=4096"]  # fmt: skip
    assert redact_args(args) == [
        "--runner=DataflowRunner", f"--s3_secret_access_key={MASK}", "--azure_connection_string",
        MASK, f"--s3_session_token={MASK}", "--hf-token", MASK, "--dataflow_kms_key=projects/p/k",
        "--batch_tokens=4096",
    ]  # fmt: skip
    assert not is_secret_name("threshold_sketch_size") and is_secret_name("s3_access_key_id")


def test_urls_keep_their_user_and_host_not_their_password():
    saved = {"settings": {"input": "s3://AKIA:wJalr@bucket/x", "batch_tokens": 5},
             "beam_args": ["--flink_master=http://u:pw@host:8081",
                           "--input=https://h/f.jsonl?sig=abc&x=1"]}  # fmt: skip
    out = redact(saved)
    assert out["settings"] == {"input": f"s3://AKIA:{MASK}@bucket/x", "batch_tokens": 5}
    assert out["beam_args"] == [f"--flink_master=http://u:{MASK}@host:8081",
                                f"--input=https://h/f.jsonl?sig={MASK}&x=1"]  # fmt: skip
    assert redact(out) == out  # masking is idempotent: publish uses it as its check


def test_every_log_record_masks_the_secret_values(caplog):
    args = ["--s3_secret_access_key", "VERY-SECRET-1", "--x=1"]
    assert secret_values(args) == ["VERY-SECRET-1"]
    mask_in_logs(secret_values(args))
    with caplog.at_level(logging.INFO):
        logging.getLogger("apache_beam.some.module").info("options: %s", args)
    assert "VERY-SECRET-1" not in caplog.text and MASK in caplog.text
