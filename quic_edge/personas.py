"""The demo's people: each triages BBC News articles into read / later / skip, each their own way.

A generic model cannot know that one person reads tech first and skips sport while another does the
opposite: the label set is shared, the mapping is personal. Each person's examples are drawn from
disjoint article pools, train and test disjoint, with a stated seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Example, load_dataset

LABELS = ["read", "later", "skip"]


@dataclass(frozen=True)
class Person:
    name: str
    triage: dict[str, str]  # BBC topic -> personal label


PEOPLE = (
    Person("alex", {"tech": "read", "business": "later", "politics": "later", "sports": "skip",
                    "entertainment": "skip"}),
    Person("sam", {"sports": "read", "entertainment": "later", "business": "skip", "politics": "skip",
                   "tech": "skip"}),
)


@dataclass(frozen=True)
class PersonalData:
    person: Person
    train: list[Example]
    test: list[Example]


def personal_splits(n_train: int, n_test: int, seed: int = 0) -> list[PersonalData]:
    """Disjoint train/test examples per person, relabelled by the person's triage.

    Articles are shuffled once with `seed` and dealt to the people in turn, so no article is in two
    people's data, and each person's train and test sets are disjoint slices of their own pool.
    """
    articles = load_dataset("bbc")
    order = np.random.default_rng(seed).permutation(len(articles))
    pools = [order[i :: len(PEOPLE)] for i in range(len(PEOPLE))]
    if n_train + n_test > min(len(p) for p in pools):
        raise ValueError(f"n_train + n_test must be at most {min(len(p) for p in pools)} per person")
    splits = []
    for person, pool in zip(PEOPLE, pools, strict=True):
        relabelled = [Example(articles[i].text, person.triage[articles[i].label]) for i in pool]
        splits.append(PersonalData(person, relabelled[:n_train], relabelled[n_train : n_train + n_test]))
    return splits
