"""What makes two runs "the same": the one definition behind resume fingerprints and ``config_hash``.

A resolved run config holds keys that change what a run computes (model, data, recipe, T, seed,
epochs, ...) and keys that only say where files go or how the run is watched or launched (paths,
logger, progress bars, device placement, ...). :func:`identity` keeps the first kind, flattened to
dotted keys. Two hashes are built from it:

- :func:`fingerprint` (checkpoints, ``trainer.resume=auto``): the identity without the energy
  settings, which are measured after training and so do not decide whether training can continue;
- :func:`config_hash` (the leaderboard's ``config_hash`` column): the identity without the seed,
  so the rows ``step-board`` may pool as "mean ± std over seeds" are exactly the rows with one hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: config keys that never change what a run computes: where files go, how it is watched, how it is
#: launched (a prefix drops the whole subtree)
NON_IDENTITY = ("paths", "logger", "tags", "reference", "trainer.resume", "trainer.progress",
                "trainer.num_workers", "trainer.device", "trainer.compile", "trainer.compile_neurons",
                "trainer.channels_last", "trainer.cpu_allocator", "trainer.ckpt_every")
#: a checkpoint continues a run whatever its energy settings (energy is measured after training)
RESUME_IGNORES = (*NON_IDENTITY, "energy")
#: rows of one config pool over seeds; the experiment name is a label, not a setting
POOL_IGNORES = (*NON_IDENTITY, "seed", "name")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def identity(config: dict[str, Any], ignore: tuple[str, ...] = RESUME_IGNORES) -> dict[str, Any]:
    """The flattened config keys that define a run (every key outside the ``ignore`` prefixes)."""
    flat = _flatten(config)
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in ignore)}


def _digest(keys: dict[str, Any]) -> str:
    blob = json.dumps(keys, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(config: dict[str, Any]) -> str:
    """The hash that ties a checkpoint to the config that may continue it."""
    return _digest(identity(config, RESUME_IGNORES))


def config_hash(config: dict[str, Any]) -> str:
    """The hash of everything a run computes except its seed: rows with one hash pool over seeds."""
    return _digest(identity(config, POOL_IGNORES))


def config_mismatch(saved: dict[str, Any], current: dict[str, Any], limit: int = 6) -> list[str]:
    """``key: checkpoint X, this run Y`` for each resume-identity key that differs."""
    a, b = identity(saved), identity(current)
    out = [f"{k}: checkpoint {a.get(k, '<absent>')!r}, this run {b.get(k, '<absent>')!r}"
           for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])
