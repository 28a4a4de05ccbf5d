"""Models as `transformers` gives them: the task from the class, inputs passed by name, the logits taken out of a
ModelOutput, and an attention implementation the device runtimes can differentiate.

    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
    apply_quic(model, QuICConfig(target_modules="all-linear"))   # switches SDPA to eager attention, with a notice
    export_bundle("ort", model, example_batch(model, 8, 64), "bundle/", labels=["a", "b", "c"])

Everything that calls a model (the loss wrapper the exporters trace, eager fit/predict, the export's checks) goes
through `call`, so a plain module returning logits and a `transformers` model returning a ModelOutput train alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger("quic_edge")

# The class name's ending says the task (and so the loss and the inputs).
TASK_BY_CLASS = {
    "ForSequenceClassification": "classification",
    "ForImageClassification": "classification",
    "ForCausalLM": "causal-lm",
    "LMHeadModel": "causal-lm",  # GPT-2 and its kin
}
TEXT_INPUTS = ("input_ids", "attention_mask")
IMAGE_INPUTS = ("pixel_values",)
# Attention implementations whose backward ONNX Runtime or ExecuTorch cannot build (SDPA lowers to ops such as
# CastLike without a gradient in ORT's training graph builder; flash/flex kernels do not export at all).
NOT_DIFFERENTIABLE = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def is_transformers_model(model: nn.Module) -> bool:
    """True for a `transformers` PreTrainedModel (checked by class name, so torch-only code never imports it)."""
    return any(cls.__name__ == "PreTrainedModel" for cls in type(model).__mro__)


def task_of(model: nn.Module) -> str | None:
    """'classification' or 'causal-lm' from a transformers class name; None for other modules."""
    if not is_transformers_model(model):
        return None
    name = type(model).__name__
    return next((task for ending, task in TASK_BY_CLASS.items() if name.endswith(ending)), None)


def input_names(model: nn.Module) -> tuple[str, ...]:
    """The inputs a transformers model takes from a bundle: pixel values for vision, ids and mask for text."""
    return IMAGE_INPUTS if getattr(model, "main_input_name", "input_ids") == "pixel_values" else TEXT_INPUTS


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: a tensor as it is, `.logits` of a ModelOutput, the first item of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}, which holds no logits; return a tensor of logits "
                    "or a ModelOutput with .logits")


def arguments(model: nn.Module, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> tuple[tuple, dict[str, Any]]:
    """(args, kwargs) to call the model with inputs named `names`: by keyword for a transformers model (no cache), by
    position else."""
    if is_transformers_model(model):
        kwargs: dict[str, Any] = dict(zip(names, tensors, strict=True))
        if task_of(model) == "causal-lm":
            kwargs["use_cache"] = False
        return (), kwargs
    return tuple(tensors), {}


def call(model: nn.Module, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The model's logits for inputs named `names` (see `arguments`)."""
    args, kwargs = arguments(model, names, tensors)
    return logits_of(model(*args, **kwargs))


class Logits(nn.Module):
    """forward(*tensors) -> the logits of `model` for inputs named `names`: a plain module an exporter can trace."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return call(self.model, self.names, tensors)


def max_sequence(model: nn.Module, cap: int = 512) -> int:
    """The longest token sequence a text model takes (its position table; RoBERTa's starts after the pad id), at most
    `cap`."""
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or cap
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return min(cap, int(positions))


def make_exportable(model: nn.Module) -> str | None:
    """Switch a transformers model whose attention the runtimes cannot differentiate to eager attention (the same
    numbers); returns the one-line notice it logged, or None when nothing changed."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if not is_transformers_model(model) or current not in NOT_DIFFERENTIABLE:
        return None
    if getattr(model, "_supports_attention_backend", False):  # attention chosen per call from the config
        model.set_attn_implementation("eager")
    else:  # older classes build one attention class per implementation at init: build eager ones, keep the weights
        _rebuild_with_eager_attention(model)
    notice = (f"quic-edge: {type(model).__name__} used {current} attention, which the device runtimes cannot "
              "differentiate; switched to eager attention (same results)")
    log.warning(notice)
    return notice


def _rebuild_with_eager_attention(model: nn.Module) -> None:
    """In place: every child of `model` replaced by the same child built with eager attention, weights copied."""
    import copy

    config = copy.deepcopy(model.config)
    config._attn_implementation = "eager"
    fresh = type(model)(config)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.train(model.training)
    for name, _ in list(model.named_children()):
        setattr(model, name, getattr(fresh, name))
    model.config._attn_implementation = "eager"


# Targets a user of each family usually adapts (PEFT's defaults: attention query and value); others: all linear.
DEFAULT_TARGETS = {
    ("bert", "roberta", "xlm-roberta", "electra", "vit", "deit", "camembert"): ("query", "value"),
    ("distilbert",): ("q_lin", "v_lin"),
    ("gpt2",): ("c_attn",),
    ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3", "smollm3"): ("q_proj", "v_proj"),
}


def default_targets(model: nn.Module) -> tuple[str, ...] | str:
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return next((t for types, t in DEFAULT_TARGETS.items() if model_type in types), "all-linear")


def load_folder(folder: str | Path, task: str | None = None, num_labels: int = 2, seed: int = 0) -> nn.Module:
    """A local from_pretrained checkpoint (config.json + safetensors) with the head of `task` (default: from the
    config's architectures; a bare encoder gets a classification head, a vision one an image classifier). A new head
    is initialised from `seed`; attention is eager (exportable) from the start."""
    import json
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"--model {folder}: not a model folder (no config.json); give a from_pretrained folder or one "
                         "of minilm, llama-tiny, mlp")
    if not any(folder.glob("*.safetensors")):
        raise ValueError(f"--model {folder}: no .safetensors weights (pickled .bin files are not loaded); convert them "
                         "with transformers' save_pretrained(safe_serialization=True)")
    config = json.loads(config_file.read_text())
    if task is None:
        architecture = (config.get("architectures") or [""])[0]
        task = next((t for ending, t in TASK_BY_CLASS.items() if architecture.endswith(ending)), None)
        task = "image-classification" if task == "classification" and "image_size" in config else task
        task = task or ("image-classification" if "image_size" in config else "classification")
    from .config_cli import MODEL_TASKS

    if task not in MODEL_TASKS:
        raise ValueError(f"--task: must be one of {MODEL_TASKS}, got {task!r}")
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized head weights" is what we ask for
    auto = {"classification": transformers.AutoModelForSequenceClassification,
            "image-classification": transformers.AutoModelForImageClassification,
            "causal-lm": transformers.AutoModelForCausalLM}[task]
    extra = {} if task == "causal-lm" else {"num_labels": num_labels, "ignore_mismatched_sizes": True}
    torch.manual_seed(seed)
    model = auto.from_pretrained(folder, attn_implementation="eager", use_safetensors=True, **extra)
    return model.eval()


def base_name(model: nn.Module) -> str:
    """A short name of a transformers model's base for bundles and deltas: its folder's name, or its model type."""
    config = getattr(model, "config", None)
    path = str(getattr(config, "_name_or_path", "") or "")
    return Path(path).name or str(getattr(config, "model_type", "") or type(model).__name__)


def head_modules(model: nn.Module, candidates: Sequence[str]) -> list[str]:
    """Names (last part) among `candidates` that are modules of `model`: the task head the config trains."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return [c for c in candidates if c in present]


def source_folder(model: nn.Module) -> Path | None:
    """The local folder a transformers model was loaded from (its tokenizer and preprocessor files), else None."""
    path = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    return Path(path) if is_transformers_model(model) and path and Path(path).is_dir() else None


def tokenizer_file(model: nn.Module) -> Path | None:
    """tokenizer.json beside a transformers model loaded from a folder, when there is one."""
    folder = source_folder(model)
    return folder / "tokenizer.json" if folder and (folder / "tokenizer.json").is_file() else None


def image_preprocessing(model: nn.Module) -> dict[str, Any] | None:
    """What a vision bundle's inputs must be: square size, channels, per-channel mean and std (ImageNet's unless the
    folder's preprocessor_config.json says otherwise)."""
    if input_names(model) != IMAGE_INPUTS:
        return None
    config = model.config
    size, channels = int(config.image_size), int(getattr(config, "num_channels", 3))
    mean, std = [0.5] * channels, [0.5] * channels  # ViTImageProcessor's defaults
    folder = source_folder(model)
    path = folder / "preprocessor_config.json" if folder else None
    if path and path.is_file():
        import json

        found = json.loads(path.read_text())
        mean, std = list(found.get("image_mean", mean)), list(found.get("image_std", std))
    return {"size": size, "channels": channels, "mean": mean, "std": std, "rescale": 1 / 255}
