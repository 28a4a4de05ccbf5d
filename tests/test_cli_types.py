"""Options several commands share (quic_edge/cli_types.py): a bad --seed or --json is refused while the command line
is parsed, with the option named, before any work; a --json whose folder is missing once failed only after the run."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quic_edge import cli_types
from quic_edge.cli import main

SEEDED = [["demo"], ["parity"], ["fleet", "simulate"], ["train"], ["export"]]
WRITING_JSON = [["demo"], ["parity"], ["fleet", "simulate"], ["bench", "compare"], ["bench", "curve"],
                ["bench", "ablation"], ["bench", "memory"]]


def _refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", SEEDED, ids=" ".join)
@pytest.mark.parametrize("bad", ["-1", "4294967296", "x", "1.5"])
def test_a_bad_seed_is_refused_while_parsing(tmp_path, capsys, command, bad):
    err = _refused([*command, "--seed", bad, "--out", str(tmp_path / "out")], capsys)
    assert "argument --seed: give a whole number from 0 to 4294967295" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", WRITING_JSON, ids=" ".join)
def test_a_json_file_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, command):
    for bad, says in ((str(tmp_path / "missing" / "s.json"), f"the folder {tmp_path / 'missing'} does not exist"),
                      (str(tmp_path), f"{tmp_path} is a folder; name a file"), ("", "name a file to write, got an empty name")):
        err = _refused([*command, "--json", bad], capsys)
        assert f"argument --json: {says}" in err
    assert not (tmp_path / "missing").exists()


@given(st.integers(0, cli_types.MAX_SEED))
def test_every_seed_in_range_is_taken_as_given(value):
    assert cli_types.seed(str(value)) == value


@given(st.integers().filter(lambda v: not 0 <= v <= cli_types.MAX_SEED))
def test_every_seed_out_of_range_is_refused(value):
    with pytest.raises(argparse.ArgumentTypeError, match="from 0 to 4294967295"):
        cli_types.seed(str(value))


def test_a_json_file_in_an_existing_folder_is_taken(tmp_path):
    assert cli_types.output_file(str(tmp_path / "summary.json")) == str(tmp_path / "summary.json")
    assert cli_types.output_file("summary.json") == "summary.json"  # the working folder


@pytest.mark.parametrize(("argv", "says"), [
    (["demo", "--out", ""], "demo out: name a folder for the report"),
    (["fleet", "simulate", "--out", ""], "out: name a folder for the fleet's report"),
    (["fleet", "simulate", "--rounds", "0"], "rounds: must be at least 1, got 0"),
    (["fleet", "simulate", "--cpus", "0"], "cpus: must be at least 1, got 0"),
])
def test_an_empty_out_or_no_rounds_is_refused_before_any_work(tmp_path, monkeypatch, capsys, argv, says):
    """An empty --out once wrote the demo's bundles, work folders and report into the working folder, and --rounds 0
    ran a fleet of no rounds; both are refused, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
