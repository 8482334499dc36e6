"""Backbone + neck + head: one module whose forward gives a dense task's output.

The backbone is any registered model with ``forward_features`` (single-scale tokens or multi-scale
maps, see :mod:`step.tasks.heads.features`). Its classification head is removed. Submodules are
named ``backbone.*``, ``neck.*`` and ``head.*`` so that per-layer energy rows (whose ``name`` is the
module path) split into backbone and head energy with :func:`split_energy_by_prefix`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from step.errors import ConfigError
from step.registry import MODELS
from step.tasks.heads.features import feature_maps, probe_feature_shapes


class DenseModel(nn.Module):
    """``[T, B, C, H, W]`` -> the head's output (segmentation logits, detection dict)."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head

    def forward(self, x: torch.Tensor) -> Any:
        input_hw = tuple(x.shape[-2:])
        levels = self.neck(feature_maps(self.backbone.forward_features(x), input_hw))
        return self.head(levels, input_hw)


def build_backbone(name: str, model_kwargs: Mapping[str, Any], neuron, attention) -> nn.Module:
    """A registered model without its classification head; raises if it has no ``forward_features``."""
    backbone = MODELS.build(name, neuron=neuron, attention=attention, **dict(model_kwargs))
    if not callable(getattr(backbone, "forward_features", None)):
        raise ConfigError(f"model '{name}' has no forward_features, so it cannot serve as a backbone for a dense "
                          "task; use spikformer, sdt, meta-spikeformer-* or qkformer-*.")
    if isinstance(getattr(backbone, "head", None), nn.Module):
        backbone.head = nn.Identity()  # the classifier is not used by dense tasks
    return backbone


def build_dense_model(backbone_name: str, model_kwargs: Mapping[str, Any], bundle, neuron, attention,
                      make_neck_head: Callable[[list[tuple[int, int, int]]], tuple[nn.Module, nn.Module]]) -> DenseModel:
    """Build the backbone, probe its scales on a zero image, then build neck and head for them."""
    if bundle.modality != "image" or bundle.img_size is None:
        raise ConfigError(f"dense tasks take image datasets with a fixed img_size; '{bundle.name}' is {bundle.modality}.")
    backbone = build_backbone(backbone_name, model_kwargs, neuron, attention)
    T = getattr(neuron, "T", None) or 1
    shapes = probe_feature_shapes(backbone, bundle.in_chans, bundle.img_size, T)
    neck, head = make_neck_head(shapes)
    return DenseModel(backbone, neck, head)


def split_energy_by_prefix(per_layer: Iterable[Mapping[str, Any]], key: str = "energy_pj",
                           prefixes: tuple[str, ...] = ("backbone", "neck", "head")) -> dict[str, float]:
    """Sum ``key`` of per-layer rows by the first component of their ``name``.

    Rows named ``backbone.*``, ``neck.*`` and ``head.*`` go to those parts; any other row (the input
    encoder, say) to ``other``. Returns every part (zeros included) and ``total``.
    """
    out = {p: 0.0 for p in prefixes}
    out["other"] = 0.0
    for row in per_layer:
        first = str(row.get("name", "")).split(".", 1)[0]
        out[first if first in prefixes else "other"] += float(row.get(key, 0.0) or 0.0)
    out["total"] = sum(v for k, v in out.items())
    return out
