"""The demo's people: each triages BBC News articles into read / later / skip, each their own way.

A generic model cannot know that one person reads tech first and skips sport while another does the
opposite: the label set is shared, the mapping is personal. Each person's examples are drawn from
disjoint article pools, train and test disjoint, with a stated seed.

The same people carry a suite task (quic_edge.suite) on their own reading: `personal_task_splits` builds each person's
examples of, say, `bbc-word-order` from the articles of the topics they do not skip only (alex: tech, business,
politics; sam: sport, entertainment), train and test from disjoint article pools.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .data import Example, load_dataset

LABELS = ["read", "later", "skip"]


@dataclass(frozen=True)
class Person:
    name: str
    triage: dict[str, str]  # BBC topic -> personal label

    @property
    def reading(self) -> frozenset[str]:
        """The topics this person does not skip: what their own reading is made of."""
        return frozenset(topic for topic, label in self.triage.items() if label != "skip")


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


def personal_task_splits(task: str, n_train: int, n_test: int, seed: int = 0) -> tuple[list[str], list[PersonalData]]:
    """(the task's labels, each person's examples of suite task `task`), built from their own reading only: the
    articles of the topics they do not skip, dealt by `seed` into disjoint train and test pools."""
    from .suite import TASKS, article_pools, articles

    if task not in TASKS:
        raise ValueError(f"task: unknown suite task {task!r}; choose one of {sorted(TASKS)}")
    labels, build = TASKS[task]
    splits = []
    for person in PEOPLE:
        own = tuple(a for a in articles() if a.topic in person.reading)
        train_pool, test_pool = article_pools((n_train, n_test), seed, own)
        rng = random.Random(f"{task}-{person.name}-{seed}")
        splits.append(PersonalData(person, build(train_pool, n_train, rng), build(test_pool, n_test, rng)))
    return list(labels), splits
