"""A device process killed with SIGKILL at any moment, checkpoint writes included: the previous checkpoint
always loads, training resumes from it, and the result equals uninterrupted training."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from quic_edge.export import export_bundle
from quic_edge.runtimes import open_loop
from quic_edge.runtimes.parity import NUM_LABELS, parity_model
from quic_edge.tasks import example_batch

# The child trains and checkpoints after every step, as fast as it can, until it is killed. Its batches depend
# only on the step, so the parameters at step s are the same however often the process died on the way.
BATCH = textwrap.dedent("""
    import numpy as np

    def batch(step):
        rng = np.random.default_rng(step)
        return {"features": rng.standard_normal((8, 64)).astype(np.float32),
                "labels": rng.integers(0, 3, size=(8,), dtype=np.int64)}
""")
CHILD = BATCH + textwrap.dedent("""
    import sys
    from quic_edge.runtimes import open_loop
    loop = open_loop(sys.argv[1], sys.argv[2])
    print("resumed", loop.step, flush=True)
    while loop.step < int(sys.argv[3]):
        loop.train_step(batch(loop.step))
        loop.save_checkpoint()
        print("saved", loop.step, flush=True)
""")
STEPS = 100_000
DELAYS = {"ort": (0.02, 0.4), "executorch": (0.5, 2.0)}  # seconds of training before the kill
MIN_TORN, MAX_KILLS_FACTOR = 3, 6  # ORT: kills that must land inside a checkpoint write; the cap on kills, x the minimum
namespace: dict = {}
exec(BATCH, namespace)  # the same batches in this process
batch = namespace["batch"]


def _run_and_kill(bundle, work, delay: float) -> tuple[int, int]:
    """(step resumed at, last step reported saved) of one child killed after `delay` seconds of training."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(bundle), str(work), str(STEPS)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    resumed = int(child.stdout.readline().split()[1])
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    # the kill can tear the last line ("saved" without its number): read only whole "saved N" lines
    saved = [int(words[1]) for words in (line.split() for line in out.splitlines())
             if len(words) == 2 and words[0] == "saved" and words[1].isdigit()]
    return resumed, (saved[-1] if saved else resumed)


@pytest.mark.parametrize(("runtime", "kills"), [
    ("ort", 12), pytest.param("ort", 60, marks=pytest.mark.slow),
    # ExecuTorch: each child imports torch and loads the program (~5 s), so its kills run in the slow set
    pytest.param("executorch", 8, marks=pytest.mark.slow),
])
def test_sigkill_while_checkpointing_always_leaves_a_loadable_checkpoint(tmp_path, runtime, kills):
    bundle = tmp_path / "bundle"
    export_bundle(runtime, parity_model("mlp"), example_batch("mlp", 8, 1, NUM_LABELS), bundle, labels=["a", "b", "c"],
                  optimizer="adamw", lr=1e-2)
    work = tmp_path / "work"
    rng = random.Random(0)
    last_saved, torn, done = 0, 0, 0
    # ExecuTorch's steps dwarf its checkpoint writes: its kills rarely land inside one, so only ORT must show torn writes
    wanted_torn = MIN_TORN if runtime == "ort" else 0
    # at least `kills` kills, and more (up to MAX_KILLS_FACTOR x) until enough of them landed inside a checkpoint write:
    # where a kill lands is chance (the share of time spent writing varies with the machine's disk and load)
    while done < kills or (torn < wanted_torn and done < MAX_KILLS_FACTOR * kills):
        # ExecuTorch's first step in a fresh process takes longer (program load, first run): kill later
        resumed, last_saved_now = _run_and_kill(bundle, work, rng.uniform(*DELAYS[runtime]))
        done += 1
        assert resumed >= last_saved  # the newest complete checkpoint (or a newer one) was loaded
        last_saved = last_saved_now
        torn += any(p.name.startswith((".tmp-", ".trash-")) for p in (work / "checkpoints").iterdir())
        assert not any(p.name.startswith("ckpt-") and not (p / "state.json").exists()
                       for p in (work / "checkpoints").iterdir())  # no torn folder ever carries a checkpoint name
    assert torn >= wanted_torn, f"only {torn} of {done} kills landed inside a checkpoint write"
    loop = open_loop(bundle, work)
    assert loop.step >= last_saved > 0
    reference = open_loop(bundle, tmp_path / "reference")
    for step in range(loop.step):
        reference.train_step(batch(step))
    for name, value in reference.parameters().items():
        np.testing.assert_allclose(loop.parameters()[name], value, rtol=0, atol=1e-6)
