"""The op table: what the counting hooks measured, per layer and per inference (one sample).

Energy models are pure functions of this table (``step.energy.models``); nothing here depends on
energy constants. Notation follows ``shared/reference/energy.md`` section 1:

* ``macs`` is FL_l, the dense multiply-accumulate count of the layer for ONE sample and ONE
  timestep, i.e. what the ANN twin of the same architecture computes (SDT V1 eq. S1/S2, Meta-
  SpikeFormer eq. 21/22, with groups and token counts included; bias adds are kept apart).
* ``sops`` are the synaptic operations (accumulates) of a spike-driven layer for one inference:
  SOP_l = T x r_l x FL_l (SDT V1/V2 appendix), value-weighted for integer spikes (a value v counts
  as |v| unit spikes: a bipolar -1 spike is one subtract), and the exact count of non-zero product
  terms for products of two binary or ternary tensors.
* ``nonspike_macs`` are MACs executed on non-binary inputs (encoder, mean-pooled head, integer-
  free real-valued maps); the encoding layer is charged once per inference or once per timestep.

Those are the ``paper`` convention. Each row also holds its ``exact`` count (``exact_ops``: every
spike charged for the in-bounds synapses it reaches, |value|-weighted; real-valued inputs: non-zero
inputs x in-bounds fan-out) and its ``neurobench`` counts (``nb_ops``, ``nb_dense``); see
:mod:`step.energy.conventions`. :meth:`OpTable.under` gives the table in which ``sops`` and
``nonspike_macs`` hold a convention's counts, so that every energy model prices any convention.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: kinds of rows in the table
SYNAPTIC_KINDS = ("conv", "linear", "matmul")


@dataclass
class LayerOps:
    """Counts of one module over the measured data, normalised per inference (per sample)."""

    name: str
    type: str
    kind: str  # conv | linear | matmul | neuron | norm | pool
    order: int = 0  # position of the module's first call in the forward pass
    output_shape: tuple[int, ...] = ()  # per sample and timestep
    steps: float = 1.0  # executions per inference: T for per-timestep layers, 1 for a pooled head
    macs: float = 0.0  # FL_l: dense MACs per sample per timestep (ANN twin)
    macs_executed: float = 0.0  # dense MACs as executed in the SNN per inference (= steps x macs)
    input_rate: float | None = None  # non-zero fraction of the input (ratio of sums over T, B, set)
    input_mean: float | None = None  # mean input value (= rate for binary; spikes per element)
    binary: bool = False  # every input value in {0, 1}
    ternary: bool = False  # every input value in {-1, 0, 1} with some -1 (bipolar spikes)
    integer: bool = False  # every input value an integer (binary, ternary or multi-bit spikes)
    signed: bool = False  # some input value is negative
    input_rate_b: float | None = None  # matmul: the second operand's non-zero fraction
    binary_b: bool | None = None  # matmul: the second operand is binary
    sops: float = 0.0
    nonspike_macs: float = 0.0  # under the table's encoder convention
    nonspike_macs_once: float = 0.0  # encoder charged once per inference (SDT convention)
    nonspike_macs_per_step: float = 0.0  # encoder charged once per timestep (syops convention)
    encoder: bool = False
    bias_adds: float = 0.0  # per inference as executed
    params: int = 0  # weight elements (bias excluded)
    bias_params: int = 0
    kernel: int = 1  # kernel elements k_h x k_w (1 for linear)
    n_in: float = 0.0  # input elements per sample per timestep
    n_out: float = 0.0  # output elements (neurons fed) per sample per timestep
    input_spikes: float = 0.0  # theta_in: sum of input values per inference (spike-like inputs)
    bitserial_acs: float = 0.0  # ACs of a bit-serial QANN twin whose activations are spike counts
    twin_bits: int = 0  # bits that hold the largest spike count (ceil(log2(T x max + 1)))
    bit_density: float | None = None  # 1-bits / (twin_bits x activations)
    neurons: float = 0.0  # neuron rows: neurons per sample (one membrane each)
    neuron_updates: float = 0.0  # neuron rows: T x neurons
    spikes: float = 0.0  # neuron rows: output spikes per inference (value-weighted)
    output_rate: float | None = None  # neuron rows: non-zero fraction of the output (firing rate)
    leaky: bool = False  # neuron rows: a leak multiply per update (LIF yes, IF no)
    ops: float = 0.0  # norm / pool rows: element ops per inference (not charged; BN folds away)
    # -- exact convention (event-driven, in-bounds fan-out) ------------------------------------
    exact_ops: float = 0.0  # ACs (spike inputs) or MACs (real inputs) under the table's encoder convention
    exact_ops_executed: float = 0.0  # the same, every execution counted
    exact_is_mac: bool = False  # exact_ops are MACs (a real-valued input), else accumulates
    exact_in: str = ""  # a layer inside an unfused RepConv: its work is counted on that fused row
    #: fields that differ under the exact convention (an unfused RepConv is one fused 3x3 conv there:
    #: its fused row gets that conv's MACs and weights, the chain's rows none)
    exact_overrides: dict[str, Any] = field(default_factory=dict)
    exact_value_ops: float = 0.0  # sum over inputs of |value| x in-bounds fan-out
    exact_nonzero_ops: float = 0.0  # sum over non-zero inputs of in-bounds fan-out
    # spike-driven rows: paper SOPs - exact SOPs (every weight counted). Stride 1: the spikes' share of the
    # taps that land on zero padding; with a stride also average vs per-position fan-out (either sign)
    paper_minus_exact: float = 0.0
    zero_weights: int = 0  # weights equal to 0
    # -- neurobench convention ------------------------------------------------------------------
    nb_seen: bool = False  # a layer NeuroBench's SynapticOperations hooks (Linear, Conv1d/2d/3d)
    nb_spiking: bool | None = None  # every input value in {-1, 0, 1}: its operations are ACs, else MACs
    nb_ops: float = 0.0  # non-zero inputs x in-bounds fan-out through non-zero weights
    nb_dense: float = 0.0  # every input x in-bounds fan-out, every weight

    @property
    def spike_driven(self) -> bool:
        """Charged as accumulates (its input is binary or integer spikes)."""
        return self.kind in SYNAPTIC_KINDS and self.nonspike_macs == 0.0 and self.macs > 0

    @property
    def executions(self) -> float:
        """Times the layer's weights are applied per inference (encoder per its convention)."""
        if self.nonspike_macs and self.macs:
            return self.nonspike_macs / self.macs
        return self.steps

    def as_dict(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["output_shape"] = list(self.output_shape)
        return row


@dataclass
class OpTable:
    """Every counted layer plus the run facts needed to read the counts."""

    T: int
    n_samples: int
    layers: list[LayerOps] = field(default_factory=list)
    encoder_per_step: bool = False
    convention: str = "paper"  # whose counts sops / nonspike_macs hold (see under())
    skip_zero_weights: bool = False  # exact convention: zero weights did no work
    #: model facts the neurobench block needs (parameter_count, footprint_bytes)
    facts: dict[str, Any] = field(default_factory=dict)

    def _like(self, rows: list[LayerOps], **changes: Any) -> "OpTable":
        return dataclasses.replace(self, layers=rows, **changes)

    def with_encoder_per_step(self, per_step: bool) -> "OpTable":
        """The same counts under the other encoder convention (of the measured, ``paper`` table)."""
        if self.convention != "paper":
            raise ValueError("choose the encoder convention on the measured table, then call under()")
        rows = []
        for row in self.layers:
            chosen = row.nonspike_macs_per_step if per_step else row.nonspike_macs_once
            exact = row.exact_ops
            if row.encoder:  # the same image at every step: once = executed / steps
                exact = row.exact_ops_executed if per_step else row.exact_ops_executed / max(row.steps, 1.0)
            rows.append(dataclasses.replace(row, nonspike_macs=chosen, exact_ops=exact))
        return self._like(rows, encoder_per_step=per_step)

    def under(self, convention: str) -> "OpTable":
        """The table whose ``sops`` / ``nonspike_macs`` hold ``convention``'s counts (``paper`` or
        ``exact``; ``neurobench`` defines counts, not an energy: see :mod:`step.energy.conventions`)."""
        if convention == self.convention:
            return self
        if convention == "paper":
            raise ValueError("under('paper') needs the measured table (keep it; conventions derive from it)")
        if convention != "exact":
            raise ValueError(f"no op table under the {convention!r} convention (paper, exact)")
        rows = []
        for row in self.layers:
            if row.kind in SYNAPTIC_KINDS:
                real = row.exact_is_mac  # a real-valued input: MACs, else spikes: ACs
                rows.append(dataclasses.replace(
                    row, **row.exact_overrides, sops=0.0 if real else row.exact_ops, nonspike_macs=row.exact_ops if real else 0.0,
                    nonspike_macs_once=(row.exact_ops_executed / max(row.steps, 1.0) if row.encoder
                                        else row.exact_ops_executed) if real else 0.0,
                    nonspike_macs_per_step=row.exact_ops_executed if real else 0.0))
            else:
                rows.append(row)
        return self._like(rows, convention="exact")

    def of_kind(self, *kinds: str) -> list[LayerOps]:
        return [row for row in self.layers if row.kind in kinds]

    def totals(self) -> dict[str, Any]:
        """Model-independent totals per inference (sums of the layer rows)."""
        syn = self.of_kind(*SYNAPTIC_KINDS)
        neurons = self.of_kind("neuron")
        encoder = [row for row in syn if row.encoder]
        updates = sum(r.neuron_updates for r in neurons)
        fired = sum((r.output_rate or 0.0) * r.neuron_updates for r in neurons)
        weight_fetches = sum(r.sops + r.nonspike_macs for r in syn if r.params)
        reuse_fetches = sum(r.params * r.executions for r in syn if r.params)
        spikes = sum(r.spikes for r in neurons)
        return {
            "T": self.T,
            "n_samples": self.n_samples,
            "macs": sum(r.macs for r in syn),
            "macs_executed": sum(r.macs_executed for r in syn),
            "sops": sum(r.sops for r in syn),
            "nonspike_macs": sum(r.nonspike_macs for r in syn),
            "nonspike_macs_encoder_once": sum(r.nonspike_macs_once for r in syn),
            "nonspike_macs_encoder_per_step": sum(r.nonspike_macs_per_step for r in syn),
            "encoder_macs": sum(r.macs for r in encoder),
            "bias_adds": sum(r.bias_adds for r in syn),
            "bitserial_acs": sum(r.bitserial_acs for r in syn),
            "params": sum(r.params + r.bias_params for r in syn),
            "neurons": sum(r.neurons for r in neurons),
            "neuron_updates": updates,
            "spikes": spikes,
            "mean_firing_rate": fired / updates if updates else 0.0,
            "weight_fetches": weight_fetches,
            "weight_fetches_reuse": reuse_fetches,
            "membrane_accesses": 2.0 * updates,
            # fp32 weights and membranes, 1-bit spikes; the memory model re-prices at its widths
            "bits_moved": 32.0 * weight_fetches + 32.0 * 2.0 * updates + spikes,
            "norm_ops": sum(r.ops for r in self.of_kind("norm")),
            "pool_ops": sum(r.ops for r in self.of_kind("pool")),
            "paper_minus_exact": sum(r.paper_minus_exact for r in syn),
        }
