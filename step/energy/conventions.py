"""The three named counting conventions of every energy report: ``paper``, ``exact``, ``neurobench``.

* ``paper`` -- what the published spiking-transformer energy tables compute: the encoding layer as
  dense MACs once per inference, every other layer ``firing rate x T x FLOPs`` accumulates (spikes
  times the layer's *average* fan-out, padded taps included; integer spikes value-weighted), the
  attention products counted. Comparable with the papers; the leaderboard's ``energy_mj``.
* ``exact`` -- event-driven: each input spike is charged |value| x the synapses it really reaches
  (the in-bounds fan-out of its position, :mod:`step.energy.fanout`); a real-valued input (encoder,
  pooled head) its non-zero values x the in-bounds fan-out as MACs; zero weights skipped when
  ``energy.skip_zero_weights``. Spike products keep the paper's count, which is already exact (the
  number of coinciding spikes). The leaderboard's ``energy_exact_mj``.
* ``neurobench`` -- NeuroBench's metrics (effective ACs / MACs, dense operations, activation and
  connection sparsity, footprint, membrane updates) under its definitions, from our own counters;
  the quantities it defines otherwise are listed in :data:`NEUROBENCH_DIFFERENCES`.
"""

from __future__ import annotations

from typing import Any

from step.energy.ops import OpTable

PJ_PER_MJ = 1e9

#: convention -> (one-line statement, source)
STATEMENTS: dict[str, tuple[str, str]] = {
    "paper": (
        "E = E_MAC x FLOPs(encoding layer, once per inference) + E_AC x sum over spike-fed layers of "
        "firing rate x T x FLOPs (every spike times the layer's average fan-out, padded taps included; "
        "integer spikes value-weighted), attention products included",
        "Spike-driven Transformer V1 and V2 (Meta-SpikeFormer) appendix energy equation, as used by "
        "Spikformer and the spiking-transformer tables; E_MAC/E_AC from Horowitz, ISSCC 2014",
    ),
    "exact": (
        "event-driven: every input spike charged |value| x the synapses it reaches inside the output "
        "(exact fan-out of its position per conv geometry), real-valued inputs their non-zero values x "
        "the same fan-out as MACs (encoder once per inference unless encoder_per_step), attention "
        "products by their exact coincidence counts; zero weights skipped when skip_zero_weights",
        "STEP (step/energy/fanout.py), checked against brute-force loops over outputs and taps",
    ),
    "neurobench": (
        "NeuroBench's definitions: Effective_ACs / Effective_MACs = non-zero inputs x non-zero weights "
        "reaching outputs in bounds, summed over Linear/Conv1d/2d/3d layers at every execution (ACs where "
        "every input value is in {-1, 0, 1}, else MACs), Dense = every input x every weight in bounds, "
        "activation sparsity, connection sparsity, footprint, membrane updates; per sample",
        "NeuroBench 2.3.0 (neurobench.metrics: SynapticOperations, ActivationSparsity, ConnectionSparsity, "
        "Footprint, ParameterCount, MembraneUpdates), counted by STEP's own counters",
    ),
}

#: quantities of the neurobench block that are not NeuroBench's number, and why
NEUROBENCH_DIFFERENCES: dict[str, str] = {
    "membrane_updates": (
        "ours: every executed update (T x neurons); NeuroBench counts only the updates that change a "
        "membrane and reads membranes of snnTorch neurons only (for STEP's neurons the package reports 0)"
    ),
    "attention_products": (
        "SpikeMatMul products (Q K^T, (Q K^T) V, masks) are not Linear/Conv modules: NeuroBench does not "
        "count them (they grow as N^2 d); paper and exact do; the rows are listed under not_seen"
    ),
    "spiking_test": (
        "NeuroBench decides ACs vs MACs per batch, we over the whole evaluation; they differ only for a "
        "layer whose integer inputs stay within {-1, 0, 1} in some batches and not in others"
    ),
    "connection_sparsity": "NeuroBench rounds it to 4 decimals; we keep the exact fraction",
    "layers_inside_neurons": (
        "NeuroBench hooks Linear/Conv layers nested inside neuron modules (e.g. a PSN's), our counters "
        "treat a neuron as one unit"
    ),
}


def statement(convention: str) -> dict[str, str]:
    text, source = STATEMENTS[convention]
    return {"statement": text, "source": source}


def neurobench_block(table: OpTable, e_mac: float, e_ac: float) -> dict[str, Any]:
    """The ``neurobench`` quantities per inference (per sample), from a measured op table."""
    syn = table.of_kind("conv", "linear", "matmul")
    seen = [r for r in syn if r.nb_seen]
    acs = sum(r.nb_ops for r in seen if r.nb_spiking)
    macs = sum(r.nb_ops for r in seen if not r.nb_spiking)
    neurons = table.of_kind("neuron")
    updates = sum(r.neuron_updates for r in neurons)
    active = sum((r.output_rate or 0.0) * r.neuron_updates for r in neurons)
    weights = table.facts.get("connection_weights", 0)
    zeros = table.facts.get("connection_zero_weights", 0)
    return {
        **statement("neurobench"),
        "effective_acs": acs,
        "effective_macs": macs,
        "dense": sum(r.nb_dense for r in seen),
        "activation_sparsity": 1.0 - active / updates if updates else 0.0,
        "connection_sparsity": zeros / weights if weights else 0.0,
        "footprint_bytes": table.facts.get("footprint_bytes"),
        "parameter_count": table.facts.get("parameter_count"),
        "membrane_updates": updates,
        "energy_mj": (e_ac * acs + e_mac * macs) / PJ_PER_MJ,
        "energy_note": "E_AC x Effective_ACs + E_MAC x Effective_MACs at the report's constants "
                       "(NeuroBench itself reports operations, not energy)",
        "not_seen": [r.name for r in syn if not r.nb_seen and r.macs > 0],  # (a fused RepConv row has none)
        "differs_by_design": dict(NEUROBENCH_DIFFERENCES),
    }
