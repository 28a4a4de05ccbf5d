"""The allocator trace (quic_edge.bench.malloc_trace): the replay's arithmetic on a hand-made trace, and the
interposer, compiled here, recording a child's allocations between trace_on and trace_off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from quic_edge.bench.malloc_trace import compile_interposer, replay


def test_the_replay_finds_the_peak_and_what_is_alive_there(tmp_path):
    trace = tmp_path / "trace.txt"
    trace.write_text("\n".join([
        "- 0xold 0",  # released, but allocated before tracing began: not counted
        "+ 0xa 1000", "+ 0xb 300", "- 0xb 0",  # 1000 live
        "+ 0xc 500", "+ 0xd 500",  # peak: 2000 live (a, c, d)
        "- 0xc 0", "- 0xa 0", "+ 0xe 100", "- 0xd 0", "torn line",
    ]) + "\n")
    r = replay(trace)
    assert r["peak_mib"] * 2**20 == 2000
    assert r["events"] == 10 and r["peak_at"] == 5 / 10
    rows = {row["bytes"]: row for row in r["at_peak"]}
    assert set(rows) == {1000, 500} and rows[500]["count"] == 2 and rows[1000]["count"] == 1
    assert rows[1000]["born"] == 1 / 10 and rows[1000]["released"] == 7 / 10
    assert rows[500]["born"] == 4 / 10 and rows[500]["released"] == 9 / 10
    assert r["small_mib"] * 2**20 == 2000


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler")
def test_the_interposer_records_a_child_s_allocations(tmp_path):
    library = compile_interposer(tmp_path)
    trace = tmp_path / "trace.txt"
    code = ("import ctypes, sys\nlib = ctypes.CDLL(sys.argv[1])\nbefore = bytearray(3_000_000)\n"
            "lib.trace_on(sys.argv[2].encode())\nkept = bytearray(5_000_000)\ngone = bytearray(7_000_000)\n"
            "del gone\ndel before\nlib.trace_off()\n")
    subprocess.run([sys.executable, "-c", code, str(library), str(trace)], check=True,
                   env={**os.environ, "LD_PRELOAD": str(library)})
    r = replay(trace)
    sizes = [row["bytes"] for row in r["at_peak"]]
    assert any(5_000_000 <= s < 5_000_100 for s in sizes) and any(7_000_000 <= s < 7_000_100 for s in sizes)
    assert 12.0 < r["peak_mib"] * 2**20 / 1e6 < 12.1  # the 3 MB freed were allocated before the trace: not counted
