"""Training checkpoints: what they hold, how they are written, read safely, and found again.

``<run_dir>/last.pt`` holds everything needed to continue a run exactly where an epoch ended:
model, optimiser, scheduler and grad-scaler states, the RNG states of python, numpy, torch (CPU
and CUDA) and of the data-loader generator, the number of finished epochs, the best metric, the
history and the resolved config. It has the ``model`` and ``config`` entries ``step-eval`` reads.

Every checkpoint holds tensors and plain data only (dicts, lists, tuples, str, int, float, bool,
None): numpy's RNG state is stored as a tensor and python's as its tuple of ints. So every file is
read with ``torch.load(weights_only=True)``, which refuses any other Python object before it is
built: a crafted file cannot run code (:func:`read`). Format version 1 pickled numpy objects; such
files are refused with one message naming the version.

``<run_dir>/last.json`` is a small sidecar written after it: the run's fingerprint (a hash of the
config keys that define the run, :mod:`step.config.identity`), the epoch, the status and the time.
``trainer.resume=auto`` scans ``paths.output_root`` for sidecars with the same fingerprint whose
run is not finished and continues the most recently saved one, in its own run folder; when there is
none the run starts fresh. ``trainer.resume=<path>`` continues from that file (or that run folder);
a finished run (its sidecar or record says ``ok``) is refused.

Both files are written atomically (temporary file, then ``os.replace``), so a crash or a signal
during a save leaves the previous checkpoint intact. A checkpoint that cannot be read, has another
format version, or was made by a different config raises :class:`CheckpointError` naming the file
and the mismatch before anything is written.
"""

from __future__ import annotations

import json
import pickle
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from step.config.identity import NON_IDENTITY, config_mismatch, fingerprint, identity  # noqa: F401 (re-exported)
from step.errors import CheckpointError
from step.fileio import atomic_write, atomic_write_text

FORMAT = "step-train-state"
MODEL_FORMAT = "step-model"
#: 2: RNG states as tensors and tuples (weights-only loadable); the run_id of the attempt
VERSION = 2
STATE_FILE = "last.pt"
MODEL_FILE = "model.pt"
SIDECAR_FILE = "last.json"
RECORD_FILE = "record.json"
#: statuses whose runs ``resume=auto`` never continues (finished, or would diverge again)
FINAL_STATUSES = ("ok", "diverged")
#: the pickled globals a format-1 ``last.pt`` holds (numpy's RNG state as an ndarray)
_V1_GLOBALS = {"numpy.dtype", "numpy.ndarray", "numpy._core.multiarray._reconstruct",
               "numpy.core.multiarray._reconstruct", "numpy.dtypes.UInt32DType"}


def read(path: str | Path) -> Any:
    """The content of a checkpoint file, loaded weights-only: tensors and plain data, nothing else.

    A file holding any other Python object is refused before that object is built (so no code in
    it runs), with one :class:`CheckpointError` naming the file and what it holds.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            foreign = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - an unreadable file: reported as corrupt below
            foreign = []
        if foreign and set(foreign) <= _V1_GLOBALS:
            raise CheckpointError(
                f"checkpoint {path} has the old STEP format version 1 (it pickled numpy objects, which this "
                f"STEP never unpickles because a crafted file could run code); this STEP reads version {VERSION}. "
                "Start the run again (trainer.resume=never), or resume it with the STEP commit that wrote it; "
                "step-eval reads that run's model.pt.") from None
        if foreign:
            shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
            raise CheckpointError(
                f"{path} was not loaded: it holds Python objects other than tensors and plain data ({shown}), "
                "and unpickling them could run code. STEP reads only weights-only files (torch.save of "
                "tensors, dicts, lists and numbers); save the model's state_dict alone.") from None
        raise CheckpointError(f"checkpoint {path} cannot be read: it is corrupt or not a PyTorch file. "
                              "It was left untouched; move it aside or set trainer.resume=never.") from None
    except Exception as err:  # noqa: BLE001 - any reading failure means a corrupt or truncated file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); it is corrupt "
                              "or truncated. It was left untouched; move it aside or set trainer.resume=never.") from None


def rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    """Every RNG state as tensors and plain data (weights-only loadable)."""
    version, internal, gauss_next = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": (version, tuple(internal), gauss_next),
        "numpy": {"bit_generator": numpy_state["bit_generator"],
                  "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "has_gauss": n["has_gauss"], "gauss": n["gauss"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]}})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def _plain(obj: Any) -> Any:
    """A CPU copy holding only tensors and plain data (numpy values become tensors or numbers)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool, torch.dtype, torch.device, torch.Size)):
        return obj
    raise TypeError(f"a checkpoint holds tensors and plain data only, not {type(obj).__name__} ({obj!r})")


def capture(*, model, optimizer, scheduler, scaler, generator, epoch: int, best: dict[str, Any] | None,
            history: list[dict[str, Any]], config: dict[str, Any], world_size: int, run_id: str = "") -> dict[str, Any]:
    """A CPU snapshot of the training state at the end of epoch ``epoch - 1`` (``epoch`` done)."""
    return _plain({
        "format": FORMAT, "version": VERSION, "epoch": epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(generator), "best": best, "history": history, "config": config,
        "fingerprint": fingerprint(config), "world_size": world_size, "run_id": run_id,
    })


def read_sidecar(run_dir: Path) -> dict[str, Any]:
    """``last.json`` of a run folder ({} when absent or unreadable)."""
    try:
        info = json.loads((Path(run_dir) / SIDECAR_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def read_status(run_dir: Path) -> str | None:
    """The status of the run's record.json (None when there is none or it cannot be read)."""
    try:
        record = json.loads((Path(run_dir) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record.get("status") if isinstance(record, dict) else None


def write_sidecar(run_dir: Path, state: dict[str, Any] | None, status: str) -> None:
    """``last.json``: fingerprint, epoch and status, so ``resume=auto`` need not open checkpoints."""
    info = {**(read_sidecar(run_dir) if state is None else {}), "status": status, "saved_at": time.time()}
    if state is not None:
        info.update(fingerprint=state["fingerprint"], epoch=state["epoch"], checkpoint=STATE_FILE,
                    run_id=state.get("run_id", ""))
    atomic_write_text(Path(run_dir) / SIDECAR_FILE, json.dumps(info, indent=2))


def save(run_dir: Path, state: dict[str, Any], status: str = "running") -> Path:
    """Write ``state`` to ``<run_dir>/last.pt`` atomically, then its sidecar."""
    path = atomic_write(Path(run_dir) / STATE_FILE, lambda tmp: torch.save(state, tmp))
    write_sidecar(run_dir, state, status)
    return path


def save_model(run_dir: Path, model: torch.nn.Module, config: dict[str, Any], epoch: int, run_id: str) -> Path:
    """``<run_dir>/model.pt``: the trained weights and the config that builds them (what step-eval reads)."""
    blob = _plain({"format": MODEL_FORMAT, "version": VERSION, "model": model.state_dict(), "config": config,
                   "epoch": epoch, "run_id": run_id})
    return atomic_write(Path(run_dir) / MODEL_FILE, lambda tmp: torch.save(blob, tmp))


def is_finished(run_dir: Path) -> bool:
    """A run whose sidecar or record says ``ok``: its model, record and row were written."""
    return read_sidecar(run_dir).get("status") == "ok" or read_status(run_dir) == "ok"


def load(path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """The training state in ``path`` after checking that it continues an unfinished run of ``config``."""
    path = Path(path)
    if path.is_dir():
        path = path / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"trainer.resume: checkpoint {path} does not exist; give a last.pt, its run "
                              "folder, auto, or never.")
    if is_finished(path.parent):
        raise CheckpointError(
            f"trainer.resume: the run in {path.parent} has finished (status ok; its model.pt, record.json and "
            "leaderboard row exist), so it is not trained again. Evaluate it with `step-eval "
            f"{path.parent / MODEL_FILE}`, or start a new run (trainer.resume=never).")
    state = read(path)
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


def find_latest(output_root: str | Path, config: dict[str, Any], settle=None) -> Path | None:
    """The most recently saved unfinished ``last.pt`` under ``output_root`` with ``config``'s fingerprint.

    A run whose record already says ``ok`` (killed after its record, before its sidecar said so) is
    finished, not continued; ``settle(run_dir)`` is called for it (:func:`step.engine.resume.settle`).
    """
    root = Path(output_root)
    if not root.is_dir():
        return None
    want = fingerprint(config)
    best: tuple[float, Path] | None = None
    for sidecar in root.rglob(SIDECAR_FILE):
        info = read_sidecar(sidecar.parent)
        if info.get("fingerprint") != want or info.get("status") in FINAL_STATUSES:
            continue
        if read_status(sidecar.parent) == "ok":
            if settle is not None:
                settle(sidecar.parent)
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
