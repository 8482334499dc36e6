"""The spike-driven audit of one run: which weight layers read values that are not spikes.

A spiking transformer is *spike-driven* when every weight layer (conv, linear, and every product
of activations through :class:`step.layers.SpikeMatMul`) reads spikes, so that it only adds. The
energy meter already decides this at run time, per layer, from the values it sees (binary {0, 1},
ternary {-1, 0, 1} or integer spike counts: charged as accumulates; anything else: charged as
dense MACs, ``nonspike_macs_per_step > 0`` in the op table). The audit reads that decision from
the per-layer rows of the energy record and does not test any tensor again.

Three kinds of layer are allowed to read real values, and each is recognised as follows:

* **the encoding layer**: the row the meter flags ``encoder`` (the first weight layer, in
  forward order, whose input is real-valued: direct encoding feeds it the image);
* **the classifier head on pooled features**: the last weight layer in forward order when it is
  a ``linear`` row whose output per sample (and timestep) is one vector, the logits; models pool
  the residual stream over tokens and/or time before it (Spikformer: mean over tokens and T);
* **the inner layers of a re-parameterisable chain**: a module that declares
  ``folds_into_one_layer = True`` (RepConv, the depthwise + pointwise pair of SepConv) is a
  chain of weight layers with no neuron inside that folds into one layer at inference; only its
  first weight layer must read spikes, the later ones read an affine image of those spikes.

The ANN twin (a model without any spiking neuron: no ``neuron`` row in the table, as with
``neuron=relu``) is not audited: its verdict is ``ann`` (not ``n/a``, which pandas reads as a
missing value). Every other run gets ``yes`` (no weight layer outside the exclusions reads non-spike
values) or ``no`` (the offending layers are listed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

SYNAPTIC_KINDS = ("conv", "linear", "matmul")

#: what a run's ``energy.spike_driven.rule`` says, so a record explains itself
RULE = ("every weight layer (conv, linear, attention product) reads spikes: binary, ternary or integer counts, "
        "as detected by the energy meter at run time; excluded: the encoding layer, the classifier head on "
        "pooled features, and the inner layers of re-parameterisable chains (they fold into their first layer)")

REASONS = {
    "encoder": "encoding layer: the first weight layer fed real values (the meter's encoder flag)",
    "head": "classifier head on pooled features: the last weight layer, one logit vector per sample",
    "chain": "inside a re-parameterisable chain that folds into its first layer, which reads spikes",
}


def chain_members(model: nn.Module) -> set[str]:
    """Names (as ``model.named_modules`` gives them) of the weight layers that sit inside a module
    declaring ``folds_into_one_layer = True``, other than the chain's first weight layer."""
    from step.energy.counters import classify

    members: set[str] = set()
    for prefix, module in model.named_modules():
        if not getattr(module, "folds_into_one_layer", False):
            continue
        weights = [name for name, child in module.named_modules() if name and classify(child) in SYNAPTIC_KINDS]
        members.update(f"{prefix}.{name}" if prefix else name for name in weights[1:])
    return members


def reads_non_spikes(row: Mapping[str, Any]) -> bool:
    """The meter charged this weight layer dense MACs because its input was not spikes."""
    return row.get("kind") in SYNAPTIC_KINDS and float(row.get("nonspike_macs_per_step") or 0.0) > 0.0


def _is_head(row: Mapping[str, Any], last_synaptic: Mapping[str, Any] | None) -> bool:
    return row is last_synaptic and row.get("kind") == "linear" and len(row.get("output_shape") or ()) == 1


def audit(per_layer: Iterable[Mapping[str, Any]], chain: Iterable[str] = ()) -> dict[str, Any]:
    """The audit block of a record from the energy record's ``per_layer`` rows.

    ``chain`` holds the names of re-parameterisable chain members (:func:`chain_members`).
    """
    rows = sorted(per_layer, key=lambda r: r.get("order", 0))
    chain = set(chain)
    synaptic = [r for r in rows if r.get("kind") in SYNAPTIC_KINDS]
    last = synaptic[-1] if synaptic else None
    spiking = any(r.get("kind") == "neuron" for r in rows)
    offenders, excluded = [], []
    for row in synaptic:
        if not reads_non_spikes(row):
            continue
        name = str(row.get("name"))
        reason = ("encoder" if row.get("encoder") else "head" if _is_head(row, last)
                  else "chain" if name in chain else None)
        if reason is not None:
            excluded.append({"name": name, "type": row.get("type"), "reason": REASONS[reason]})
        else:
            offenders.append({"name": name, "type": row.get("type"), "kind": row.get("kind"),
                              "input_mean": row.get("input_mean"), "input_rate": row.get("input_rate")})
    verdict = "ann" if not spiking else ("no" if offenders else "yes")
    return {
        "verdict": verdict,
        "non_spike_layers": offenders if spiking else [],
        "excluded": excluded,
        "why_not_audited": "" if spiking else "no spiking neuron in the model (an ANN twin)",
        "rule": RULE,
    }


def audit_model(per_layer: Iterable[Mapping[str, Any]], model: nn.Module) -> dict[str, Any]:
    """:func:`audit` with the chain members read from ``model`` (the module the meter measured)."""
    return audit(per_layer, chain_members(model))
