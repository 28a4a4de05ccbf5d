"""The learning curve (issue 12): test accuracy against training examples per person, head only against the adapters,
on one suite task, through the ONNX Runtime device loop.

    quic-edge bench curve --rates benchmarks/results/compare.json --sizes 50,200,800,3200

Each adapter trains at the rates a `bench compare` run chose for it on that task's validation split (its --json
output, or benchmarks/results/compare.json): a search per size would multiply the cost by the grid, so the rates are
those chosen at the compare run's size, which the report says. Every size is its own leak-free split (the same
validation and test sizes), 3 seeds, the same epochs; each size's runs are kept in `<work>/n<size>/rows.jsonl` (an
interrupted run resumes there). Writes curve.{json,md,png}.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from quic_edge.bench.common import ADAPTERS, mean_spread
from quic_edge.bench.compare import CompareSettings, Runner


@dataclass(frozen=True)
class CurveSettings(CompareSettings):
    sizes: tuple[int, ...] = (50, 200, 800, 3200)
    adapters: tuple[str, ...] = ("head", "quic12", "lora8", "full")
    rates: str = "benchmarks/results/compare.json"  # comma-separated compare files; the first with an adapter wins
    work: str = "runs/bench-curve"
    QUICK: ClassVar[dict[str, Any]] = CompareSettings.QUICK | dict(sizes=(8, 16), adapters=("head", "quic12"))


def chosen_rates(paths: str, adapters: tuple[str, ...], task: str) -> dict[str, tuple[float, float | None]]:
    """(rate, head rate) per adapter as the compare runs in `paths` (comma-separated `bench compare --json` files)
    chose them on `task`'s validation split; the first file that holds an adapter's rate gives it."""
    files = [Path(p) for p in paths.split(",") if p.strip()]
    found = []
    for path in files:
        try:
            found.append(json.loads(path.read_text()).get("adapters", {}))
        except (OSError, ValueError, AttributeError) as e:
            raise ValueError(f"rates: {path} is not a readable `bench compare --json` file ({e})") from None
    rates = {}
    for name in adapters:
        rows = [f[name]["tasks"][task] for f in found if task in f.get(name, {}).get("tasks", {})]
        if not rows:
            raise ValueError(f"rates: {paths} holds no chosen rate for {name} on {task}; run `quic-edge bench compare "
                             f"--adapters head,{name} --tasks {task}` first") from None
        rates[name] = (rows[0]["lr"], rows[0]["head_lr"])
    return rates


def run_curve(s: CurveSettings, progress: bool = True) -> dict[str, Any]:
    """Train every (size, adapter, seed) at the chosen rates; write the report; return it."""
    if len(s.tasks) != 1:
        raise ValueError(f"tasks: the curve is drawn on one task, got {list(s.tasks)}")
    if not s.sizes or min(s.sizes) < 2:
        raise ValueError(f"sizes: give training sizes >= 2, got {list(s.sizes)}")
    unknown = sorted(set(s.adapters) - set(ADAPTERS))
    if unknown:
        raise ValueError(f"adapters: unknown {unknown}; known {list(ADAPTERS)}")
    task = s.tasks[0]
    rates = chosen_rates(s.rates, s.adapters, task)
    points: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in s.adapters}
    for size in s.sizes:
        at = replace(s, n_train=size)
        runner = Runner(at, Path(s.work) / f"n{size}", progress)
        rows = runner.run([(name, *rates[name], task, seed) for name in s.adapters for seed in s.seeds])
        runner.close()
        for name in s.adapters:
            tests = [r["test"] for r in rows if r["adapter"] == name]
            points[name][size] = mean_spread(tests) | {"values": tests}
    summary = {"settings": asdict(s), "task": task, "rates": {n: {"lr": r[0], "head_lr": r[1]} for n, r in rates.items()},
               "points": points}
    write_curve(Path(s.out), summary)
    return summary


def curve_markdown(summary: dict[str, Any]) -> str:
    s, sizes = summary["settings"], summary["settings"]["sizes"]
    lines = [f"# Learning curve on {summary['task']}", "",
             f"Test accuracy ({s['n_test']} examples, seeds {list(s['seeds'])}, mean ± sample std) against training "
             f"examples, {s['epochs']} epochs, batch {s['batch_size']} x {s['seq_len']}, ONNX Runtime device loop, "
             f"{s.get('schedule', 'constant')} learning-rate schedule. Rates: those `bench compare` chose on validation "
             f"({s['rates']}), the same at every size.", "",
             "| adapter (rate; head's rate) | " + " | ".join(f"n = {n}" for n in sizes) + " |",
             "|---" * (1 + len(sizes)) + "|"]
    for name, at in summary["points"].items():
        rate, head_rate = summary["rates"][name]["lr"], summary["rates"][name].get("head_lr")
        rates = f"{rate:g}" if head_rate is None else f"{rate:g}; {head_rate:g}"
        cells = [f"{at[n]['mean']:.3f} ± {at[n]['std']:.3f}" for n in sizes]
        lines.append(f"| {ADAPTERS[name].title} ({rates}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_curve(folder: Path, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curve.json").write_text(json.dumps(summary, indent=2))
    (folder / "curve.md").write_text(curve_markdown(summary))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, at in summary["points"].items():
        sizes = sorted(at, key=int)
        ax.errorbar([int(n) for n in sizes], [at[n]["mean"] for n in sizes], yerr=[at[n]["std"] for n in sizes],
                    marker="o", capsize=3, label=ADAPTERS[name].title)
    ax.set_xscale("log")
    ax.set(xlabel="training examples", ylabel="test accuracy", title=f"Learning curve: {summary['task']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(folder / "curve.png", dpi=120)
    plt.close(fig)
