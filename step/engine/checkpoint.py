"""Training checkpoints: what they hold, how they are written, and how a run finds its own.

``<run_dir>/last.pt`` holds everything needed to continue a run exactly where an epoch ended:
model, optimiser, scheduler and grad-scaler states, the RNG states of python, numpy, torch (CPU
and CUDA) and of the data-loader generator, the number of finished epochs, the best metric, the
history and the resolved config. It has the ``model`` and ``config`` entries ``step-eval`` reads.

``<run_dir>/last.json`` is a small sidecar written after it: the run's fingerprint (a hash of the
config keys that define the run), the epoch, the status and the time. ``trainer.resume=auto``
scans ``paths.output_root`` for sidecars with the same fingerprint whose status is not ``ok`` or
``diverged`` and continues the most recently saved one, in its own run folder; when there is none
the run starts fresh. ``trainer.resume=<path>`` continues from that file (or that run folder).

Both files are written atomically (temporary file, then ``os.replace``), so a crash or a signal
during a save leaves the previous checkpoint intact. A checkpoint that cannot be read, has another
format version, or was made by a different config raises :class:`CheckpointError` naming the file
and the mismatch before anything is written.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from step.errors import CheckpointError

FORMAT = "step-train-state"
VERSION = 1
STATE_FILE = "last.pt"
SIDECAR_FILE = "last.json"
#: statuses whose runs ``resume=auto`` never continues (finished, or would diverge again)
FINAL_STATUSES = ("ok", "diverged")
#: config keys that do not change what a run computes (where files go, how it is watched, how it
#: is launched); every other key must match for a checkpoint to be continued
NON_IDENTITY = ("paths", "logger", "tags", "reference", "energy", "trainer.resume", "trainer.progress",
                "trainer.num_workers", "trainer.device", "trainer.compile", "trainer.compile_neurons",
                "trainer.channels_last", "trainer.cpu_allocator", "trainer.ckpt_every")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config keys that define a run (everything outside :data:`NON_IDENTITY`)."""
    flat = _flatten(config)
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in NON_IDENTITY)}


def fingerprint(config: dict[str, Any]) -> str:
    blob = json.dumps(identity(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_mismatch(saved: dict[str, Any], current: dict[str, Any], limit: int = 6) -> list[str]:
    """``key: checkpoint X, this run Y`` for each identity key that differs."""
    a, b = identity(saved), identity(current)
    out = [f"{k}: checkpoint {a.get(k, '<absent>')!r}, this run {b.get(k, '<absent>')!r}"
           for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    return out[:limit] + ([f"... and {len(out) - limit} more"] if len(out) > limit else [])


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def capture(*, model, optimizer, scheduler, scaler, generator, epoch: int, best: dict[str, Any] | None,
            history: list[dict[str, Any]], config: dict[str, Any], world_size: int) -> dict[str, Any]:
    """A CPU snapshot of the training state at the end of epoch ``epoch - 1`` (``epoch`` done)."""
    return _to_cpu({
        "format": FORMAT, "version": VERSION, "epoch": epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(generator), "best": best, "history": history, "config": config,
        "fingerprint": fingerprint(config), "world_size": world_size,
    })


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_sidecar(run_dir: Path, state: dict[str, Any] | None, status: str) -> None:
    """``last.json``: fingerprint, epoch and status, so ``resume=auto`` need not open checkpoints."""
    path = Path(run_dir) / SIDECAR_FILE
    old = {}
    if state is None and path.exists():
        old = json.loads(path.read_text())
    info = {**old, "status": status, "saved_at": time.time()}
    if state is not None:
        info.update(fingerprint=state["fingerprint"], epoch=state["epoch"], checkpoint=STATE_FILE)
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(info, indent=2)))


def save(run_dir: Path, state: dict[str, Any], status: str = "running") -> Path:
    """Write ``state`` to ``<run_dir>/last.pt`` atomically, then its sidecar."""
    path = Path(run_dir) / STATE_FILE
    _atomic(path, lambda tmp: torch.save(state, tmp))
    write_sidecar(run_dir, state, status)
    return path


def load(path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """The training state in ``path`` after checking that it continues a run of ``config``."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"trainer.resume: checkpoint {path} does not exist; give a last.pt, its run "
                              "folder, auto, or never.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); it is corrupt "
                              "or truncated. It was left untouched; move it aside or set trainer.resume=never.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a STEP training state (no format '{FORMAT}'); "
                              "only last.pt files written by step-train can be resumed.")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {state.get('version')}, this STEP "
                              f"reads version {VERSION}; resume it with the STEP version that wrote it.")
    diff = config_mismatch(state["config"], config)
    if diff:
        raise CheckpointError(f"checkpoint {path} was made by a different config, so it cannot be continued: "
                              + "; ".join(diff) + ". Use the original settings or trainer.resume=never.")
    return state


def find_latest(output_root: str | Path, config: dict[str, Any]) -> Path | None:
    """The most recently saved unfinished ``last.pt`` under ``output_root`` with ``config``'s fingerprint."""
    root = Path(output_root)
    if not root.is_dir():
        return None
    want = fingerprint(config)
    best: tuple[float, Path] | None = None
    for sidecar in root.rglob(SIDECAR_FILE):
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        if info.get("fingerprint") != want or info.get("status") in FINAL_STATUSES:
            continue
        ckpt = sidecar.parent / info.get("checkpoint", STATE_FILE)
        if ckpt.is_file() and (best is None or info.get("saved_at", 0.0) > best[0]):
            best = (float(info.get("saved_at", 0.0)), ckpt)
    return best[1] if best else None


def restore(state: dict[str, Any], *, model, optimizer, scheduler, scaler, generator, path: Path) -> None:
    """Load ``state`` into the live objects; a shape mismatch names the file and the tensors."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit the model this config builds: {err}") from None
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"], generator)
