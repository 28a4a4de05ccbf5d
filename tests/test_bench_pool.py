"""The benchmark's worker pool: a killed run leaves no training process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RUN = """
import os, time
from quic_edge.bench.compare import worker_pool
pool = worker_pool(1)
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 600)  # a long training job, busy when its run is killed
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may wait for a reaper that never comes here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_killed_run_s_workers_end_themselves_even_mid_job():
    run = subprocess.Popen([sys.executable, "-c", RUN], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(run.stdout.readline())
        time.sleep(1.0)
        assert _running(worker)
        run.kill()  # SIGKILL: no handler of the run's own can shut its pool down
        run.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(worker), f"worker {worker} outlived its killed run"
    finally:
        run.kill()
        if "worker" in locals() and _running(worker):  # a failed run of this test leaves no 600 s sleeper behind
            os.kill(worker, signal.SIGKILL)
