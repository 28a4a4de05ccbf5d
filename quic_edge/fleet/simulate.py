"""`quic-edge fleet simulate`: a federation of N clients on Flower's simulation engine, on this machine.

    from quic_edge.fleet.simulate import FleetSettings, run_fleet
    summary = run_fleet(FleetSettings(clients=20, rounds=5, out="runs/fleet"))

Exports one MiniLM bundle per adapter (QuIC; LoRA rank 8 on query/value for comparison) and reuses it for every
client; each client trains through the device loop in a Ray worker, the server validates and averages. Then a
centralized baseline: one device loop trained on the union of the clients' data for the same number of steps.
Writes summary.md, accuracy.png and results.json under `out`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from quic_edge.fleet.partition import fleet_split, labels
from quic_edge.fleet.server import ServerSettings, make_server_app

ADAPTERS = ("quic", "lora")


@dataclass(frozen=True)
class FleetSettings:
    clients: int = 20
    rounds: int = 5
    runtime: str = "ort"
    out: str = "runs/fleet"
    alpha: float = 0.5  # Dirichlet concentration of each client's topic mix
    seed: int = 0
    n_train: int = 32
    n_test: int = 32
    heldout: int = 250
    seq_len: int = 64
    batch_size: int = 8
    lr_quic: float = 1e-2
    lr_lora: float = 5e-3
    adapters: tuple[str, ...] = ADAPTERS
    centralized: bool = True
    cpus: int = 2  # Ray workers in parallel (each client's loop runs on one ORT thread)
    faults: str = ""
    model: str = "minilm"
    round_timeout: float = 600.0  # seconds the server waits for a round's replies; a client silent by then is dropped


def export_fleet_bundle(settings: FleetSettings, adapter: str, out_dir: Path) -> Path:
    """The one bundle every client of this adapter loads (exported once, reused when it is already there)."""
    from quic_edge import QuICConfig, apply_quic, baselines, models
    from quic_edge.export import export_bundle
    from quic_edge.formats.bundle import read_manifest
    from quic_edge.tasks import example_batch

    names = labels()
    lr = settings.lr_quic if adapter == "quic" else settings.lr_lora
    if (out_dir / "manifest.json").is_file():
        manifest = read_manifest(out_dir)
        shape = manifest["inputs"][0]["shape"]
        if manifest["optimizer"]["lr"] == lr and shape == [settings.batch_size, settings.seq_len] and manifest["labels"] == names:
            return out_dir
    model, _ = models.load(settings.model, num_labels=len(names), seed=settings.seed)
    model = apply_quic(model, QuICConfig()) if adapter == "quic" else baselines.lora(model, 8, ("query", "value"))
    batch = example_batch(settings.model, settings.batch_size, settings.seq_len, len(names))
    export_bundle(settings.runtime, model, batch, out_dir, labels=names, optimizer="adamw", lr=lr)
    return out_dir


def server_settings(settings: FleetSettings, bundle: Path, out: Path) -> ServerSettings:
    return ServerSettings(
        bundle=str(bundle.resolve()), work_root=str((out / "work").resolve()), clients=settings.clients,
        n_train=settings.n_train, n_test=settings.n_test, heldout=settings.heldout, alpha=settings.alpha,
        seed=settings.seed, threads=1, faults=settings.faults, rounds=settings.rounds, out=str(out.resolve()),
        round_timeout=settings.round_timeout,
    )


def simulate_federation(server: ServerSettings, cpus: int) -> dict[str, Any]:
    """Flower's simulation engine (Ray): one virtual SuperNode per client; returns the server's history."""
    from flwr.simulation import run_simulation

    from quic_edge.fleet.client import app as client_app

    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False, "log_to_driver": True}}
    history_file = Path(server.out) / "history.json"
    history_file.unlink(missing_ok=True)
    run_simulation(make_server_app(server), client_app, num_supernodes=server.clients, backend_config=backend)
    if not history_file.is_file():
        raise RuntimeError(f"the federation did not finish: no {history_file} (see the log above)")
    return json.loads(history_file.read_text())


def centralized(settings: FleetSettings, bundle: Path, out: Path) -> dict[str, Any]:
    """One device loop on the union of the clients' training data: one epoch of the union per round
    (as many steps as all clients take in a round), held-out accuracy after each."""
    from quic_edge.runtimes import open_loop

    split = fleet_split(settings.clients, settings.n_train, settings.n_test, settings.heldout, settings.alpha, settings.seed)
    union = [e for c in split.clients for e in c.train]
    loop = open_loop(bundle, out / "work", threads=settings.cpus)
    start = time.perf_counter()
    accuracy, steps = [loop.evaluate(split.heldout)], 0
    for r in range(settings.rounds):
        steps += loop.fit(union, epochs=1, seed=settings.seed + r, progress=False).steps
        accuracy.append(loop.evaluate(split.heldout))
    return {"accuracy": accuracy, "steps": steps, "examples": len(union), "seconds": time.perf_counter() - start}


def run_fleet(settings: FleetSettings) -> dict[str, Any]:
    """Every federation and baseline the settings ask for; writes and returns the summary."""
    from quic_edge.fleet.report import write_report

    if settings.runtime != "ort":
        raise ValueError(f"runtime: the fleet needs a loop whose parameters can be set (only 'ort'), not {settings.runtime!r}")
    if not 0 < settings.round_timeout < float("inf"):
        raise ValueError(f"round timeout: the server needs a positive number of seconds to wait for a round's replies, "
                         f"not {settings.round_timeout!r}")
    for name in ("rounds", "cpus"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name}: must be at least 1, got {getattr(settings, name)}")
    if not str(settings.out).strip():
        raise ValueError("out: name a folder for the fleet's report, got an empty name")
    out = Path(settings.out)
    summary: dict[str, Any] = {"settings": asdict(settings), "federations": {}}
    start = time.perf_counter()
    for adapter in settings.adapters:
        bundle = export_fleet_bundle(settings, adapter, out / "bundles" / adapter)
        faults = settings.faults if adapter == settings.adapters[0] else ""
        server = server_settings(replace(settings, faults=faults), bundle, out / adapter)
        summary["federations"][adapter] = simulate_federation(server, settings.cpus)
    if settings.centralized:
        bundle = export_fleet_bundle(settings, "quic", out / "bundles" / "quic")
        summary["centralized"] = centralized(settings, bundle, out / "centralized")
    if "quic" in summary["federations"]:
        summary["rotation_gap"] = rotation_gaps(out / "quic", summary["federations"]["quic"])
    split = fleet_split(settings.clients, settings.n_train, settings.n_test, settings.heldout, settings.alpha, settings.seed)
    summary["client_mixes"] = [c.mix(split.labels) for c in split.clients]
    summary["labels"] = split.labels
    summary["seconds"] = time.perf_counter() - start
    write_report(out, summary)
    return summary


def rotation_gaps(folder: Path, history: dict[str, Any]) -> dict[str, Any]:
    """The angle-averaging gap (soundness.py) for each round's accepted QuIC updates."""
    from quic_edge.fleet.soundness import read_updates, rotation_gap

    gaps = {}
    for entry in history["rounds"]:
        path = folder / f"updates-round-{entry['round']}.npz"
        if path.is_file() and len(entry["accepted"]) > 1:
            tensors, weights = read_updates(path)
            gaps[str(entry["round"])] = rotation_gap(tensors, weights, history["manifest"]["config"])
    return gaps
