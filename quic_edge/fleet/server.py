"""The fleet's ServerApp: FedAvg over QuIC deltas (angles and head), each update validated before it counts.

`FleetAvg` replaces FedAvg's aggregation with quic_edge.fleet.aggregation: an update from another base or
config, with non-finite values, wrong names or shapes, or no reply at all is rejected with a logged reason;
the rest are averaged by example count. The server evaluates every new global delta on a held-out set with
its own device loop on the same bundle, and writes `history.json` (per round: accuracy, personal accuracy,
bytes, accepted and rejected clients), each round's accepted updates (`updates-round-R.npz`, for the
rotation-gap check in README.md), and the final global delta (QuIC bundles: a delta file).

Settings: `ServerSettings` from the run config (`flwr run ... --run-config`) or given to `make_server_app`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from quic_edge.fleet.aggregation import Update, aggregate
from quic_edge.fleet.client import ClientSettings, arrays_to_numpy, numpy_to_arrays
from quic_edge.fleet.partition import fleet_split
from quic_edge.formats.identity import IDENTITY_KEYS, identity_of

log = logging.getLogger("quic_edge.fleet")


@dataclass(frozen=True)
class ServerSettings(ClientSettings):
    rounds: int = 5
    out: str = "runs/fleet/quic"
    round_timeout: float = 600.0  # seconds to wait for replies; a client that has not replied by then is dropped

    @classmethod
    def from_context(cls, context: Context, base: ServerSettings | None = None) -> ServerSettings:
        values = asdict(base) if base is not None else {}
        values.update({k.replace("-", "_"): v for k, v in context.run_config.items()})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def client_config(self) -> ConfigRecord:
        own = {f.name for f in fields(ClientSettings)}
        return ConfigRecord({k: v for k, v in self.to_config().items() if k.replace("-", "_") in own})


@dataclass
class RoundLog:
    round: int
    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    bytes_up_per_client: float = 0.0  # ArrayRecord payload a client sent (float32 arrays, numpy headers, names)
    bytes_down_per_client: float = 0.0  # the global delta each client received
    train_loss: float = math.nan
    global_accuracy: float = math.nan
    personal_accuracy: float = math.nan  # mean over clients: local fine-tune from the global, own held-out set
    global_accuracy_local: float = math.nan  # mean over clients: the global itself on each client's held-out set
    seconds: float = 0.0


class FleetAvg(FedAvg):
    """FedAvg whose aggregation validates every reply (quic_edge.fleet.aggregation) and keeps a round log."""

    def __init__(self, initial: Mapping[str, np.ndarray], identity: Mapping[str, str], **options: Any) -> None:
        super().__init__(**options)
        self.global_tensors = {k: np.asarray(v) for k, v in initial.items()}
        self.identity = dict(identity)
        self.rounds: dict[int, RoundLog] = {}
        self.updates: dict[int, list[Update]] = {}
        self._sampled: dict[int, list[int]] = {}
        self._started: dict[int, float] = {}
        self._names: dict[int, str] = {}  # node id -> client-<partition-id>, learned from replies

    def _client_name(self, msg: Message) -> str:
        node = msg.metadata.src_node_id
        if not msg.has_error() and "metrics" in msg.content and "partition-id" in msg.content["metrics"]:
            self._names[node] = f"client-{int(msg.content['metrics']['partition-id'])}"
        return self._names.get(node, f"node-{node}")

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sampled[server_round] = [m.metadata.dst_node_id for m in messages]
        self._started[server_round] = time.perf_counter()
        self.rounds[server_round] = RoundLog(server_round, bytes_down_per_client=float(arrays.count_bytes()))
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        updates, failed, sizes, losses = [], [], [], []
        for msg in replies:
            node = self._client_name(msg)
            if msg.has_error():
                failed.append((node, f"no update: the client failed ({msg.error.reason.strip().splitlines()[-1][:200]})"))
                continue
            try:
                update = _parse_update(node, msg)  # clients are named client-<partition-id> where known
            except (KeyError, TypeError, ValueError) as err:
                failed.append((node, f"malformed reply: {err}"))
                continue
            updates.append(update)
            sizes.append(msg.content["arrays"].count_bytes())
            losses.append(float(msg.content["metrics"].get("train-loss", math.nan)))
        replied = {m.metadata.src_node_id for m in replies}
        failed += [(self._names.get(n, f"node-{n}"), "no reply before the round timed out")
                   for n in self._sampled.get(server_round, []) if n not in replied]
        result = aggregate(self.global_tensors, updates, self.identity, failed)
        self.global_tensors = result.tensors
        self.updates[server_round] = [u for u in updates if u.client in result.accepted]
        entry = self.rounds.setdefault(server_round, RoundLog(server_round))
        entry.accepted, entry.rejected = result.accepted, result.rejected
        entry.bytes_up_per_client = float(np.mean(sizes)) if sizes else 0.0
        finite = [x for x in losses if math.isfinite(x)]
        entry.train_loss = float(np.mean(finite)) if finite else math.nan
        metrics = MetricRecord({"accepted": len(result.accepted), "rejected": len(result.rejected)})
        return numpy_to_arrays(self.global_tensors), metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        personal, local = [], []
        for msg in replies:
            if msg.has_error():
                log.warning("evaluation failed on %s: %s", self._client_name(msg), msg.error.reason[-200:])
                continue
            metrics = msg.content["metrics"]
            personal.append(float(metrics["personal-accuracy"]))
            local.append(float(metrics["global-accuracy-local"]))
        entry = self.rounds.setdefault(server_round, RoundLog(server_round))
        if personal:
            entry.personal_accuracy, entry.global_accuracy_local = float(np.mean(personal)), float(np.mean(local))
        entry.seconds = time.perf_counter() - self._started.get(server_round, time.perf_counter())
        return MetricRecord({"personal-accuracy": entry.personal_accuracy, "clients": len(personal)})


def _parse_update(node: str, msg: Message) -> Update:
    content = msg.content
    identity = content["identity"]
    return Update(
        client=node,
        tensors=arrays_to_numpy(content["arrays"]),
        num_examples=int(content["metrics"]["num-examples"]),
        identity={key: str(identity[key]) for key in IDENTITY_KEYS},
    )


def run_server(grid: Grid, settings: ServerSettings) -> dict[str, Any]:
    """Run the federation (`settings.rounds` rounds over every connected client); write and return the history."""
    from quic_edge.runtimes import open_loop

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    server_loop = open_loop(settings.bundle, out / "server-work", threads=0)
    heldout = fleet_split(settings.clients, settings.n_train, settings.n_test, settings.heldout, settings.alpha,
                          settings.seed).heldout
    strategy = FleetAvg(
        server_loop.parameters(), identity_of(server_loop.manifest), min_available_nodes=settings.clients,
        min_train_nodes=settings.clients, min_evaluate_nodes=settings.clients,
    )
    accuracy: dict[int, float] = {}

    def evaluate_global(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        server_loop.load_parameters(arrays_to_numpy(arrays))
        accuracy[server_round] = server_loop.evaluate(heldout)
        return MetricRecord({"global-accuracy": accuracy[server_round]})

    start = time.perf_counter()
    strategy.start(
        grid, numpy_to_arrays(strategy.global_tensors), num_rounds=settings.rounds, timeout=settings.round_timeout,
        train_config=settings.client_config(), evaluate_config=settings.client_config(), evaluate_fn=evaluate_global,
    )
    for r, entry in strategy.rounds.items():
        entry.global_accuracy = accuracy.get(r, math.nan)
    history = {
        "settings": asdict(settings),
        "manifest": {k: server_loop.manifest.get(k) for k in ("model", "adapter", "config", "base_fingerprint", "trainable")},
        "initial_global_accuracy": accuracy.get(0, math.nan),
        "rounds": [asdict(strategy.rounds[r]) for r in sorted(strategy.rounds)],
        "seconds": time.perf_counter() - start,
    }
    _write_outputs(out, strategy, server_loop, history)
    return history


def _write_outputs(out: Path, strategy: FleetAvg, server_loop: Any, history: dict[str, Any]) -> None:
    for r, updates in strategy.updates.items():
        arrays = {f"{u.client}/{name}": a for u in updates for name, a in u.tensors.items()}
        weights = {f"{u.client}/__num_examples__": np.array(u.num_examples) for u in updates}
        np.savez(out / f"updates-round-{r}.npz", **arrays, **weights)
    server_loop.load_parameters(strategy.global_tensors)
    if server_loop.manifest.get("config") is not None:  # a QuIC bundle: the global is a delta a device can load
        history["global_delta"] = str(server_loop.export_delta(out / "global.safetensors"))
        history["global_delta_bytes"] = (out / "global.safetensors").stat().st_size
    (out / "history.json").write_text(json.dumps(history, indent=2))


def make_server_app(settings: ServerSettings | None = None) -> ServerApp:
    """A ServerApp that runs `run_server` with these settings, overridden by the run config where given."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, ServerSettings.from_context(context, settings))

    return server


app = make_server_app()
