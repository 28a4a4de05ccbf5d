"""Shared fixtures: MiniLM is loaded once per session; tests that change it take a deep copy. The suite's articles,
indexed by the sentences they hold, for the tests that trace examples back to them."""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest

import quic_edge


@pytest.fixture(scope="session")
def minilm_base():
    return quic_edge.models.load("minilm", num_labels=3, seed=0)


@pytest.fixture
def minilm(minilm_base):
    """A fresh (model, tokenizer) pair the test may modify."""
    model, tokenizer = minilm_base
    return copy.deepcopy(model), tokenizer


@pytest.fixture(scope="session")
def sentence_articles() -> dict[str, set[int]]:
    """Each usable BBC sentence -> the indices (in quic_edge.suite.articles()) of the articles that hold it; BBC News
    holds some in several (near-duplicate stories)."""
    from quic_edge.suite import articles

    found: dict[str, set[int]] = defaultdict(set)
    for index, article in enumerate(articles()):
        for sentence in article.sentences:
            found[sentence].add(index)
    return dict(found)


@pytest.fixture(scope="session")
def word_articles(sentence_articles) -> dict[tuple[str, ...], set[int]]:
    """The same, keyed by a sentence's words in sorted order, so a sentence with two words swapped finds its
    articles too."""
    found: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for sentence, where in sentence_articles.items():
        found[tuple(sorted(sentence.split()))] |= where
    return dict(found)
