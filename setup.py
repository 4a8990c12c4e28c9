"""Shim for Beam's --setup_file (Dataflow stages this package on workers); metadata lives in
pyproject.toml."""

from setuptools import setup

setup()
