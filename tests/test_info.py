"""`quic-edge info`: counts against the formula and against the real PEFT library."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from quic_edge import QuICConfig
from quic_edge.cli import main
from quic_edge.counts import count


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quic_edge.cli", *args], capture_output=True, text=True, timeout=300)


def test_info_json_for_the_default_config():
    result = run_cli("info", "--model", "minilm", "--blocks", "3", "--orders", "1,2", "--targets", "query,value",
                     "--compare-lora", "8", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    for key in ("trainable_angles", "lora_params", "lora_params_all_linear", "base_params", "layers"):
        assert key in info
    assert info["trainable_angles"] == 12 * 3 * (15 * 14 // 2)  # n = 15: 15 + 105 <= 128 < 16 + 120
    assert info["lora_params"] == 12 * 8 * (384 + 384)
    assert info["lora_params_all_linear"] == 6 * 8 * (4 * (384 + 384) + 2 * (384 + 1536))
    assert info["base_params"] == 22_565_376  # MiniLM-L6 without its pooler, no head
    assert [row["n"] for row in info["layers"]] == [15] * 12 and info["layers"][0]["padding"] == 8
    assert info["lora_params"] / info["trainable_angles"] >= 18  # issue 6 target for orders (1, 2)


def test_info_table_and_help(capsys):  # in this process: the command's code is the same, the interpreter start is not
    assert main(["info", "--compare-lora", "8", "--depth", "5"]) == 0
    out = capsys.readouterr().out
    assert "trainable angles" in out and "LoRA rank 8" in out
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    assert "compare-lora" in capsys.readouterr().out


@pytest.mark.parametrize("args", [("--orders", "1,x"), ("--orders", "7"), ("--blocks", "0"), ("--targets", "nope")])
def test_info_bad_input_is_one_clear_line(args, capsys):
    try:
        code = main(["info", *args])
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(("quic-edge info: error:", "usage: quic-edge info")) and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


def test_lora_count_matches_peft(minilm_base):
    from peft import LoraConfig, inject_adapter_in_model

    model = copy.deepcopy(minilm_base[0])
    info = count(model, QuICConfig(), lora_rank=8)
    inject_adapter_in_model(LoraConfig(r=8, target_modules=["query", "value"]), model)
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert lora == info["lora_params"]
