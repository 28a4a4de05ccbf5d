"""The fleet's ClientApp: each training round is the device loop (the bundle and runtime a phone runs) on the
client's own data. Torch-free, like the device loop itself.

A round, as a device does it:
  1. open the loop on the shared bundle with the client's own work dir (resumes its newest checkpoint: the
     optimizer state survives rounds, as on a phone that keeps its files),
  2. write the global delta's values into the loop (`load_parameters`),
  3. `loop.fit` one short pass over the client's examples, checkpoint,
  4. reply with the trained tensors, the example count and the bundle identity (base, config, adapter).
Evaluation: from the global delta, a short local fine-tune in a scratch folder, then accuracy on the client's
own held-out examples (its personal accuracy); the client's training state is not touched.

Settings come in the message's ConfigRecord (see `ClientSettings`); the node's `partition-id` (Flower's
simulation sets it; a SuperNode gets it with `--node-config "partition-id=3"`) picks the client's data.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from quic_edge.fleet.partition import ClientData, fleet_split
from quic_edge.formats.identity import IDENTITY_KEYS, identity_of

FAULTS = ("drop", "nan", "foreign-base", "foreign-config")


@dataclass(frozen=True)
class ClientSettings:
    """What the server tells every client (ConfigRecord keys are these names with '-' for '_')."""

    bundle: str = ""
    work_root: str = "runs/fleet/work"
    clients: int = 20
    n_train: int = 32
    n_test: int = 32
    heldout: int = 250
    alpha: float = 0.5
    seed: int = 0
    epochs: int = 1
    personal_epochs: int = 1
    threads: int = 1
    faults: str = ""  # fault injection for tests and drills: "3:nan,5:drop" (partition-id:fault, FAULTS)

    def to_config(self) -> dict[str, Any]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClientSettings:
        known = {f.name: f.type for f in fields(cls)}
        values = {k.replace("-", "_"): v for k, v in config.items() if k.replace("-", "_") in known}
        return cls(**values)

    def fault_of(self, partition: int) -> str | None:
        for item in filter(None, (s.strip() for s in self.faults.split(","))):
            pid, _, fault = item.partition(":")
            if fault not in FAULTS:
                raise ValueError(f"faults: {fault!r} is not one of {FAULTS}")
            if int(pid) == partition:
                return fault
        return None


class SimulatedDrop(RuntimeError):
    """Raised by a client told to drop mid-round (fault 'drop'): it trained, then never replied."""




def arrays_to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def numpy_to_arrays(tensors: Mapping[str, np.ndarray]) -> ArrayRecord:
    record = ArrayRecord()
    for name, array in tensors.items():
        record[name] = Array(np.ascontiguousarray(array))
    return record


def partition_id(context: Context) -> int:
    if "partition-id" not in context.node_config:
        raise ValueError("this node has no partition-id: start the SuperNode with --node-config 'partition-id=N'")
    return int(context.node_config["partition-id"])


def client_data(settings: ClientSettings, partition: int) -> ClientData:
    split = fleet_split(settings.clients, settings.n_train, settings.n_test, settings.heldout, settings.alpha, settings.seed)
    if not 0 <= partition < len(split.clients):
        raise ValueError(f"partition-id {partition} is outside 0..{len(split.clients) - 1}")
    return split.clients[partition]


def open_client_loop(settings: ClientSettings, work_dir: Path) -> Any:
    from quic_edge.runtimes import open_loop

    return open_loop(settings.bundle, work_dir, threads=settings.threads, keep=1)


def local_round(settings: ClientSettings, partition: int, global_tensors: Mapping[str, np.ndarray], server_round: int):
    """Steps 1-3 of a round: (trained tensors, identity, example count, mean loss)."""
    data = client_data(settings, partition)
    loop = open_client_loop(settings, Path(settings.work_root) / f"client-{partition:03d}")
    loop.load_parameters(dict(global_tensors))
    report = loop.fit(data.train, epochs=settings.epochs, seed=settings.seed + 1000 * server_round + partition, progress=False)
    loop.save_checkpoint()
    losses = [x for x in report.losses if math.isfinite(x)]
    return loop.parameters(), identity_of(loop.manifest), len(data.train), float(np.mean(losses)) if losses else math.nan


def inject_fault(fault: str | None, partition: int, tensors: dict[str, np.ndarray], identity: dict[str, str]) -> None:
    """Corrupt a reply as a faulty device would (tests and drills only; `faults` is empty in normal runs)."""
    if fault == "drop":
        raise SimulatedDrop(f"client-{partition} dropped mid-round (simulated): trained but sent nothing")
    if fault == "nan":
        name = next((n for n in tensors if n.endswith("angles")), next(iter(tensors)))
        tensors[name].reshape(-1)[::7] = np.nan
    elif fault == "foreign-base":
        identity["base_fingerprint"] = "0" * 64
    elif fault == "foreign-config":
        identity["config"] = identity["config"].replace('"blocks":', '"blocks":1')


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    settings = ClientSettings.from_config(msg.content["config"])
    partition = partition_id(context)
    server_round = int(msg.content["config"].get("server-round", 0))
    tensors, identity, count, loss = local_round(settings, partition, arrays_to_numpy(msg.content["arrays"]), server_round)
    inject_fault(settings.fault_of(partition), partition, tensors, identity)
    content = RecordDict({
        "arrays": numpy_to_arrays(tensors),
        "metrics": MetricRecord({"num-examples": count, "train-loss": loss, "partition-id": partition}),
        "identity": ConfigRecord({key: identity[key] for key in IDENTITY_KEYS}),
    })
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    settings = ClientSettings.from_config(msg.content["config"])
    partition = partition_id(context)
    data = client_data(settings, partition)
    with tempfile.TemporaryDirectory(prefix=f"fleet-personal-{partition}-") as scratch:
        loop = open_client_loop(settings, Path(scratch))
        loop.load_parameters(arrays_to_numpy(msg.content["arrays"]))
        global_local = loop.evaluate(data.test)
        loop.fit(data.train, epochs=settings.personal_epochs, seed=settings.seed + partition, progress=False)
        personal = loop.evaluate(data.test)
    metrics = {"num-examples": len(data.test), "personal-accuracy": personal, "global-accuracy-local": global_local}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
