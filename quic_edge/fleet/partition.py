"""Non-identical client data: each client a different topic mix of BBC News (Dirichlet label skew), plus a
global held-out set disjoint from every client's data. Torch-free: a client computes its own slice.

    split = fleet_split(clients=20, n_train=32, n_test=32, heldout=250, alpha=0.5, seed=0)
    split.clients[3].train, split.clients[3].test, split.heldout
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from quic_edge.data import Example, load_dataset

DATASET = "bbc"


@dataclass(frozen=True)
class ClientData:
    train: list[Example]
    test: list[Example]  # the client's own held-out examples, same topic mix as its train set

    def mix(self, labels: list[str]) -> list[float]:
        """Share of each label in the client's train set."""
        counts = np.array([sum(e.label == name for e in self.train) for name in labels], dtype=np.float64)
        return list(counts / max(1, counts.sum()))


@dataclass(frozen=True)
class FleetSplit:
    labels: list[str]
    clients: list[ClientData]
    heldout: list[Example]


@lru_cache(maxsize=1)
def _articles() -> tuple[Example, ...]:
    """The dataset (load_dataset drops repeated texts, so no copy leaks into the held-out set)."""
    return tuple(load_dataset(DATASET))


def labels() -> list[str]:
    return sorted({e.label for e in _articles()})


def fleet_split(clients: int, n_train: int, n_test: int, heldout: int, alpha: float, seed: int = 0) -> FleetSplit:
    """Disjoint examples for every client and a held-out set, from one seeded permutation.

    The held-out set is stratified (equal share per topic). Client i draws its topic proportions from
    Dirichlet(alpha) (small alpha: one or two topics dominate; large alpha: near uniform), then takes
    articles of each topic from the unused pool; a topic that runs dry is topped up from the others.
    """
    if clients < 1 or n_train < 1 or n_test < 0 or heldout < 0 or not alpha > 0:
        raise ValueError("fleet split: clients, n_train >= 1; n_test, heldout >= 0; alpha > 0")
    articles, names = _articles(), labels()
    rng = np.random.default_rng(seed)
    pools = {name: [i for i in rng.permutation(len(articles)) if articles[i].label == name] for name in names}
    held = [pools[names[k % len(names)]].pop() for k in range(heldout)]
    need = clients * (n_train + n_test)
    if need > sum(len(p) for p in pools.values()):
        raise ValueError(f"fleet split: {clients} clients x {n_train + n_test} examples do not fit in {DATASET}")
    out = []
    for _ in range(clients):
        mix = rng.dirichlet(np.full(len(names), alpha))
        chosen = _draw(pools, names, mix, n_train + n_test, rng)
        examples = [articles[i] for i in chosen]
        out.append(ClientData(train=examples[:n_train], test=examples[n_train:]))
    return FleetSplit(labels=names, clients=out, heldout=[articles[i] for i in held])


def _draw(pools: dict[str, list[int]], names: list[str], mix: np.ndarray, count: int, rng: np.random.Generator) -> list[int]:
    """`count` article indices with topic shares near `mix`, removed from the pools, in shuffled order."""
    chosen: list[int] = []
    for _ in range(count):
        available = np.array([len(pools[n]) > 0 for n in names], dtype=np.float64)
        weights = mix * available
        if weights.sum() == 0:
            weights = available
        topic = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        chosen.append(pools[topic].pop())
    return chosen
