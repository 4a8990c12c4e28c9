"""Settings dataclasses as command lines and config files, one mechanism for every lacy command.

Every field of a settings dataclass is a flag `--name` (underscores, as Beam's options are
spelled; `--name-with-hyphens` is accepted as an alias) and a key of the `--config` file (JSON,
or TOML for `.toml`; flat keys). Precedence: defaults < config file < flags. A field's metadata
holds its help text and, where needed, `choices`, `nargs` or `positional`. Booleans take
`--name`, `--name true|false` and `--no_name`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

T = TypeVar("T")
_SCALARS = {"int": int, "float": float, "str": str}


def setting(default: Any = dataclasses.MISSING, help: str = "", **meta) -> Any:
    """A dataclass field with its CLI help (and choices, nargs, positional) in its metadata.
    Defaults are immutable values (tuples for lists)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def parse_bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {v!r}")


def _kind(type_name: str):
    base = type_name.replace(" | None", "").strip()
    return _SCALARS.get(base, str)


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def flag_names(name: str) -> list[str]:
    """`--name`, and `--name-with-hyphens` where that is spelled differently."""
    names = ["--" + name]
    if "_" in name:
        names.append("--" + name.replace("_", "-"))
    return names


def build_parser(cls: type, prog: str, description: str, config: bool = True):
    """An argparse parser for the dataclass `cls`; values it was not given stay absent (so a
    config file can fill them)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if config:
        p.add_argument("--config", help="JSON or TOML file with any of the keys below")
    for f in dataclasses.fields(cls):
        meta, default = f.metadata, default_of(f)
        shown = "required" if default is dataclasses.MISSING else f"default: {default!r}"
        help_text = f"{meta.get('help', '')} ({shown})"
        if meta.get("positional"):
            p.add_argument(f.name, help=help_text)
        elif f.type == "bool":
            p.add_argument(
                *flag_names(f.name), nargs="?", const=True, type=parse_bool, help=help_text
            )
            p.add_argument(
                *flag_names("no_" + f.name),
                dest=f.name,
                action="store_false",
                help=argparse.SUPPRESS,
            )
        elif "nargs" in meta:
            p.add_argument(*flag_names(f.name), nargs=meta["nargs"], help=help_text)
        else:
            p.add_argument(
                *flag_names(f.name), type=_kind(f.type), choices=meta.get("choices"), help=help_text
            )
    return p


def load_config_file(path: str, cls: type) -> dict:
    """Keys of a JSON or TOML settings file; unknown keys are an error."""
    text = Path(path).read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    return data


def parse(
    cls: type[T], argv: list[str] | None, prog: str, description: str, known_only: bool = False
) -> tuple[T, list[str]]:
    """(settings, the arguments it did not know: [] unless `known_only`). A missing required
    setting or an unknown flag exits with argparse's usage message."""
    parser = build_parser(cls, prog, description)
    if known_only:
        args, rest = parser.parse_known_args(argv)
    else:
        args, rest = parser.parse_args(argv), []
    values = vars(args)
    merged = load_config_file(values.pop("config"), cls) if "config" in values else {}
    merged.update(values)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if default_of(f) is dataclasses.MISSING and f.name not in merged
    ]
    if missing:
        parser.error("missing " + ", ".join(f"--{m}" for m in missing))
    return cls(**merged), rest


class ArgParser(argparse.ArgumentParser):
    """argparse for scripts without a settings dataclass (the benchmarks), with the product's
    spelling: `--name_with_underscores`, hyphens accepted as an alias."""

    def add_argument(self, *names, **kw):
        spelled = []
        for n in names:
            if n.startswith("--"):
                spelled += [m for m in flag_names(n[2:].replace("-", "_")) if m not in spelled]
            else:
                spelled.append(n)
        return super().add_argument(*spelled, **kw)


def reference_table(cls: type) -> str:
    """A markdown table of every setting (flag, default, meaning): the CLI reference in docs/ is
    made from this, and a test checks that it is current."""
    rows = ["| flag / key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = default_of(f)
        shown = "required" if default is dataclasses.MISSING else f"`{default!r}`"
        name = f.name if f.metadata.get("positional") else f"--{f.name}"
        choices = f.metadata.get("choices")
        extra = f" (one of {', '.join(f'`{c}`' for c in choices)})" if choices else ""
        rows.append(f"| `{name}` | {shown} | {f.metadata.get('help', '')}{extra} |")
    return "\n".join(rows) + "\n"
