"""Offline datasets: real data from installed packages, each text once (no leak across splits)."""

from __future__ import annotations

from collections import Counter

import pytest

from quic_edge.data import DataError, load_dataset
from quic_edge.personas import LABELS, PEOPLE, personal_splits


@pytest.mark.parametrize(("name", "labels", "at_least"), [
    ("bbc", {"business", "entertainment", "politics", "sports", "tech"}, 2000),
    ("tweets", {"negative", "neutral", "positive"}, 30000),
])
def test_datasets_are_real_and_each_text_appears_once(name, labels, at_least):
    examples = load_dataset(name)
    assert len(examples) >= at_least
    assert {e.label for e in examples} == labels
    assert max(Counter(e.text for e in examples).values()) == 1


def test_unknown_dataset_says_what_exists():
    with pytest.raises(DataError, match="bbc"):
        load_dataset("imagenet")


def test_personal_splits_are_disjoint_and_relabelled():
    splits = personal_splits(n_train=100, n_test=200, seed=3)
    texts = [{e.text for e in s.train} | {e.text for e in s.test} for s in splits]
    for s in splits:
        assert not {e.text for e in s.train} & {e.text for e in s.test}
        assert {e.label for e in s.train + s.test} <= set(LABELS)
    assert not texts[0] & texts[1]  # no article in two people's data
    assert [s.person for s in splits] == list(PEOPLE)
