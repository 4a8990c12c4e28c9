"""Credentials never written: what lacy saves beside an output (config.json, a dry run's job
description) and what it logs passes through here first. Beam options that carry secrets
(`--s3_secret_access_key`, `--azure_connection_string`, tokens, passwords, keys) keep their name
and lose their value; a password inside a URL (`https://user:pw@host`) and secret-looking query
parameters (`?sig=`, `?token=`) are masked wherever they appear."""

from __future__ import annotations

import re

MASK = "<redacted>"
# a name is a secret's when one of its words (split at _ and -) is one of these, or it holds
# one of the compounds; `batch_tokens` or `--dataflow_kms_key` (a key's name) are not
SECRET_WORDS = {"token", "secret", "password", "passwd", "passphrase", "credential",
                "credentials", "auth", "sas", "signature"}  # fmt: skip
SECRET_PARTS = ("access_key", "private_key", "api_key", "account_key", "connection_string")


def is_secret_name(name: str) -> bool:
    """An option or key name whose value is a credential."""
    low = name.lower().lstrip("-").replace("-", "_")
    return bool(SECRET_WORDS & set(low.split("_"))) or any(p in low for p in SECRET_PARTS)


_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<pw>[^/@\s]+)@",
                       re.I)  # fmt: skip
_QUERY = re.compile(r"(?P<key>[?&;](?:[^=&;\s]*(?:sig|token|key|secret|password)[^=&;\s]*))="
                    r"(?P<value>[^&;\s]*)", re.I)  # fmt: skip


def redact_text(text: str) -> str:
    """`text` with passwords in URLs and secret query parameters masked."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}={MASK}", text)


def redact_args(args: list[str]) -> list[str]:
    """Command-line arguments with the values of secret options masked (`--name=value` and
    `--name value` alike) and secrets in every other value masked too."""
    out, hide_next = [], False
    for arg in args:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if arg.startswith("-") and is_secret_name(name):
            out.append(f"{name}={MASK}" if eq else arg)
            hide_next = not eq
        else:
            out.append(redact_text(arg))
    return out


def redact(obj):
    """A JSON-like object with the values under secret-looking keys masked and secrets in
    strings masked; lists of command-line arguments are read as such."""
    if isinstance(obj, dict):
        return {k: (MASK if _secret_key(k, v) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        if obj and all(isinstance(a, str) for a in obj) and any(a.startswith("--") for a in obj):
            return redact_args(obj)
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def _secret_key(key, value) -> bool:
    return isinstance(key, str) and is_secret_name(key) and value not in (None, "", [])


def secret_values(args: list[str]) -> list[str]:
    """The values of the secret options in a command line (to mask them in logs)."""
    out = []
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if arg.startswith("-") and is_secret_name(name):
            value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            if len(value) >= 4:
                out.append(value)
    return out


_MASKED: set[str] = set()


def mask_in_logs(values: list[str]) -> None:
    """From now on every log record of this process (lacy's, Beam's, any library's) shows these
    values as <redacted>: a log record factory, installed once, that masks them."""
    import logging

    if not _MASKED:
        make = logging.getLogRecordFactory()

        def masked(*args, **kwargs):
            record = make(*args, **kwargs)
            text = record.getMessage()
            if any(v in text for v in _MASKED):
                for v in _MASKED:
                    text = text.replace(v, MASK)
                record.msg, record.args = text, None
            return record

        logging.setLogRecordFactory(masked)
    _MASKED.update(v for v in values if v)
