"""Shared fixtures: the real spaCy model, the real SmolLM2 tokenizer and reference model, loaded
once per test session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


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
