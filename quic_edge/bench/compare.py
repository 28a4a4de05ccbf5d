"""QuIC against block OFT, LoRA (PEFT), head-only and full fine-tuning on the suite's tasks, on the ONNX Runtime
device loop, with learning rates chosen on a validation split.

    from quic_edge.bench.compare import CompareSettings, run_compare
    summary = run_compare(CompareSettings())        # hours on 2 cores; CompareSettings.make(quick=True): a minute

How (issue 12's protocol):
1. Per task and seed, a leak-free split (quic_edge.suite): a validation split is carved beside the training data;
   the test split is never used to choose anything.
2. Head only first: its learning-rate grid on the first seed (with select_seeds = K, on each of the first K seeds);
   the best validation accuracy (the mean over those seeds) picks the head's rate per task.
3. Every other adapter trains its head at that rate and searches its own rate over its grid the same way (each grid
   starts with a rate at which the adapter barely moves, so a choice below head only on validation is avoidable).
   Where the best rate is the grid's largest, the search goes one step up the 1-3-10 ladder, up to MAX_EXTENSIONS
   times, while the top stays the best (the grid's top is then not a wall the choice leans on). With refine, the
   search then tries the rates halfway (geometrically, one significant digit: 1e-2 and 3e-2 give 2e-2) between the
   best and each tried neighbour, once, so the choice is never more than a factor of about 1.7 from a tried rate.
   With head_search "beside", the adapter at its chosen rate then trains its head at the rates head-only's search
   tried just below and above its choice too, and keeps the (rate, head rate) pair with the best validation mean (a
   tie keeps head-only's rate): a tie among head rates in head-only's search no longer decides an adapter's head.
   With "ladder", its head tries every rate of head-only's 1-3-10 ladder (its grid and the rates it climbed to), and
   where another head rate wins, the adapter's own rate is searched once more at that head rate (the tried rates just
   below and above its choice): one alternation, so a head rate chosen for head-only training (which may suit a head
   alone, not a head beside an adapter) no longer decides where the adapter's search looks.
4. The chosen rate is run for the other seeds. Reported: test accuracy over seeds (mean, std, min, max), the
   validation accuracy that chose, and for QuIC the share of LoRA's gain over head only it captures,
   (acc_QuIC - acc_head) / (acc_LoRA - acc_head).
A bundle is exported per (adapter, rate, head rate) with generic labels (class0, class1, ...: every suite task is
binary, so one bundle serves all tasks) and each seed loads its own initial tensors (DeviceLoop.load_parameters).
Training jobs run in `jobs` fresh processes with one runtime thread each. Each finished job is appended to
`<work>/rows.jsonl`; a run interrupted (a killed session) and started again with the same settings picks up there.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from quic_edge.bench.common import (
    ADAPTERS,
    LORA_RANK,
    MAIN,
    TARGETS,
    RunSettings,
    adapter_numbers,
    fresh_scratch,
    lora_all_linear_numbers,
    mean_spread,
    step_schedule,
)
from quic_edge.bench.runs_files import data_settings, read_runs
from quic_edge.data import Example
from quic_edge.state import delta_parameters
from quic_edge.suite import TASKS, suite_split


@dataclass(frozen=True)
class CompareSettings(RunSettings):
    adapters: tuple[str, ...] = MAIN
    work: str = "runs/bench-compare"
    jobs: int = 2  # training processes at once, one runtime thread each
    refine: bool = False  # after the ladder, also the rates halfway between the best and its neighbours
    select_seeds: int = 1  # each search chooses on the mean validation accuracy of this many first seeds
    head_search: str = ""  # "beside" or "ladder": then each adapter's head tries other head rates too (see above)
    runs_from: tuple[str, ...] = ()  # results files whose finished runs seed the work folder (runs_files.py)
    QUICK: ClassVar[dict[str, Any]] = RunSettings.QUICK | dict(adapters=("quic12", "lora8", "head"), jobs=1)
    HEAD_SEARCHES: ClassVar[tuple[str, ...]] = ("beside", "ladder")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_search not in ("", *self.HEAD_SEARCHES):
            raise ValueError(f"head-search: unknown {self.head_search!r}; give one of {list(self.HEAD_SEARCHES)} "
                             "(beside: head-only's tried rates next to its choice; ladder: its whole ladder)")
        if not str(self.work).strip():
            raise ValueError("work: name a scratch folder for the runs, got an empty name")
        if self.jobs < 1:
            raise ValueError(f"jobs: must be at least 1 (training processes at once), got {self.jobs}")
        if not 1 <= self.select_seeds <= len(self.seeds):
            raise ValueError(f"select-seeds: {self.select_seeds} is not between 1 and the number of seeds "
                             f"({len(self.seeds)}); choose on at most as many seeds as the run trains")


def grid(name: str, quick: bool) -> tuple[float, ...]:
    """The rates a search tries (the quick run: the usual middle one only)."""
    values = ADAPTERS[name].grid
    return values[len(values) // 2 : len(values) // 2 + 1] if quick else values


def run_compare(s: CompareSettings, progress: bool = True) -> dict[str, Any]:
    """Export, search, train and evaluate every (adapter, task, seed); write the report; return it."""
    from quic_edge.bench.report import write_compare

    summary = compare(s, progress)
    write_compare(Path(s.out), summary)
    return summary


def compare(s: CompareSettings, progress: bool = True) -> dict[str, Any]:
    """The comparison's summary (what run_compare writes): the chosen rates, test accuracy over seeds, every run."""
    unknown = sorted(set(s.adapters) - set(ADAPTERS))
    if unknown:
        raise ValueError(f"adapters: unknown {unknown}; known {list(ADAPTERS)}")
    if "head" not in s.adapters:
        raise ValueError("adapters: the comparison needs head (its rate is every adapter's head rate)")
    root = Path(s.work)
    start = time.perf_counter()
    runner = Runner(s, root, progress)
    head = runner.search("head", {task: None for task in s.tasks})
    head_lr = {task: head[task]["lr"] for task in s.tasks}
    other_heads = {task: other_head_rates(head[task], s.head_search) for task in s.tasks} if s.head_search else None
    chosen = {"head": head}
    for name in [a for a in s.adapters if a != "head"]:
        chosen[name] = runner.search(name, head_lr, other_heads, again=s.head_search == "ladder")
    runner.close()
    summary = {"settings": asdict(s), "head_lr": head_lr, "adapters": {}, "runs": runner.rows,  # each job once
               "counts": parameter_counts(s.adapters), "total_seconds": time.perf_counter() - start,
               "trained": {"runs": len(runner.rows), "seconds": sum(r["train_seconds"] for r in runner.rows)}}
    for name in s.adapters:
        summary["adapters"][name] = adapter_row(name, chosen[name], runner)
    summary["gain_captured"] = gain_captured(summary)
    summary["gaps"] = {t: gap(summary, t) for t in s.tasks}
    return summary


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """Fresh (spawned) processes for training jobs, each of which ends itself when this process is gone: a killed
    run leaves no worker training on for nobody."""
    return ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def exit_with_parent(parent: int, every: float = 1.0) -> None:
    """In a pool worker: a daemon thread that ends the process once `parent` is no longer its parent (it was killed,
    and the worker was handed to init); a worker busy in a training job is ended mid-job, nothing of it was recorded."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Runner:
    """Exports bundles as needed and runs training jobs in a pool of fresh processes."""

    def __init__(self, s: CompareSettings, root: Path, progress: bool) -> None:
        from tqdm import tqdm

        self.s, self.root = s, root
        self.splits = {(t, seed): suite_split(t, s.n_train, s.n_val, s.n_test, seed) for t in s.tasks for seed in s.seeds}
        self.exports: dict[tuple, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.done = self._resume()
        self._seed()
        self.pool = worker_pool(s.jobs)
        self.bar = tqdm(disable=not progress, desc="bench compare", unit="run")

    def _resume(self) -> dict[tuple, dict[str, Any]]:
        """Rows finished by an earlier run with the same data settings (another list of adapters, tasks or seeds, or
        another job count, picks them up). Finished runs made with other data settings are never removed: the run
        stops and asks for another work folder."""
        settings, rows = self.root / "settings.json", self.root / "rows.jsonl"
        wanted = data_settings(asdict(self.s))  # rows are keyed by adapter, rates, task and seed
        if not (settings.exists() and settings.read_text() == wanted and rows.exists()):
            if settings.exists() and rows.exists() and rows.stat().st_size:
                raise ValueError(f"{self.root} holds runs finished with other settings ({settings.read_text()}; "
                                 f"this run: {wanted}); name another folder with --work, or remove that one to "
                                 "start afresh")
            fresh_scratch(self.root)
            settings.write_text(wanted)
            return {}
        done = {}
        for line in rows.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be torn
                continue
            done[_key(row)] = row
        return done

    def _seed(self) -> None:
        """The runs of the results files in `runs_from` that this folder lacks, recorded in it (its own runs, then
        the first file's, win). Every file is read and checked before anything is recorded."""
        wanted, found = data_settings(asdict(self.s)), []
        for path in self.s.runs_from:
            made_with = read_runs(path, set(ADAPTERS), set(TASKS))
            if wanted not in made_with:
                raise ValueError(f"--runs-from {path}: its runs were made with {' or '.join(made_with)}, this run's "
                                 f"data settings are {wanted}; give the options it was made with, or leave the file out")
            found += made_with[wanted]
        for row in found:
            if _key(row) not in self.done:
                self.done[_key(row)] = row
                self._record(row)

    def _record(self, row: dict[str, Any]) -> None:
        with open(self.root / "rows.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self.pool.shutdown()
        self.bar.close()

    def export(self, name: str, lr: float, head_lr: float | None) -> dict[str, Any]:
        key = (name, lr, head_lr)
        if key not in self.exports:
            self.bar.set_postfix_str(f"export {name} lr {lr:g}")
            self.exports[key] = export_adapter(name, lr, head_lr, self.s, self.root / "bundles" / f"{name}-{lr:g}-{head_lr}")
        return self.exports[key]

    def run(self, jobs: list[tuple[str, float, float | None, str, int]]) -> list[dict[str, Any]]:
        """Train and evaluate (adapter, lr, head_lr, task, seed) jobs in parallel; the rows in job order."""
        futures = []
        for name, lr, head_lr, task, seed in jobs:
            if (name, lr, head_lr, task, seed) in self.done:
                futures.append(None)
                continue
            export = self.export(name, lr, head_lr)
            work = self.root / "work" / f"{name}-{lr:g}-{head_lr}-{task}-{seed}"  # jobs differing in head rate run at once
            futures.append(self.pool.submit(train_and_evaluate, export, self.splits[task, seed], seed, self.s, str(work)))
        rows = []
        for job, future in zip(jobs, futures, strict=True):
            name, lr, head_lr, task, seed = job
            if future is None:
                row = self.done[job]
            else:
                export = self.exports[name, lr, head_lr]
                row = future.result() | {"adapter": name, "lr": lr, "head_lr": head_lr, "task": task, "seed": seed,
                                         "trainable": export["trainable"], "adapter_numbers": export["adapter_numbers"]}
                self._record(row)
                self.bar.set_postfix_str(f"{name} {task} lr {lr:g} seed {seed}: val {row['val']:.3f}")
            self.bar.update(1)
            rows.append(row)
        self.rows += rows
        return rows

    def search(self, name: str, head_lr: dict[str, float | None], other_heads: dict[str, list[float]] | None = None,
               again: bool = False) -> dict[str, dict[str, Any]]:
        """Per task, the rate with the best validation accuracy (the mean over the selection seeds); with other_heads,
        then that rate with each of the task's other head rates, keeping the best (rate, head rate) pair (and with
        again, where the head rate changed, the adapter's rates beside its choice at the new head rate); then the
        other seeds at the chosen pair."""
        selection = self.s.seeds[: self.s.select_seeds]
        rates = grid(name, self.s.quick)

        def trials(pairs) -> list[dict[str, Any]]:
            return self.run([(name, lr, head_lr[t], t, seed) for t, lr in pairs for seed in selection])

        def per_rate(rows: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
            return rate_means([r for r in rows if r["task"] == task])

        found = trials((t, lr) for t in self.s.tasks for lr in rates)
        for _ in range(MAX_EXTENSIONS if len(rates) > 1 else 0):  # the best at the grid's top: try the next rate up
            more = [(t, up) for t in self.s.tasks if (up := rate_above_best(per_rate(found, t)))]
            if not more:
                break
            found += trials(more)
        ladder = {t: sorted({r["lr"] for r in found if r["task"] == t}) for t in self.s.tasks}
        if self.s.refine and len(rates) > 1:
            found += trials((t, mid) for t in self.s.tasks for mid in rates_beside_best(per_rate(found, t)))
        chosen = {}
        for task in self.s.tasks:
            means = per_rate(found, task)
            best = best_row(means)
            chosen[task] = {"lr": best["lr"], "head_lr": head_lr[task], "selection_seeds": list(selection),
                            "search": means, "val_selection": best["val"], "ladder": ladder[task]}
        if other_heads:
            found += self.run([(name, chosen[t]["lr"], h, t, seed) for t in self.s.tasks for h in other_heads[t]
                               for seed in selection])
            for task, choice in chosen.items():
                at_rate = [r for r in found if r["task"] == task and r["lr"] == choice["lr"]]
                tried = rate_means(at_rate, by="head_lr")
                pick = best_head(tried, choice["head_lr"])
                choice |= {"head_lr": pick["head_lr"], "val_selection": pick["val"], "head_search": tried,
                           "head_search_lr": choice["lr"]}
        moved = {t: c for t, c in chosen.items() if c["head_lr"] != head_lr[t]} if again else {}
        if moved:
            found += self.run([(name, lr, c["head_lr"], t, seed) for t, c in moved.items()
                               for lr in tried_beside_best(c["search"]) for seed in selection])
            for task, choice in moved.items():
                at_head = rate_means([r for r in found if r["task"] == task and r["head_lr"] == choice["head_lr"]])
                pick = best_row(at_head)
                if pick["val"] > choice["val_selection"]:  # a tie keeps the rate chosen beside head-only's head rate
                    choice |= {"lr": pick["lr"], "val_selection": pick["val"]}
                choice["search_at_head"] = at_head
        rest = [(name, chosen[t]["lr"], chosen[t]["head_lr"], t, seed) for t in self.s.tasks
                for seed in self.s.seeds[len(selection):]]
        self.run(rest)
        return chosen


MAX_EXTENSIONS = 2  # at most this many rates above a grid's top, one at a time while the top stays the best


def rate_means(rows: list[dict[str, Any]], by: str = "lr") -> list[dict[str, Any]]:
    """One search's runs (one task), per rate (`by`: the adapter's, or with "head_lr" the head's): validation and test
    accuracy averaged over the seeds it ran, and each seed's validation accuracy; ordered by rate. The search chooses
    on these means."""
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for row in rows:
        by_rate.setdefault(row[by], []).append(row)
    return [{by: lr, "val": float(np.mean([r["val"] for r in runs])), "test": float(np.mean([r["test"] for r in runs])),
             "vals": [r["val"] for r in runs]} for lr, runs in sorted(by_rate.items())]


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The search's choice: the best validation accuracy; ties go to the smaller rate."""
    return max(rows, key=lambda r: (r["val"], -r["lr"]))


def best_head(rows: list[dict[str, Any]], head_lr: float) -> dict[str, Any]:
    """The head search's choice: the best validation accuracy; a tie keeps head-only's rate, then the smaller rate."""
    return max(rows, key=lambda r: (r["val"], r["head_lr"] == head_lr, -r["head_lr"]))


def rate_above_best(rows: list[dict[str, Any]]) -> float | None:
    """When the best rate of a search is also the largest tried, the next rate up on the 1-3-10 ladder (1e-2 -> 3e-2,
    3e-3 -> 1e-2); else None. A search whose best is its top rate has not shown where accuracy turns down."""
    best, top = best_row(rows)["lr"], max(r["lr"] for r in rows)
    if best != top:
        return None
    exponent = math.floor(math.log10(top) + 1e-9)
    mantissa = top / 10**exponent
    return float(f"{3 * 10**exponent if mantissa < 2 else 10 ** (exponent + 1):.0e}")


def other_head_rates(head: dict[str, Any], mode: str) -> list[float]:
    """The head rates an adapter's head search tries besides head-only's choice: "beside" the tried rates just below
    and above it, "ladder" every rate of head-only's ladder (its grid and the rates it climbed to, not the halfway
    rates of --refine)."""
    if mode == "beside":
        return tried_beside_best(head["search"])
    return [lr for lr in head["ladder"] if lr != head["lr"]]


def tried_beside_best(rows: list[dict[str, Any]]) -> list[float]:
    """The tried rates just below and just above a search's best rate (one or none at the ends)."""
    best, tried = best_row(rows)["lr"], sorted({r["lr"] for r in rows})
    below, above = [r for r in tried if r < best], [r for r in tried if r > best]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


def rates_beside_best(rows: list[dict[str, Any]]) -> list[float]:
    """The rates halfway, geometrically and to one significant digit, between a search's best rate and the tried rate
    just below it and just above it (those not tried yet): 3e-3, 1e-2 (best), 3e-2 give 5e-3 and 2e-2."""
    best, tried = best_row(rows)["lr"], {r["lr"] for r in rows}
    mids = [float(f"{math.sqrt(best * n):.0e}") for n in tried_beside_best(rows)]
    return [m for m in mids if m not in tried]


def _key(row: dict[str, Any]) -> tuple:
    return row["adapter"], row["lr"], row["head_lr"], row["task"], row["seed"]


def export_adapter(name: str, lr: float, head_lr: float | None, s: CompareSettings, out: Path) -> dict[str, Any]:
    """One bundle (built with the first seed) and, for each further seed, that seed's initial trainable tensors."""
    from quic_edge.export import export_bundle
    from quic_edge.tasks import example_batch

    spec, classes = ADAPTERS[name], 2
    labels = [f"class{i}" for i in range(classes)]
    batch = example_batch("minilm", s.batch_size, s.seq_len, classes)
    inits = {}
    for seed in s.seeds:
        model = spec.build(classes, seed)
        if seed == s.seeds[0]:
            export_bundle("ort", model, batch, out, labels=labels, optimizer="adamw", lr=lr,
                          head_lr=None if spec.kind == "head" else head_lr)
            trainable, adapter_only = adapter_numbers(model)
        else:
            path = out.parent / f"{out.name}-init-{seed}.npz"
            np.savez(path, **{n: p.detach().numpy() for n, p in delta_parameters(model).items()})
            inits[seed] = str(path)
    return {"adapter": name, "bundle": str(out), "inits": inits, "trainable": trainable, "adapter_numbers": adapter_only}


def _generic(examples: list[Example], labels: list[str]) -> list[Example]:
    return [Example(e.text, f"class{labels.index(e.label)}") for e in examples]


def train_and_evaluate(export: dict[str, Any], split, seed: int, s: CompareSettings, work: str) -> dict[str, Any]:
    """Train one seed on the ONNX Runtime device loop (one thread) and report validation and test accuracy."""
    from quic_edge.runtimes import open_loop

    shutil.rmtree(work, ignore_errors=True)
    loop = open_loop(export["bundle"], work, threads=1)
    if seed in export["inits"]:
        with np.load(export["inits"][seed]) as init:
            loop.load_parameters({k: init[k] for k in init.files})
    total = loop.steps_for(len(split.train), s.epochs)
    report = loop.fit(_generic(split.train, split.labels), epochs=s.epochs, seed=seed, progress=False,
                      schedule=step_schedule(s.schedule, total))
    row = {"val": loop.evaluate(_generic(split.val, split.labels)), "test": loop.evaluate(_generic(split.test, split.labels)),
           "train_seconds": report.seconds, "steps": report.steps, "first_loss": report.losses[0],
           "last_loss": report.losses[-1], "delta_bytes": loop.export_delta(Path(work) / "delta.safetensors").stat().st_size}
    del loop
    shutil.rmtree(work, ignore_errors=True)
    return row


def adapter_row(name: str, chosen: dict[str, dict[str, Any]], runner: Runner) -> dict[str, Any]:
    spec, rows = ADAPTERS[name], runner.rows
    first = next(r for r in rows if r["adapter"] == name)
    result: dict[str, Any] = {"title": spec.title, "trainable": first["trainable"],
                              "adapter_numbers": first["adapter_numbers"], "tasks": {}}
    for task, choice in chosen.items():
        runs = [r for r in rows if r["adapter"] == name and r["task"] == task and r["lr"] == choice["lr"]
                and r["head_lr"] == choice["head_lr"]]
        tests = [r["test"] for r in runs]
        result["tasks"][task] = {**choice, "test": mean_spread(tests) | {"values": tests},
                                 "delta_bytes": runs[0]["delta_bytes"],
                                 "train_seconds": mean_spread([r["train_seconds"] for r in runs])}
    return result


def gain_captured(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per QuIC adapter and task: (acc - head) / (LoRA r8 - head) on the test means, and the same per seed. Where the
    run has a LoRA r8 on the QuIC adapter's own layers other than the default one (lora8-vf for quic12-vf, lora8-topK
    for quic12-topK), the share of that LoRA's gain too, under "same_layers", so a placement is compared like with
    like."""
    rows = summary["adapters"]
    if "lora8" not in rows or "head" not in rows:
        return {}
    result: dict[str, dict[str, Any]] = {}
    for name, row in rows.items():
        if ADAPTERS[name].kind != "quic":
            continue
        same = same_layers_lora(name, rows)
        result[name] = {}
        for task, t in row["tasks"].items():
            head = rows["head"]["tasks"][task]
            result[name][task] = {**share_of(t["test"], head["test"], rows["lora8"]["tasks"][task]["test"]),
                                  "val_at_least_head": t["val_selection"] >= head["val_selection"]}
            if same is not None:
                result[name][task]["same_layers"] = {
                    "lora": same, "title": rows[same]["title"],
                    **share_of(t["test"], head["test"], rows[same]["tasks"][task]["test"])}
    return result


def same_layers_lora(name: str, rows: dict[str, Any]) -> str | None:
    """The LoRA r8 of the run on exactly the layers of QuIC adapter `name`, when that is not the default lora8."""
    spec = ADAPTERS[name]
    for other in rows:
        lora = ADAPTERS[other]
        if (other != "lora8" and lora.kind == "lora" and lora.rank == ADAPTERS["lora8"].rank
                and lora.targets == spec.targets and lora.top == spec.top):
            return other
    return None


def share_of(quic: dict[str, Any], head: dict[str, Any], lora: dict[str, Any]) -> dict[str, Any]:
    """(QuIC - head) / (LoRA - head) on the test means, per seed, and its bootstrap interval (share_interval)."""
    denominator = lora["mean"] - head["mean"]
    per_seed = [(q - h) / (lo - h) if lo != h else None
                for q, h, lo in zip(quic["values"], head["values"], lora["values"], strict=True)]
    return {"ratio": (quic["mean"] - head["mean"]) / denominator if denominator else None, "lora_gain": denominator,
            "per_seed": per_seed, "interval": share_interval(quic["values"], head["values"], lora["values"])}


def share_interval(quic: list[float], head: list[float], lora: list[float], level: float = 0.9) -> dict[str, Any]:
    """A paired bootstrap interval of the share of LoRA's gain, (mean QuIC - mean head) / (mean LoRA - mean head):
    seeds drawn with replacement, a seed's three runs together (they share its split). All n^n draws for up to 6
    seeds, 20,000 random ones beyond. A draw where LoRA gains nothing has no share: it is left out and counted
    (`no_lora_gain`, a fraction of the draws); many of them say LoRA's gain is within the seed noise."""
    n = len(quic)
    if n < 2 or not len(head) == len(lora) == n:
        return {"low": None, "high": None, "level": level, "no_lora_gain": None}
    rng = random.Random(0)
    draws = (itertools.product(range(n), repeat=n) if n <= 6 else
             ([rng.randrange(n) for _ in range(n)] for _ in range(20_000)))
    shares, total = [], 0
    for draw in draws:
        total += 1
        gain = sum(lora[i] - head[i] for i in draw)
        if gain > 0:
            shares.append(sum(quic[i] - head[i] for i in draw) / gain)
    if not shares:
        return {"low": None, "high": None, "level": level, "no_lora_gain": 1.0}
    shares.sort()
    tail = (1 - level) / 2
    return {"low": shares[math.floor(tail * (len(shares) - 1))], "high": shares[math.ceil((1 - tail) * (len(shares) - 1))],
            "level": level, "no_lora_gain": 1 - len(shares) / total}


def gap(summary: dict[str, Any], task: str) -> dict[str, float] | None:
    """Head only against full fine-tuning on a task (test means): does the task need adaptation?"""
    rows = summary["adapters"]
    if "head" not in rows or "full" not in rows:
        return None
    head, full = rows["head"]["tasks"][task]["test"]["mean"], rows["full"]["tasks"][task]["test"]["mean"]
    return {"head": head, "full": full, "gap_points": 100 * (full - head)}


def parameter_counts(adapters: tuple[str, ...]) -> dict[str, Any]:
    """Angles of the run's QuIC adapters by the library's formulas (quic_edge.counts), and LoRA rank 8 built with
    PEFT on its default targets (query/value) and on all linear layers."""
    from quic_edge import models
    from quic_edge.counts import count

    base, _ = models.load("minilm", num_labels=2)
    counts: dict[str, Any] = {"lora_rank": LORA_RANK, "targets": list(TARGETS)}
    counts["lora_built"] = adapter_numbers(ADAPTERS["lora8"].build(2, seed=0))[1]
    counts["lora_all_linear_built"] = lora_all_linear_numbers(2)
    for name, spec in ((n, ADAPTERS[n]) for n in adapters):
        if spec.kind == "quic":
            angles = count(base, spec.config, lora_rank=LORA_RANK)["trainable_angles"]
            counts[name] = {"angles": angles, "ratio_lora": counts["lora_built"] / angles,
                            "ratio_lora_all_linear": counts["lora_all_linear_built"] / angles}
    return counts
