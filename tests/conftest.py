"""Shared fixtures: MiniLM is loaded once per session; tests that change it take a deep copy."""

from __future__ import annotations

import copy

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
