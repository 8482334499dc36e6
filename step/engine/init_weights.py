"""``trainer.init_from``: start a run from the weights of a STEP checkpoint (a fine-tune).

The path names a ``model.pt`` (written by ``step-train`` or ``step-convert``) or a ``last.pt``
(its ``model`` entry is used). Only the weights are taken: optimiser, schedule, epoch count and
history start fresh, which is what separates it from ``trainer.resume`` (that continues a run).
Every tensor of the checkpoint needs a place of the same shape in the model, else one
:class:`~step.errors.CheckpointError` names the first that does not fit. Model tensors the
checkpoint does not hold keep their initialisation and are listed in the record: Meta-SpikeFormer's
released T=4 fine-tune starts from its T=1 checkpoint, which has no distillation head (the released
code loads it with ``strict=False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from step.errors import CheckpointError


def load_initial_weights(path: str | Path, model: nn.Module) -> dict[str, Any]:
    """Copy the weights of checkpoint ``path`` into ``model``; return what the record says about it."""
    from step.engine.evaluate import load_checkpoint

    path = Path(path)
    state = load_checkpoint(path)["model"]
    own = model.state_dict()
    for key, value in state.items():
        if key not in own:
            raise CheckpointError(f"trainer.init_from: tensor '{key}' of {path} has no place in model; is it a checkpoint "
                                  "of this model family? A released checkpoint needs step-convert first.")
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"trainer.init_from: tensor '{key}' of {path} has shape {tuple(value.shape)} but the "
                                  f"model's is {tuple(own[key].shape)}; build the model the checkpoint was trained as.")
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
    missing = [k for k in own if k not in state]
    return {"checkpoint": str(path), "loaded": len(state), "kept_initialisation": missing}
