"""Server-side aggregation of client updates: validate each one, then average the good ones by example count.

Pure numpy (no Flower, no torch), so the rules are unit-tested on their own and a server on any machine runs them.

    expected = identity_of(manifest)          # quic_edge.formats.identity: the one identity check
    result = aggregate(global_tensors, updates, expected)
    result.tensors            # the new global (a fresh dict; the old global is never modified)
    result.rejected           # [(client, reason)], each also logged

Why plain averaging is right for QuIC angles, and how far it is from averaging the rotations: README.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from quic_edge.formats.identity import identity_mismatch

log = logging.getLogger("quic_edge.fleet")



class AggregationError(ValueError):
    """No update could be accepted, or the average itself is not usable; the global stays as it was."""


@dataclass(frozen=True)
class Update:
    """One client's trained tensors, how many examples produced them, and what they were trained on."""

    client: str
    tensors: Mapping[str, np.ndarray]
    num_examples: int
    identity: Mapping[str, str]  # IDENTITY_KEYS -> value, as quic_edge.formats.identity.identity_of gives


@dataclass
class AggregateResult:
    tensors: dict[str, np.ndarray]
    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (client, reason)
    weights: dict[str, float] = field(default_factory=dict)  # client -> its share of the average


def check_update(update: Update, reference: Mapping[str, np.ndarray], expected: Mapping[str, str]) -> str | None:
    """Why this update cannot be averaged into `reference` (the current global), or None if it can."""
    reason = identity_mismatch(expected, update.identity)
    if reason:
        return f"identity mismatch: {reason.replace('expected', 'the global has')}"
    if isinstance(update.num_examples, bool) or not isinstance(update.num_examples, (int, np.integer)):
        return f"num_examples must be an integer, got {update.num_examples!r}"
    if update.num_examples <= 0:
        return f"num_examples must be positive, got {update.num_examples}"
    missing, extra = sorted(set(reference) - set(update.tensors)), sorted(set(update.tensors) - set(reference))
    if missing or extra:
        return f"tensor names differ from the global (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, ref in reference.items():
        array = np.asarray(update.tensors[name])
        if array.shape != ref.shape:
            return f"{name} has shape {array.shape}, the global has {ref.shape}"
        if not np.issubdtype(array.dtype, np.floating):
            return f"{name} has dtype {array.dtype}, expected floating point"
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        if bad:
            return f"{name} has {bad} non-finite values (NaN or inf)"
    return None


def weighted_average(tensors: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
    """sum_i w_i x_i / sum_i w_i per name, accumulated in float64, returned in each tensor's dtype."""
    if not tensors or len(tensors) != len(weights):
        raise AggregationError(f"give one weight per update: {len(tensors)} updates, {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise AggregationError(f"weights must be positive and finite, got {list(weights)}")
    w = w / w.sum()
    out = {}
    for name, first in tensors[0].items():
        total = np.zeros(np.shape(first), dtype=np.float64)
        for share, t in zip(w, tensors, strict=True):
            total += share * np.asarray(t[name], dtype=np.float64)
        out[name] = total.astype(np.asarray(first).dtype)
    return out


def aggregate(
    global_tensors: Mapping[str, np.ndarray], updates: Sequence[Update], expected: Mapping[str, str],
    failed: Sequence[tuple[str, str]] = (),
) -> AggregateResult:
    """Validate every update against the global and `expected`; average the accepted ones by example count.

    `failed`: (client, reason) of clients that sent no update (dropped, errored); they are reported as rejected.
    With nothing accepted, the result holds an unchanged copy of the global. The global passed in is never
    modified, and a result that is not finite is never returned (AggregationError instead).
    """
    reference = {name: np.asarray(a) for name, a in global_tensors.items()}
    result = AggregateResult(tensors={name: a.copy() for name, a in reference.items()})
    for client, reason in failed:
        _reject(result, client, reason)
    good: list[Update] = []
    for update in updates:
        reason = check_update(update, reference, expected)
        if reason is None:
            good.append(update)
        else:
            _reject(result, update.client, reason)
    if not good:
        log.warning("no update accepted this round; the global delta is unchanged")
        return result
    average = weighted_average([u.tensors for u in good], [float(u.num_examples) for u in good])
    for name, array in average.items():
        if not np.all(np.isfinite(array)):
            raise AggregationError(f"the average of {name} is not finite; the global is unchanged")
    total = float(sum(u.num_examples for u in good))
    result.tensors = average
    result.accepted = [u.client for u in good]
    result.weights = {u.client: u.num_examples / total for u in good}
    return result


def _reject(result: AggregateResult, client: str, reason: str) -> None:
    log.warning("rejected the update of client %s: %s", client, reason)
    result.rejected.append((client, reason))

