"""Arguments and entry points shared by `quic-edge bench compare|ablation` and benchmarks/{compare,ablation}.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quic_edge import cli_types
from quic_edge.bench.ablation_rows import ROWS as ABLATION_ROWS


def _names(option: str, text: str | None) -> tuple[str, ...] | None:
    """A comma-separated option's values (None when not given); a value given but empty is refused, never read as the
    default."""
    if text is None:
        return None
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    if not values:
        raise ValueError(f"{option}: give one or more names separated by commas, got {text!r}")
    return values


def _whole_numbers(option: str, text: str | None) -> tuple[int, ...] | None:
    """A comma-separated option of whole numbers (None when not given), refused unless every value is one."""
    if text is None:
        return None
    try:
        return tuple(int(x) for x in _names(option, text) or ())
    except ValueError:
        raise ValueError(f"{option}: give whole numbers separated by commas, got {text!r}") from None


def _common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--quick", action="store_true", help=f"a smoke run of the {what} (about a minute)")
    p.add_argument("--tasks", help="comma-separated suite tasks (default: the suite, quic_edge.suite.SUITE)")
    p.add_argument("--seeds", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, help="epochs per run (default 3)")
    p.add_argument("--schedule", choices=("constant", "linear"), help="learning rate per step: constant (default) or "
                   "linear (warm-up over the first 6 %% of steps, then linear decay to 0)")
    p.add_argument("--n-train", type=int, help="training examples per task and seed (default 1000)")
    p.add_argument("--n-val", type=int, help="validation examples that choose the rates (default 200)")
    p.add_argument("--n-test", type=int, help="test examples per task and seed (default 600)")
    p.add_argument("--out", help="results folder (default benchmarks/results)")
    p.add_argument("--json", metavar="FILE", type=cli_types.output_file, help="also write the summary as JSON to FILE")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace) -> dict:
    found = {"tasks": _names("--tasks", args.tasks), "seeds": _whole_numbers("--seeds", args.seeds),
             "epochs": args.epochs, "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test, "out": args.out,
             "schedule": args.schedule}
    return {k: v for k, v in found.items() if v is not None}


def _training(p: argparse.ArgumentParser, what: str, adapters: str,
              work: str = "runs/bench-compare, which compare and ablation share", search: str = "") -> None:
    """The options of commands that train through compare's Runner; `search` prefixes the search options' help (the
    curve searches only when asked)."""
    _common(p, what)
    p.add_argument("--adapters", help=f"comma-separated adapters ({adapters})")
    p.add_argument("--work", help=f"scratch folder for bundles, work dirs and the finished runs (rows.jsonl) (default "
                   f"{work}); an interrupted run resumes there")
    p.add_argument("--jobs", type=int, help="training processes at once, one runtime thread each (default 2)")
    p.add_argument("--refine", action="store_true", help=f"{search}after each search's 1-3-10 ladder, also try the rates "
                   "halfway between the best and its neighbours (3e-3, 1e-2, 3e-2: 5e-3 and 2e-2); the work folder's "
                   "finished runs are reused")
    p.add_argument("--select-seeds", type=int, metavar="K", help=f"{search}each search chooses on the mean validation "
                   "accuracy of the first K seeds, each rate run on each of them (default 1: the first seed's; sturdier "
                   "against one split's noise, at K times the search's runs); the work folder's finished runs are reused")
    p.add_argument("--head-search", nargs="?", const="beside", choices=("beside", "ladder"),
                   help=f"{search}after an adapter's rate is chosen (its head at head-only's chosen rate), also train its "
                   "head at other head rates and keep the best pair on validation; the work folder's finished runs are "
                   "reused. beside (the default): the rates head-only's search tried just below and above its choice "
                   "(2 x K more runs per adapter and task); ladder: every rate of head-only's 1-3-10 ladder, and where "
                   "another head rate wins, the adapter's rate searched again beside its choice at that head rate (up "
                   "to about 6 x K more)")
    p.add_argument("--runs-from", action="append", metavar="FILE",
                   help="a results file a benchmark wrote (<stem>.json or the <stem>_runs.jsonl beside it, e.g. "
                   "benchmarks/results/compare_linear_refine.json): its finished runs seed the work folder (a curve's: "
                   "each size's folder, with the runs made at that size), so they are reused, not trained again; "
                   "refused unless made with this run's data settings (--n-train or --sizes, --epochs, --schedule, "
                   "...); repeat for several files")


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    _training(p, "comparison", "default quic12,quic123,quic1,lora8,head,full; also quic12-topK and lora8-topK, K = "
              "1..5: on the top K layers only; and the ablation's configurations")


def add_ablation_arguments(p: argparse.ArgumentParser) -> None:
    # from ablation_rows, not quic_edge.bench.ablation: that imports torch, and every command's parser is built at start-up
    names = ",".join(name for _, name in ABLATION_ROWS)
    _training(p, "ablation", f"default every configuration: {names}; head is always needed")


def _training_overrides(args: argparse.Namespace) -> dict:
    overrides = _overrides(args)
    if args.adapters is not None:
        overrides["adapters"] = _names("--adapters", args.adapters)
    if args.work is not None:
        overrides["work"] = args.work
    if args.jobs is not None:
        overrides["jobs"] = args.jobs
    if args.refine:
        overrides["refine"] = True
    if args.select_seeds is not None:
        overrides["select_seeds"] = args.select_seeds
    if args.head_search:
        overrides["head_search"] = args.head_search
    if args.runs_from:
        overrides["runs_from"] = tuple(args.runs_from)
    return overrides


def run_compare_command(args: argparse.Namespace) -> int:
    from quic_edge.bench.compare import CompareSettings, run_compare

    settings = CompareSettings.make(quick=args.quick, **_training_overrides(args))
    return _finish(run_compare(settings, progress=not args.no_progress), args, Path(settings.out) / "compare.md")


def add_curve_arguments(p: argparse.ArgumentParser) -> None:
    _training(p, "learning curve", "default head,quic12,lora8,full", work="runs/bench-curve",
              search="with --search, ")
    p.add_argument("--sizes", help="comma-separated training sizes (default 50,200,800,3200)")
    p.add_argument("--rates", help="`bench compare --json` files (comma-separated) whose chosen rates every size uses; "
                   "the first file holding an adapter's rate gives it (default benchmarks/results/compare.json)")
    p.add_argument("--search", action="store_true", help="instead of --rates, every size chooses its own rates on its "
                   "own validation split with `bench compare`'s search (needs head among the adapters; about twice the "
                   "runs or more)")


def run_curve_command(args: argparse.Namespace) -> int:
    from quic_edge.bench.curve import CurveSettings, run_curve

    overrides = _training_overrides(args)
    if args.sizes is not None:
        overrides["sizes"] = _whole_numbers("--sizes", args.sizes)
    if args.search and args.rates:
        raise ValueError("--search and --rates: a curve either searches each size's rates or takes them from files; "
                         "give one")
    searching = [f"--{k.replace('_', '-')}" for k in ("refine", "select_seeds", "head_search") if k in overrides]
    if searching and not args.search:
        raise ValueError(f"{', '.join(searching)}: these shape each size's search, which only --search runs; add "
                         "--search, or leave them out to use --rates")
    if args.rates:
        overrides["rates"] = args.rates
    if args.search:
        overrides["search"] = True
    settings = CurveSettings.make(quick=args.quick, **overrides)
    return _finish(run_curve(settings, progress=not args.no_progress), args, Path(settings.out) / "curve.md")


def run_ablation_command(args: argparse.Namespace) -> int:
    from quic_edge.bench.ablation import AblationSettings, run_ablation

    settings = AblationSettings.make(quick=args.quick, **_training_overrides(args))
    return _finish(run_ablation(settings, progress=not args.no_progress), args, Path(settings.out) / "ablation.md")


def _finish(summary: dict, args: argparse.Namespace, table: Path) -> int:
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print(table.read_text())
    return 0
