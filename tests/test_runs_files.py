"""`bench compare --runs-from`: a committed results file reproduces its table without training, and a file made with
other settings, or changed since, is refused before anything is recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quic_edge.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
LADDER = RESULTS / "compare_select5_ladder_word_order"  # 145 runs in the summary, its 30 new ones beside it
ARGS = ["bench", "compare", "--schedule", "linear", "--refine", "--select-seeds", "5", "--head-search", "ladder",
        "--tasks", "bbc-word-order", "--adapters", "head,lora8,quic12", "--seeds", "0,1,2,3,4", "--no-progress"]


def _compare(tmp_path: Path, *extra: str) -> int:
    return main([*ARGS, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), *extra])


@pytest.mark.parametrize("named", [".json", "_runs.jsonl"])
def test_a_committed_results_file_reproduces_its_table_without_training(tmp_path, named):
    assert _compare(tmp_path, "--runs-from", str(LADDER) + named) == 0
    got = json.loads((tmp_path / "out" / "compare.json").read_text())
    want = json.loads(LADDER.with_suffix(".json").read_text())
    assert not (tmp_path / "work" / "bundles").exists()  # nothing was exported, so nothing trained
    for name in ("head", "lora8", "quic12"):
        assert got["adapters"][name] == want["adapters"][name]
    assert got["gain_captured"] == want["gain_captured"]
    table = (tmp_path / "out" / "compare.md").read_text().splitlines()
    assert table[:-1] == LADDER.with_suffix(".md").read_text().splitlines()[:-1]  # all but the wall time
    rows = (tmp_path / "work" / "rows.jsonl").read_text().splitlines()
    assert len(rows) == len({json.dumps([r[k] for k in ("adapter", "lr", "head_lr", "task", "seed")])
                             for r in map(json.loads, rows)}) == 145


def test_a_file_made_with_other_data_settings_is_refused(tmp_path, capsys):
    assert _compare(tmp_path, "--n-train", "500", "--runs-from", str(LADDER) + ".json") == 2
    err = capsys.readouterr().err
    assert "its runs were made with" in err and '"n_train": 1000' in err and '"n_train": 500' in err
    assert "Traceback" not in err


def _copy(tmp_path: Path, stem: str, change=None) -> Path:
    """The ladder pair copied under another stem, with `change(summary)` applied to its summary."""
    summary = json.loads(LADDER.with_suffix(".json").read_text())
    if change:
        change(summary)
    (tmp_path / f"{stem}.json").write_text(json.dumps(summary))
    shutil.copy(str(LADDER) + "_runs.jsonl", tmp_path / f"{stem}_runs.jsonl")
    return tmp_path / f"{stem}.json"


@pytest.mark.parametrize(("field", "value", "says"), [
    ("val", 1.5, "val accuracy 1.5 is not a number between 0 and 1"),
    ("lr", -0.01, "lr -0.01 is not a positive learning rate"),
    ("adapter", "lora9000", "adapter 'lora9000' is not one this toolkit knows"),
    ("seed", "0", "seed '0' is not a whole number >= 0"),
    ("steps", None, "steps None is not a whole number >= 0"),
    ("steps", 374, "it took 374 steps, where 1000 examples x 3 epochs in batches of 8 take 375"),
    ("n_train", 200, "n_train 200 is not the summary's 1000"),
])
def test_a_changed_run_is_refused_and_nothing_is_recorded(tmp_path, capsys, field, value, says):
    good = _copy(tmp_path, "good")
    bad = _copy(tmp_path, "bad", lambda summary: summary["runs"][7].update({field: value}))
    assert _compare(tmp_path, "--runs-from", str(good), "--runs-from", str(bad)) == 2
    err = capsys.readouterr().err
    assert f"--runs-from bad.json, run 8: {says}" in err and "Traceback" not in err
    rows = tmp_path / "work" / "rows.jsonl"
    assert not rows.exists() or not rows.read_text()  # the good file's runs were not recorded either


def test_a_torn_runs_file_and_a_lone_runs_file_are_refused(tmp_path, capsys):
    torn = _copy(tmp_path, "torn")
    with open(tmp_path / "torn_runs.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"adapter": "quic12", "lr": 0.0\n')
    assert _compare(tmp_path, "--runs-from", str(torn)) == 2
    assert "torn_runs.jsonl, line 31: not JSON" in capsys.readouterr().err
    lone = tmp_path / "lone_runs.jsonl"
    shutil.copy(str(LADDER) + "_runs.jsonl", lone)
    assert _compare(tmp_path, "--runs-from", str(lone)) == 2
    assert "no summary lone.json beside it" in capsys.readouterr().err


def test_the_folder_s_own_runs_win_over_a_file_s(tmp_path):
    """A run the folder finished is kept as it is; the file adds only the runs the folder lacks."""
    work = tmp_path / "work"
    work.mkdir()
    summary = json.loads(LADDER.with_suffix(".json").read_text())
    settings = {k: summary["settings"][k] for k in ("n_train", "n_val", "n_test", "epochs", "batch_size", "seq_len",
                                                    "quick", "schedule")}
    (work / "settings.json").write_text(json.dumps(settings, sort_keys=True))
    (work / ".quic-edge-scratch").write_text("")
    own = dict(summary["runs"][0], test=0.123)
    (work / "rows.jsonl").write_text(json.dumps(own) + "\n")
    assert _compare(tmp_path, "--runs-from", str(LADDER) + ".json") == 0
    rows = [json.loads(line) for line in (work / "rows.jsonl").read_text().splitlines()]
    assert rows[0] == own and len(rows) == 145
    assert sum(r["test"] == 0.123 for r in rows) == 1


GOOD_ROW = json.loads((Path(str(LADDER) + "_runs.jsonl")).read_text().splitlines()[0])
CHECKED = ("adapter", "task", "seed", "lr", "val", "test", "steps", "trainable", "adapter_numbers", "delta_bytes",
           "train_seconds", "first_loss", "last_loss")
WRONG = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                  st.sampled_from([-1, -0.5, float("inf"), float("-inf"), 1e9]))


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(CHECKED), value=WRONG)
def test_any_checked_field_of_a_run_set_to_a_wrong_value_is_named(field, value):
    from quic_edge.bench.common import ADAPTERS
    from quic_edge.bench.runs_files import row_problem
    from quic_edge.suite import TASKS

    assert row_problem(GOOD_ROW, set(ADAPTERS), set(TASKS)) == ""
    row = dict(GOOD_ROW, **{field: value})
    numbers = (-1, -0.5, float("inf"), float("-inf"), 1e9)
    allowed = {  # values a field may really hold: a large rate or time, any loss (a diverged run's is infinite)
        "lr": (1e9,), "train_seconds": (1e9,), "first_loss": numbers, "last_loss": numbers,
    }
    if any(value is v or (type(value) is type(v) and value == v) for v in allowed.get(field, ())):
        return
    problem = row_problem(row, set(ADAPTERS), set(TASKS))
    assert field.split("_")[0] in problem, (field, value, problem)


CURVE = RESULTS / "curve_search_small"  # a curve at 50 and 200 examples; its runs predate runs naming their size
CURVE_ARGS = ["bench", "curve", "--search", "--refine", "--tasks", "bbc-word-order", "--sizes", "50,200", "--schedule",
              "linear", "--seeds", "0,1,2", "--no-progress"]


def test_a_committed_curve_reproduces_its_table_without_training(tmp_path):
    """Each run goes to the folder of the size it was made at (told by its step count: 18 steps at 50, 75 at 200)."""
    work = tmp_path / "work"
    assert main([*CURVE_ARGS, "--work", str(work), "--out", str(tmp_path / "out"), "--runs-from",
                 str(CURVE) + ".json"]) == 0
    assert not any(work.glob("n*/bundles"))  # nothing was exported, so nothing trained
    table = (tmp_path / "out" / "curve.md").read_text().splitlines()
    want = CURVE.with_suffix(".md").read_text().splitlines()
    assert [line for line in table if "Total time" not in line] == [line for line in want if "Total time" not in line]
    steps = {size: {json.loads(line)["steps"] for line in (work / f"n{size}" / "rows.jsonl").read_text().splitlines()}
             for size in (50, 200)}
    assert steps == {50: {18}, 200: {75}}


def test_a_curve_s_runs_never_seed_a_run_at_another_size(tmp_path, capsys):
    """The curve's summary says 1,000 training examples (the comparison's default it inherits), its runs were made at
    50 and 200: a comparison at 1,000 is refused, one at 200 takes the 200-example runs only; a run whose steps match
    none of the curve's sizes is refused."""
    args = ["bench", "compare", "--schedule", "linear", "--refine", "--tasks", "bbc-word-order", "--adapters", "head", "--seeds",
            "0,1,2", "--no-progress", "--out", str(tmp_path / "out"), "--runs-from", str(CURVE) + ".json"]
    assert main([*args, "--work", str(tmp_path / "w1000")]) == 2
    err = capsys.readouterr().err
    assert '"n_train": 50' in err and '"n_train": 200' in err and '"n_train": 1000' in err and "Traceback" not in err
    assert main([*args, "--n-train", "200", "--work", str(tmp_path / "w200")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "w200" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 31 and {r["steps"] for r in rows} == {75}
    summary = json.loads(CURVE.with_suffix(".json").read_text())
    summary["runs"][3]["steps"] = 30
    (tmp_path / "odd.json").write_text(json.dumps(summary))
    assert main([*CURVE_ARGS, "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--runs-from",
                 str(tmp_path / "odd.json")]) == 2
    assert ("odd.json, run 4: its 30 steps match no single training size of the curve's [50, 200], and it names "
            "none (n_train)") in capsys.readouterr().err


SUMMARY_FIELDS = ("batch_size", "epochs", "sizes", "n_train")


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(SUMMARY_FIELDS), value=WRONG | st.sampled_from([0, [50, "200"], [50, 200], {"a": 1}]))
def test_a_summary_s_settings_set_to_wrong_values_are_named_never_a_crash(tmp_path_factory, field, value):
    """A curve's summary with one of the settings a run's size and step count are read from changed: read back, or
    refused with a ValueError that names the file and the run, never another exception."""
    from quic_edge.bench.common import ADAPTERS
    from quic_edge.bench.runs_files import read_runs
    from quic_edge.suite import TASKS

    summary = json.loads(CURVE.with_suffix(".json").read_text())
    summary["settings"][field] = value
    path = tmp_path_factory.mktemp("summary") / "changed.json"
    path.write_text(json.dumps(summary))
    try:
        found = read_runs(path, set(ADAPTERS), set(TASKS))
    except ValueError as error:
        assert str(error).startswith(f"--runs-from {path}, run ") or "changed.json" in str(error), error
        return
    # read back: only a change that leaves every run's size and steps consistent (sizes still [50, 200], say)
    assert sum(map(len, found.values())) == len(summary["runs"])
    assert all(json.loads(k)["n_train"] in (50, 200) for k in found)
