"""Serve several people from one base file on the device: the swappable ONNX graph takes each person's delta as inputs.

Torch-free (numpy, safetensors, onnxruntime), like the device loops beside it. The graph is written by
`quic_edge.export.swappable.export_swappable_onnx`; its inputs are input_ids, attention_mask and every delta tensor by
name, and its metadata holds the identity it serves (quic_edge.formats.identity), so a delta of another base or
config is refused.

Example:
    >>> server = SwappableSession("deploy/swappable.onnx")
    >>> server.add_person("alex", "deltas/alex.safetensors")
    >>> logits = server.logits("alex", input_ids, attention_mask)  # (B, labels)
"""

from __future__ import annotations

import os

import numpy as np

from quic_edge.formats.delta_file import DeltaError, read_delta_file
from quic_edge.formats.identity import IdentityError, check_identity, identity_of

TEXT_INPUTS = ("input_ids", "attention_mask")


class SwappableSession:
    """One ONNX Runtime session over the int8 base; a person's delta is fed with every call."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        from quic_edge.runtimes.ort import ort_bindings

        ort_bindings()  # imports onnxruntime as a device without torch would
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.served = identity_of(self.session.get_modelmeta().custom_metadata_map)
        self.delta_shapes = {i.name: tuple(i.shape) for i in self.session.get_inputs() if i.name not in TEXT_INPUTS}
        self.people: dict[str, dict[str, np.ndarray]] = {}

    def add_person(self, person: str, delta_path: str | os.PathLike) -> None:
        """Read and check a delta file (base, config, tensor names and shapes), then keep it for `person`."""
        tensors, meta = read_delta_file(delta_path)
        try:
            check_identity(self.served, identity_of(meta), f"delta {delta_path}")
        except IdentityError as err:
            raise DeltaError(f"{err} (this graph serves another one: deploy a graph for that base)") from None
        if set(tensors) != set(self.delta_shapes):
            missing, extra = sorted(set(self.delta_shapes) - set(tensors)), sorted(set(tensors) - set(self.delta_shapes))
            raise DeltaError(f"{delta_path}: tensors do not match the graph (missing {missing}, unexpected {extra})")
        for name, shape in self.delta_shapes.items():
            if tensors[name].shape != shape:
                raise DeltaError(f"{delta_path}: {name} has shape {tensors[name].shape}, the graph expects {shape}")
        self.people[person] = {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}

    def logits(self, person: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, labels) logits of `person`'s model for int64 ids and mask [B, T]."""
        if person not in self.people:
            raise KeyError(f"no delta loaded for {person!r}; call add_person first (loaded: {sorted(self.people)})")
        feeds = {"input_ids": np.asarray(input_ids, dtype=np.int64),
                 "attention_mask": np.asarray(attention_mask, dtype=np.int64), **self.people[person]}
        return self.session.run(None, feeds)[0]
