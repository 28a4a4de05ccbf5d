"""The learning curve (issue 12): test accuracy against training examples per person, head only against the adapters,
on one suite task, through the ONNX Runtime device loop.

    quic-edge bench curve --rates benchmarks/results/compare.json --sizes 50,200,800,3200
    quic-edge bench curve --search --sizes 50,200,800,3200

By default each adapter trains at the rates a `bench compare` run chose for it on that task's validation split (its
--json output, or benchmarks/results/compare.json), the same at every size: cheap, but a rate chosen at one size can be
wrong at another (a rate that suits 1,000 examples may diverge over 3,200 examples' steps). With --search every size
runs `bench compare`'s own search on its own validation split (and --refine, --select-seeds, --head-search as there),
at about twice the runs or more. The report says which, and where fixed rates came from (a compare run, or a file
written by hand). Every size is its own leak-free split (the same validation and test sizes), 3 seeds, the same
epochs; each size's runs are kept in `<work>/n<size>/rows.jsonl` (an interrupted run resumes there, and the two modes
share the runs they have in common). --runs-from FILE seeds each size's folder with a results file's runs made at that
size (a comparison's at its one size, a curve's at each of its sizes); every run of the summary names its size.
Writes curve.{json,md,png}.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from quic_edge.bench.common import ADAPTERS, mean_spread
from quic_edge.bench.compare import CompareSettings, Runner, compare
from quic_edge.bench.report import time_text
from quic_edge.bench.runs_files import data_settings, read_runs
from quic_edge.suite import TASKS


@dataclass(frozen=True)
class CurveSettings(CompareSettings):
    sizes: tuple[int, ...] = (50, 200, 800, 3200)
    adapters: tuple[str, ...] = ("head", "quic12", "lora8", "full")
    rates: str = "benchmarks/results/compare.json"  # comma-separated compare files; the first with an adapter wins
    search: bool = False  # each size chooses its own rates on its validation split (rates is then not read)
    work: str = "runs/bench-curve"
    QUICK: ClassVar[dict[str, Any]] = CompareSettings.QUICK | dict(sizes=(8, 16), adapters=("head", "quic12"))


def chosen_rates(paths: str, adapters: tuple[str, ...], task: str) -> dict[str, dict[str, Any]]:
    """Per adapter {lr, head_lr, from}: the rates the compare runs in `paths` (comma-separated `bench compare --json`
    files) chose on `task`'s validation split, and where they came from (rate_origin); the first file that holds an
    adapter's rate gives it."""
    files = [Path(p) for p in paths.split(",") if p.strip()]
    found = []
    for path in files:
        try:
            data = json.loads(path.read_text())
            found.append((data.get("adapters", {}), rate_origin(path, data)))
        except (OSError, ValueError, AttributeError) as e:
            raise ValueError(f"rates: {path} is not a readable `bench compare --json` file ({e})") from None
    rates = {}
    for name in adapters:
        rows = [(f[name]["tasks"][task], origin) for f, origin in found if task in f.get(name, {}).get("tasks", {})]
        if not rows:
            raise ValueError(f"rates: {paths} holds no chosen rate for {name} on {task}; run `quic-edge bench compare "
                             f"--adapters head,{name} --tasks {task}` first") from None
        row, origin = rows[0]
        rates[name] = {"lr": row["lr"], "head_lr": row["head_lr"], "from": origin}
    return rates


def rate_origin(path: Path, data: dict[str, Any]) -> str:
    """Where a rates file's rates came from, for the report: a `bench compare` run's validation choice (it carries its
    settings and runs), or a file written by hand (its "note", if it has one, says why)."""
    settings = data.get("settings")
    if isinstance(settings, dict) and "runs" in data:
        return f"chosen on validation by `bench compare` at {settings.get('n_train')} training examples ({path.name})"
    note = data.get("note")
    return f"written by hand in {path.name}, not chosen on validation" + (f" ({note})" if note else "")


def run_curve(s: CurveSettings, progress: bool = True) -> dict[str, Any]:
    """Train every (size, adapter, seed) at the chosen rates; write the report; return it."""
    if len(s.tasks) != 1:
        raise ValueError(f"tasks: the curve is drawn on one task, got {list(s.tasks)}")
    if not s.sizes or min(s.sizes) < 2:
        raise ValueError(f"sizes: give training sizes >= 2, got {list(s.sizes)}")
    unknown = sorted(set(s.adapters) - set(ADAPTERS))
    if unknown:
        raise ValueError(f"adapters: unknown {unknown}; known {list(ADAPTERS)}")
    task, start = s.tasks[0], time.perf_counter()
    rates = None if s.search else chosen_rates(s.rates, s.adapters, task)
    points: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in s.adapters}
    runs: list[dict[str, Any]] = []
    seeds_for = _runs_files_by_size(s)
    for size in s.sizes:
        at = replace(s, n_train=size, work=str(Path(s.work) / f"n{size}"), runs_from=seeds_for[size])
        if s.search:  # the comparison at this size: its own search on its own validation split
            found = compare(at, progress)
            runs += [row | {"n_train": size} for row in found["runs"]]
            for name in s.adapters:
                row = found["adapters"][name]["tasks"][task]
                points[name][size] = row["test"] | {"lr": row["lr"], "head_lr": row["head_lr"]}
            continue
        runner = Runner(at, Path(at.work), progress)
        rows = runner.run([(name, rates[name]["lr"], rates[name]["head_lr"], task, seed) for name in s.adapters
                           for seed in s.seeds])
        runner.close()
        runs += [row | {"n_train": size} for row in rows]
        for name in s.adapters:
            tests = [r["test"] for r in rows if r["adapter"] == name]
            points[name][size] = mean_spread(tests) | {"values": tests}
    summary = {"settings": asdict(s), "task": task, "rates": rates, "points": points, "runs": runs,
               "total_seconds": time.perf_counter() - start,
               "trained": {"runs": len(runs), "seconds": sum(r["train_seconds"] for r in runs)}}
    write_curve(Path(s.out), summary)
    return summary


def _runs_files_by_size(s: CurveSettings) -> dict[int, tuple[str, ...]]:
    """Per training size, the --runs-from files that hold runs made at it; a file that holds none at any size is
    refused (its runs were made with other data settings)."""
    wanted = {size: data_settings(asdict(replace(s, n_train=size))) for size in s.sizes}
    seeds_for: dict[int, tuple[str, ...]] = {size: () for size in s.sizes}
    for path in s.runs_from:
        made_with = read_runs(path, set(ADAPTERS), set(TASKS))
        sizes = [size for size in s.sizes if wanted[size] in made_with]
        if not sizes:
            raise ValueError(f"--runs-from {path}: its runs were made with {' or '.join(made_with)}, none with the "
                             f"data settings of this curve's sizes ({wanted[s.sizes[0]]} at {s.sizes[0]} examples, and "
                             "so on); give the options it was made with, or leave the file out")
        for size in sizes:
            seeds_for[size] += (path,)
    return seeds_for


def _rates(at: dict[str, Any]) -> str:
    return f"{at['lr']:g}" if at.get("head_lr") is None else f"{at['lr']:g}; {at['head_lr']:g}"


def curve_markdown(summary: dict[str, Any]) -> str:
    s, sizes, rates = summary["settings"], summary["settings"]["sizes"], summary["rates"]
    if rates is None:
        how = ("Rates: each size's own, chosen on its validation split by `bench compare`'s search "
               f"(refine {s['refine']}, {s['select_seeds']} selection seed(s), head search {s['head_search'] or 'none'}).")
    else:  # fixed rates: say where each came from (older summaries carry no origin: those were compare files)
        origins = sorted({r.get("from", f"chosen on validation by `bench compare` ({s['rates']})") for r in rates.values()})
        how = f"Rates: the same at every size, {'; '.join(origins)}."
    lines = [f"# Learning curve on {summary['task']}", "",
             f"Test accuracy ({s['n_test']} examples, seeds {list(s['seeds'])}, mean ± sample std) against training "
             f"examples, {s['epochs']} epochs, batch {s['batch_size']} x {s['seq_len']}, ONNX Runtime device loop, "
             f"{s.get('schedule', 'constant')} learning-rate schedule. {how}", ""]
    if "total_seconds" in summary:  # summaries written before the curve timed itself say nothing of it
        lines += [time_text(summary), ""]
    lines += ["| adapter" + (" (rate; head's rate)" if rates else "") + " | " + " | ".join(f"n = {n}" for n in sizes)
              + " |", "|---" * (1 + len(sizes)) + "|"]
    for name, at in summary["points"].items():
        cells = [f"{at[n]['mean']:.3f} ± {at[n]['std']:.3f}" for n in sizes]
        label = ADAPTERS[name].title + (f" ({_rates(rates[name])})" if rates else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if rates is None:
        lines += ["", "Rates chosen at each size (adapter's; head's):", "",
                  "| adapter | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---" * (1 + len(sizes)) + "|"]
        lines += [f"| {ADAPTERS[name].title} | " + " | ".join(_rates(at[n]) for n in sizes) + " |"
                  for name, at in summary["points"].items()]
    return "\n".join(lines) + "\n"


def write_curve(folder: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curve.json").write_text(json.dumps(summary, indent=2))
    (folder / "curve.md").write_text(curve_markdown(summary))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, at in summary["points"].items():
        sizes = sorted(at, key=int)
        ax.errorbar([int(n) for n in sizes], [at[n]["mean"] for n in sizes], yerr=[at[n]["std"] for n in sizes],
                    marker="o", capsize=3, label=ADAPTERS[name].title)
    ax.set_xscale("log")
    every_size = sorted({int(n) for at in summary["points"].values() for n in at})
    ax.set_xticks(every_size, [f"{n:,}" for n in every_size], rotation=45)  # the sizes run, not the log axis's ticks
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="training examples", ylabel="test accuracy", title=f"Learning curve: {summary['task']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(folder / "curve.png", dpi=120)
    plt.close(fig)
