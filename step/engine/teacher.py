"""The frozen teacher of a distillation run (``kd.teacher``).

``kd.teacher`` is either

* a registered model name (``step-list model``): built like the student from this run's neuron,
  surrogate, backend and T, with the model's own attention and the data's classes and size, and
  random weights (for plumbing checks and tests; a trained teacher is given as its ``model.pt``); or
* the path of a STEP ``model.pt`` (written by ``step-train``): rebuilt from the config saved in it
  (its own model, attention, neuron, T and encoder) and loaded with its weights; or
* ``timm:<name>``: a timm image classifier with its pretrained weights (``timm.create_model(name,
  pretrained=True)``, fetched into the Hugging Face cache on first use), an ANN that sees the image
  batch as the student's encoder receives it (normalised, mixed). Meta-SpikeFormer's released T=4
  fine-tune distils from CAFormer-B36 (ImageNet-21k, fine-tuned on 1k): ``timm:caformer_b36.sail_in22k_ft_in1k``.

The teacher sits outside the student: not in the optimiser, not in the student's state_dict, not
counted by the energy meter (which only ever wraps the student), always in eval mode with gradients
off. It sees the same batch as the student (after mixing); a teacher built from this run's
components takes the student's encoded input, a checkpoint teacher encodes the batch with its own
encoder and T.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from step.data.base import DataBundle
from step.errors import ConfigError


class Teacher:
    """``teacher(x, x_time_major) -> logits [B, K]`` under ``no_grad``, always in eval mode."""

    def __init__(self, model: nn.Module, source: str, kind: str, encoder: nn.Module | None = None,
                 modality: str = "image", images: bool = False):
        self.model = model.eval().requires_grad_(False)
        self.source, self.kind, self.encoder, self.modality = source, kind, encoder, modality
        self.images = images  # an ANN on the image batch [B, C, H, W] instead of time-major spikes

    def to(self, device: torch.device) -> "Teacher":
        self.model.to(device)
        if self.encoder is not None:
            self.encoder.to(device)
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, x_time_major: torch.Tensor) -> torch.Tensor:
        from step.engine.loop import to_time_major

        self.model.eval()
        if self.images:
            return self.model(x)
        inputs = x_time_major if self.encoder is None else to_time_major(x, self.modality, self.encoder)
        return self.model(inputs)

    def describe(self) -> dict[str, Any]:
        return {"teacher": self.source, "teacher_kind": self.kind,
                "teacher_params": sum(p.numel() for p in self.model.parameters())}


def build_teacher(cfg: DictConfig, bundle: DataBundle) -> Teacher:
    """The teacher ``cfg.kd.teacher`` names (see the module docstring)."""
    from step.engine import builders
    from step.registry import MODELS, closest

    name = cfg.kd.get("teacher")
    if not name:
        raise ConfigError("kd=deit needs kd.teacher: a registered model name (step-list model) or the path of a "
                          "STEP model.pt.")
    name = str(name)
    if name.startswith("timm:"):
        return _timm_teacher(name[len("timm:"):], bundle)
    if name in MODELS:
        kwargs = builders.model_data_kwargs(name, bundle)
        model = MODELS.build(name, neuron=builders.build_neuron_factory(cfg), **kwargs)
        return Teacher(model, name, "registered model (random weights, this run's neuron and T)",
                       modality=bundle.modality)
    path = Path(name)
    if not path.is_file():
        guess = closest(name, MODELS.names())
        hint = f" Did you mean '{guess}'?" if guess else ""
        raise ConfigError(f"kd.teacher='{name}' is neither a registered model nor an existing model.pt file.{hint} "
                          "Give a model name (step-list model) or the path of a model.pt written by step-train.")
    from step.engine.evaluate import load_checkpoint

    ckpt = load_checkpoint(path)
    teacher_cfg = OmegaConf.create(ckpt["config"])
    model = builders.build_model(teacher_cfg, bundle)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ConfigError(f"kd.teacher {path} does not fit this run's data ({bundle.name}, {bundle.num_classes} "
                          f"classes): {err}") from None
    encoder = builders.build_encoder(teacher_cfg)
    return Teacher(model, str(path), f"STEP checkpoint ({teacher_cfg.model.name}, T={teacher_cfg.T}, "
                   f"encoder {teacher_cfg.encoder.name})", encoder=encoder, modality=bundle.modality)


def _timm_teacher(arch: str, bundle: DataBundle) -> Teacher:
    """A pretrained timm image classifier as the teacher (``kd.teacher=timm:<name>``)."""
    if bundle.modality != "image":
        raise ConfigError(f"kd.teacher=timm:{arch} is an image classifier, and dataset '{bundle.name}' gives "
                          f"{bundle.modality}s; use a STEP model.pt or a registered model as the teacher.")
    import timm

    try:
        model = timm.create_model(arch, pretrained=True)
    except Exception as err:  # noqa: BLE001 - unknown names and failed downloads raise many types
        raise ConfigError(f"kd.teacher=timm:{arch}: timm cannot build it with pretrained weights ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}). Check the name (timm.list_models) and that "
                          "its weights can be downloaded or are in the Hugging Face cache.") from None
    if getattr(model, "num_classes", None) != bundle.num_classes:
        raise ConfigError(f"kd.teacher=timm:{arch} predicts {getattr(model, 'num_classes', '?')} classes and dataset "
                          f"'{bundle.name}' has {bundle.num_classes}; use a teacher trained on this dataset's classes.")
    return Teacher(model, f"timm:{arch}", "timm model (pretrained ANN on the image batch before encoding)",
                   modality=bundle.modality, images=True)
