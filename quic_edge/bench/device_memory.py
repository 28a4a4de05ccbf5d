"""Training memory and step time on the device loops, adapter against adapter, in one run (issue 11).

    .venv/bin/python benchmarks/device_memory.py [--rounds 3]   # writes benchmarks/results/device_memory.{json,md}

MiniLM (real weights), batch 8 x sequence 64, AdamW; every adapter of quic_edge.bench.common (head only, LoRA r8 on
query/value, QuIC (1,2), QuIC (1,2,3), full fine-tuning) exported the same way, so the comparison measures adapters,
not export settings: the same int8 base (fp32 for full fine-tuning), the same recompute rewrite of the training graph
(export/ort_graph.py; `--before` adds bundles without it; QuIC's rotation inputs are also recovered from what attention
keeps, export/ort_recover.py), the same session options.
Each measurement is a fresh process (quic_edge.bench.memory: peak RSS after load, first step, steady state, and the
median step); rounds alternate the adapters' order (round r starts at adapter r), and the report gives the median and
the spread (min to max) over rounds, and ratios to LoRA r8 within each round. ONNX Runtime: CPU arena on (its
default) and off, and arena on with ORT's buffer reuse (ORT's default, which the device loop turns off). Beside the
measurements, the attribution of each ONNX Runtime bundle (quic_edge.bench.attribution): what a step keeps from
forward to backward, by kind, from the graph ORT runs. ExecuTorch (QuIC (1,2) and LoRA r8, the same rewrites of its
joint program, export/executorch_graph.py and executorch_recover.py; `--before` adds programs without them): in the same
alternating rounds, its step time and its planned buffers (its Python runtime imports torch, so its process figure is
mostly torch). After the rounds, where the step's time goes: ORT's kernel times by op type for each ONNX Runtime
bundle (quic_edge.bench.op_profile).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quic_edge.bench.common import ADAPTERS, fresh_scratch
from quic_edge.bench.executorch_ops import volume_table
from quic_edge.bench.memory import measure_fresh

BATCH, SEQ, STEPS, LABELS = 8, 64, 20, ["a", "b", "c"]
ORT_ADAPTERS = ("head", "lora8", "quic12", "quic123", "full")
BEFORE_ADAPTERS = ("lora8", "quic12")  # also exported without the recompute rewrite, with --before
ET_ADAPTERS = ("lora8", "quic12")
ET_STEPS = 8  # an ExecuTorch step of MiniLM 8 x 64 takes most of a second
# ORT's CPU arena on (its default) or off; "off-mmap": off, and glibc maps every block of 128 KiB or more on its own
# and unmaps it on free, so the peak follows the live tensors (steps pay for the mapping; quic_edge.bench.memory);
# "on-reuse": arena on with ORT's buffer reuse (ORT's default; the device loop turns it off, runtimes/ort.py)
ARENAS = ("on", "on-reuse", "off", "off-mmap")
MMAP_THRESHOLD = 128 * 1024


def export(adapter: str, runtime: str, folder: Path, recompute: bool = True, batch: int = BATCH,
           seq: int = SEQ) -> dict[str, Any]:
    from quic_edge.export import export_bundle
    from quic_edge.tasks import example_batch

    model = ADAPTERS[adapter].build(len(LABELS), seed=0)
    start = time.perf_counter()
    manifest = export_bundle(runtime, model, example_batch("minilm", batch, seq, len(LABELS)), folder, labels=LABELS,
                             optimizer="adamw", lr=1e-3, recompute=recompute)
    files = {role: (folder / rel).stat().st_size for role, rel in manifest["files"].items()}
    return {"bundle": str(folder), "export_seconds": time.perf_counter() - start, "bundle_bytes": sum(files.values())}


def peak(measured: dict[str, Any]) -> float:
    """The peak RSS of a run: the highest of its phases."""
    return max(measured["peak_rss_mib"].values())


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def cost_cells(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's rounds as table cells: trainable numbers, peak RSS and median step (median, min-max over rounds)."""
    return {"trainable": measured[-1]["trainable_numbers"], "peak_rss_mib": spread([peak(m) for m in measured]),
            "median_step_ms": spread([m["median_step_ms"] for m in measured])}


def ratios_within_rounds(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Peak RSS and median step of one case over another's, taken round by round (the rounds alternate the cases)."""
    pairs = list(zip(mine, theirs, strict=True))
    return {"peak": spread([peak(m) / peak(t) for m, t in pairs]),
            "step": spread([m["median_step_ms"] / t["median_step_ms"] for m, t in pairs])}


def plot_spread(ax: Any, x: list[float], cells: list[dict[str, float]], label: str) -> None:
    """Medians of `spread` cells against x on a matplotlib axis, error bars from min to max."""
    mid = [c["median"] for c in cells]
    ax.errorbar(x, mid, yerr=[[m - c["min"] for m, c in zip(mid, cells, strict=True)],
                              [c["max"] - m for m, c in zip(mid, cells, strict=True)]], marker="o", capsize=3, label=label)


def program_file(bundle: str) -> Path:
    """An ExecuTorch bundle's program, as its manifest names it."""
    from quic_edge.formats.bundle import read_manifest

    return Path(bundle) / read_manifest(bundle)["files"]["program"]


def case_key(runtime: str, adapter: str, recompute: bool, arena: str) -> str:
    """A measured case's name in the results: runtime / adapter / graph / arena (ExecuTorch has no arena: "-")."""
    return f"{runtime}/{adapter}/{'recompute' if recompute else 'no-recompute'}/arena-{arena}"


def reference_lora(adapter: str, names: tuple[str, ...]) -> str:
    """The LoRA a case's ratios are taken against: LoRA r8 on the adapter's own layers where the run has it
    (lora8-vf for quic12-vf), else LoRA r8 on query/value."""
    from quic_edge.bench.compare import same_layers_lora

    spec = ADAPTERS[adapter]
    return (spec.kind == "quic" and same_layers_lora(adapter, dict.fromkeys(names))) or "lora8"


def run(rounds: int, root: Path, before: bool, executorch: bool, progress: bool = True,
        adapters: tuple[str, ...] = ORT_ADAPTERS, arenas: tuple[str, ...] = ARENAS) -> dict[str, Any]:
    """Measure `adapters` on ONNX Runtime (each arena setting of `arenas`) and, with `executorch`, ET_ADAPTERS, or the
    LoRA and QuIC ones among `adapters` where the caller chose them, on ExecuTorch."""
    from quic_edge.bench.attribution import attribute
    from quic_edge.bench.executorch_ops import op_volume
    from quic_edge.bench.op_profile import op_profile

    et_adapters = ET_ADAPTERS if adapters == ORT_ADAPTERS else tuple(
        a for a in adapters if ADAPTERS[a].kind in ("lora", "quic"))
    before_adapters = tuple(a for a in BEFORE_ADAPTERS if a in adapters)
    bundles = {(a, "ort", True): export(a, "ort", root / f"ort-{a}") for a in adapters}
    if before:
        bundles |= {(a, "ort", False): export(a, "ort", root / f"ort-{a}-no-recompute", recompute=False)
                    for a in before_adapters}
    if executorch:
        bundles |= {(a, "executorch", True): export(a, "executorch", root / f"et-{a}") for a in et_adapters}
        if before:
            bundles |= {(a, "executorch", False): export(a, "executorch", root / f"et-{a}-no-recompute",
                                                         recompute=False) for a in et_adapters}
    cases = [(a, "ort", True, arena) for a in adapters for arena in arenas]
    cases += [(a, "ort", False, "on") for a in before_adapters] if before else []
    cases += [(a, rt, rc, "-") for (a, rt, rc) in bundles if rt == "executorch"]
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(rounds):
        order = cases[r % len(cases):] + cases[: r % len(cases)]
        for adapter, runtime, recompute, arena in order:
            key = case_key(runtime, adapter, recompute, arena)
            bundle = bundles[adapter, runtime, recompute]["bundle"]
            measured = measure_fresh(bundle, root / "work" / key.replace("/", "-"),
                                     STEPS if runtime == "ort" else ET_STEPS, cpu_arena=not arena.startswith("off"),
                                     mem_reuse=arena == "on-reuse",
                                     mmap_threshold=MMAP_THRESHOLD if arena == "off-mmap" else None)
            runs.setdefault(key, []).append(measured)
            if progress:
                print(f"round {r}: {key}: peak {peak(measured):.1f} MiB, {measured['median_step_ms']:.0f} ms", flush=True)
    summary = {key: {**cost_cells(ms), "phases_last_round": ms[-1]["peak_rss_mib"],
                     "load_rss_mib": spread([m["peak_rss_mib"]["load"] for m in ms]),
                     "runtime_rss_mib": spread([m["runtime_rss_mib"] for m in ms]),
                     "planned_mib": ms[-1]["runtime_memory"].get("planned_total_mib")} for key, ms in runs.items()}
    ratios = {}
    for adapter, runtime, recompute, arena in cases:
        reference = reference_lora(adapter, adapters)
        key, lora = case_key(runtime, adapter, recompute, arena), case_key(runtime, reference, recompute, arena)
        if lora in runs:
            mine, theirs = runs[key], runs[lora]
            ratios[key] = {
                "against": reference, **ratios_within_rounds(mine, theirs),
                "planned": (None if mine[-1]["runtime_memory"].get("planned_total_mib") is None else
                            mine[-1]["runtime_memory"]["planned_total_mib"]
                            / theirs[-1]["runtime_memory"]["planned_total_mib"])}
    attribution = {f"{a}/{'recompute' if rc else 'no-recompute'}": attribute(b["bundle"])
                   for (a, rt, rc), b in bundles.items() if rt == "ort"}
    profiles = {a: op_profile(bundles[a, "ort", True]["bundle"], root / "work" / f"profile-{a}")
                for a in adapters if a != "full"}  # full fine-tuning's kernels are the base's, no adapter to read
    volumes = {f"{a}/{'recompute' if rc else 'no-recompute'}": op_volume(program_file(b["bundle"]))
               for (a, rt, rc), b in bundles.items() if rt == "executorch"}
    return {"settings": {"model": "minilm", "batch": BATCH, "seq_len": SEQ, "steps": STEPS, "rounds": rounds,
                         "optimizer": "adamw", "adapters": list(adapters), "arenas": list(arenas)},
            "exports": {f"{a}/{rt}/{rc}": b for (a, rt, rc), b in bundles.items()}, "summary": summary,
            "ratios_to_lora8": ratios, "attribution": attribution, "op_profiles": profiles, "executorch_ops": volumes}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Rounds: {results['settings']['rounds']} (fresh process each; median, min-max).", "",
             "Ratios are taken within rounds against LoRA r8 on the adapter's own layers where the run has it (QuIC "
             "value / FF output against LoRA on value / FF output), else against LoRA r8 on query/value.", "",
             "| runtime / adapter / graph / arena | trainable | peak RSS MiB | peak / LoRA r8 | median step ms | "
             "step / LoRA r8 | planned buffers MiB (/ LoRA r8) |", "|---|---|---|---|---|---|---|"]
    for key, s in results["summary"].items():
        runtime, adapter, graph, arena = key.split("/")
        ratio = results["ratios_to_lora8"].get(key)
        p, t = s["peak_rss_mib"], s["median_step_ms"]
        planned = "-" if s["planned_mib"] is None else f"{s['planned_mib']:.1f}"
        if ratio is not None and ratio.get("planned") is not None:
            planned += f" ({ratio['planned']:.3f})"
        peak_ratio = "-" if ratio is None else range_text(ratio["peak"], ".3f")
        step_ratio = "-" if ratio is None else range_text(ratio["step"], ".2f")
        against = (ratio or {}).get("against", "lora8")
        if against != "lora8":  # a case measured against LoRA on its own layers says which
            peak_ratio, step_ratio = f"{peak_ratio} vs {against}", f"{step_ratio} vs {against}"
        lines.append(f"| {key} | {s['trainable']:,} | {range_text(p, '.1f')} | {peak_ratio} | {range_text(t, '.0f')} | "
                     f"{step_ratio} | {planned} |")
    kinds = sorted({k for a in results["attribution"].values() for k in a["stashed"]})
    lines += ["", "Kept from forward to backward (MiB, from the graph ONNX Runtime runs):", "",
              "| bundle | " + " | ".join(kinds) + " | total | peak of live tensors |",
              "|---|" + "---|" * (len(kinds) + 2)]
    for name, a in results["attribution"].items():
        cells = [f"{a['stashed'].get(k, {}).get('mib', 0.0):.1f}" for k in kinds]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {a['stashed_mib']:.1f} | {a['peak_live_mib']:.1f} |")
    return "\n".join(lines + floor_table(results) + profile_table(results.get("op_profiles", {}))
                     + volume_table(results.get("executorch_ops", {}))) + "\n"


def floor_rows(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per ONNX Runtime bundle as the device loop runs it (arena on, buffer reuse off): its measured peak, the floor a
    step cannot go below, and every MiB between them (medians over rounds, MiB).

    floor = the runtime alone (measured) + the frozen base as stored + one layer's activations (head only's peak of
    live tensors: a forward pass that keeps nothing) + the trainable state (parameters, gradients, AdamW's moments).
    peak - floor = the session beyond the base and state at load (graphs, kernels' own buffers) + the step's live
    tensors beyond one layer's (the graph replay) + the rest (the allocator's slack, what the replay misses)."""
    attribution, rows = results["attribution"], {}
    head = attribution.get("head/recompute")
    if head is None or "frozen_base_mib" not in head:  # runs before the floor was measured
        return rows
    for key, s in results["summary"].items():
        runtime, adapter, graph, arena = key.split("/")
        a = attribution.get(f"{adapter}/{graph}")
        if runtime != "ort" or arena != "arena-on" or a is None or "runtime_rss_mib" not in s:
            continue
        alone, load, peak_mib = (s[k]["median"] for k in ("runtime_rss_mib", "load_rss_mib", "peak_rss_mib"))
        resident = a["resident"]
        state = 2 * resident["trainable_mib"] + resident["optimizer_moments_mib"]
        floor = alone + a["frozen_base_mib"] + head["peak_live_mib"] + state
        rows[f"{adapter}/{graph}"] = {
            "runtime": alone, "frozen_base": a["frozen_base_mib"], "one_layer": head["peak_live_mib"], "state": state,
            "floor": floor, "peak": peak_mib, "above": peak_mib - floor,
            "session": load - alone - a["frozen_base_mib"] - state,
            "live_beyond": a["peak_live_mib"] - head["peak_live_mib"], "rest": peak_mib - load - a["peak_live_mib"]}
    return rows


def floor_table(results: dict[str, Any]) -> list[str]:
    rows = floor_rows(results)
    if not rows:
        return []
    lines = ["", "The floor a step cannot go below, and every MiB above it (ONNX Runtime, arena on, buffer reuse off; "
             "medians over rounds, MiB). Floor = the runtime alone (its libraries loaded in a fresh process, no bundle) "
             "+ the frozen base as stored + one layer's activations (head only's peak of live tensors: a forward pass "
             "that keeps nothing) + the trainable state (parameters, gradients, AdamW's two moments). Above it: the "
             "session beyond base and state at load (the load phase's peak, so it includes what loading made and freed), "
             "the step's live tensors beyond one layer's (graph replay), and the rest (peak - load - live tensors: the "
             "allocator's slack and what the replay misses; negative where the step reused what loading freed).", "",
             "| bundle | runtime alone | frozen base | one layer's activations | trainable state | floor | peak RSS | "
             "above the floor | session at load | live tensors beyond one layer's | rest |",
             "|---|" + "---|" * 10]
    for name, r in rows.items():
        cells = [r[k] for k in ("runtime", "frozen_base", "one_layer", "state", "floor", "peak", "above", "session",
                                "live_beyond", "rest")]
        lines.append(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    return lines


def profile_table(profiles: dict[str, Any], per_bundle: int = 8) -> list[str]:
    """Kernel ms per step by op type (nodes in brackets), the ops that are among any bundle's `per_bundle` slowest."""
    if not profiles:
        return []
    ops = list(dict.fromkeys(op for p in profiles.values() for op in list(p["by_op"])[:per_bundle]))
    lines = ["", "Kernel time per step by op type (ms, nodes in brackets; ORT's profiler, 10 steps after 3; it slows "
             "every kernel a little, so read shares, not step times):", "",
             "| op | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
    for op in [*ops, "all other ops"]:
        cells = []
        for p in profiles.values():
            if op == "all other ops":
                ms, nodes = sum(v["ms"] for k, v in p["by_op"].items() if k not in ops), sum(
                    v["nodes"] for k, v in p["by_op"].items() if k not in ops)
            else:
                ms, nodes = p["by_op"].get(op, {}).get("ms", 0.0), p["by_op"].get(op, {}).get("nodes", 0)
            cells.append(f"{ms:.1f} ({nodes})")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{p['kernel_ms_per_step']:.1f}" for p in profiles.values()) + " |")
    return lines


def range_text(s: dict[str, float], spec: str) -> str:
    return f"{s['median']:{spec}} ({s['min']:{spec}}-{s['max']:{spec}})"


def measure_alternating(names: list[str], rounds: int, root: Path, progress: bool = True,
                        runtime: str = "ort") -> dict[str, list[dict]]:
    """Each adapter's bundle for `runtime` measured as `device_memory` measures it (recompute rewrite, ONNX Runtime's CPU
    arena on), in a fresh process per round, the rounds in rotated order: adapter -> one measurement per round."""
    bundles = {a: export(a, runtime, root / f"{runtime}-{a}") for a in names}
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for adapter in order:
            measured = measure_fresh(bundles[adapter]["bundle"], root / "work" / f"{runtime}-{adapter}",
                                     STEPS if runtime == "ort" else ET_STEPS, cpu_arena=True)
            runs.setdefault(adapter, []).append(measured)
            if progress:
                print(f"round {r}: {runtime} {adapter}: peak {peak(measured):.1f} MiB, "
                      f"{measured['median_step_ms']:.0f} ms", flush=True)
    return runs


def merge_accuracy(cell: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> None:
    """Put a compare or ablation summary's per-task test accuracy (mean, std, n over seeds; the rate chosen on
    validation; the share of LoRA's gain where the summary has it) into a cost table's cell. Tasks add up over
    summaries; a later summary's figures win on the same task."""
    cell.setdefault("accuracy", {}).update(
        {task: {"mean": t["test"]["mean"], "std": t["test"]["std"], "n": t["test"]["n"], "lr": t["lr"],
                "share": t.get("share_of_lora_gain")} for task, t in tasks.items()})


def read_json(parser: argparse.ArgumentParser, path: str | Path) -> Any:
    """The JSON in `path`, or the parser's error (exit 2) naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        parser.error(f"{path}: not a JSON results file ({error})")


def checked(parser: argparse.ArgumentParser, path: str | Path, use: Callable[[], Any], kind: str) -> Any:
    """`use()`, or the parser's error naming `path` as not `kind` where the file's content does not fit."""
    try:
        return use()
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as error:
        parser.error(f"{path}: not {kind} ({type(error).__name__}: {error})")


def results_file(parser: argparse.ArgumentParser, path: Path, markdown: Callable[[dict[str, Any]], str]) -> Any:
    """A cost benchmark's own results file read back (--from-results), checked by rendering its table."""
    if not path.is_file():
        parser.error(f"no such file: {path} (--from-results reads {path.name} from --out)")
    results = read_json(parser, path)
    checked(parser, path, lambda: markdown(results), f"a {path.stem} results file this benchmark wrote")
    return results


def cost_command(doc: str, stem: str, work: str, run: Callable[[int, Path], dict[str, Any]],
                 markdown: Callable[[dict[str, Any]], str], plot: Callable[[dict[str, Any], Path], None],
                 add_accuracy: Callable[[dict[str, Any], list[dict[str, Any]]], None], accuracy_help: str) -> None:
    """The command line of a cost benchmark that measures bundles (`run(rounds, work folder)`) and puts accuracy from
    other runs' JSONs beside them: writes {stem}.{json,md,png} to --out; --from-results only redoes table and plot."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--work", default=work, help="scratch folder for bundles")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process rounds per case (default 3)")
    parser.add_argument("--accuracy", nargs="+", help=accuracy_help)
    parser.add_argument("--from-results", action="store_true",
                        help=f"do not measure: read {stem}.json from --out and only add --accuracy, table and plot")
    args = parser.parse_args()
    out = Path(args.out)
    missing = [p for p in [*(args.accuracy or []), *([out / f"{stem}.json"] if args.from_results else [])]
               if not Path(p).is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(map(str, missing))} (--from-results reads {stem}.json from --out; "
                     "--accuracy takes result JSONs)")

    accuracies = [(p, read_json(parser, p)) for p in args.accuracy or []]
    if args.from_results:
        results = results_file(parser, out / f"{stem}.json", markdown)
    else:
        root = fresh_scratch(args.work)
        results = run(args.rounds, root)
        out.mkdir(parents=True, exist_ok=True)  # the measurements first: a bad --accuracy file must not lose them
        (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    for path, accuracy in accuracies:  # one file at a time, so an error names it; a later file's figures win
        checked(parser, path, lambda accuracy=accuracy: (add_accuracy(results, [accuracy]), markdown(results)),
                f"a results file --accuracy takes ({accuracy_help}); the measurements are in {out / stem}.json, "
                "add the right file with --from-results")
    table = markdown(results)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    (out / f"{stem}.md").write_text(table)
    plot(results, out / f"{stem}.png")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--work", default="runs/bench-device", help="scratch folder for bundles and checkpoints")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process rounds per case (default 3)")
    parser.add_argument("--before", action="store_true", help="also measure LoRA and QuIC without the recompute rewrite")
    parser.add_argument("--no-executorch", action="store_true", help="skip the ExecuTorch planned-buffer figures")
    parser.add_argument("--adapters", default=",".join(ORT_ADAPTERS),
                        help=f"comma-separated adapters of `quic-edge bench compare` to measure (default "
                        f"{','.join(ORT_ADAPTERS)}; ExecuTorch then measures {','.join(ET_ADAPTERS)}, else the LoRA "
                        "and QuIC ones given); must include lora8, the reference of the ratios")
    parser.add_argument("--arenas", default=",".join(ARENAS),
                        help=f"comma-separated ONNX Runtime allocator settings (default {','.join(ARENAS)})")
    parser.add_argument("--name", default="device_memory", help="results file stem in --out (default device_memory)")
    parser.add_argument("--from-results", action="store_true",
                        help="do not measure: read <name>.json from --out and only write its table again")
    args = parser.parse_args()
    adapters, arenas = tuple(args.adapters.split(",")), tuple(args.arenas.split(","))
    unknown = [a for a in adapters if a not in ADAPTERS]
    if unknown or "lora8" not in adapters:
        parser.error(f"--adapters: {'unknown ' + ', '.join(unknown) if unknown else 'lora8 is missing'}; give "
                     f"lora8 and any of {', '.join(ADAPTERS)}")
    if set(arenas) - set(ARENAS):
        parser.error(f"--arenas: unknown {', '.join(sorted(set(arenas) - set(ARENAS)))}; choose from {', '.join(ARENAS)}")
    if not args.name.replace("_", "").replace("-", "").isalnum():
        parser.error(f"--name: {args.name!r} is not a file stem (letters, digits, _ and - only)")
    out = Path(args.out)
    if args.from_results:
        results = results_file(parser, out / f"{args.name}.json", markdown)
    else:
        root = fresh_scratch(args.work)
        results = run(args.rounds, root, args.before, not args.no_executorch, adapters=adapters, arenas=arenas)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.name}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (out / f"{args.name}.md").write_text(table)
    print(table)
