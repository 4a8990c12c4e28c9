"""Lazy package exports: a package names its public API as {name: module} and each name is
imported on first use, so importing the package itself stays light (no spaCy, no torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, api: dict[str, str]) -> tuple[Callable, Callable]:
    """The `__getattr__` and `__dir__` of a package whose names in `api` load on first use."""

    def __getattr__(name: str):
        if name in api:
            return getattr(importlib.import_module(api[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(api))

    return __getattr__, __dir__
