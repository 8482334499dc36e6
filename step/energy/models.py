"""Energy models: pure functions of the op table (:class:`step.energy.ops.OpTable`).

Every model takes the same keywords (one key set for every ``conf/energy/*.yaml``) and returns
the energy per inference in pJ of the SNN, of its ANN twin (same architecture, one pass, dense
MACs) and of its INT8 twin (bit-serial, activations = the SNN's per-position spike counts, so
T x r_l of the SNN meets B x R_b,l of the QANN; the STEP paper's reading), plus a per-layer split.

Keywords: ``precision`` (fp32 | fp16 | int8 | int32: the E_MAC / E_AC preset), ``e_mac``/``e_ac``
(override the preset), ``e_bit`` (pJ per bit moved, memory model), ``weight_bits`` and
``membrane_bits`` (word widths of weights / data and of membrane potentials), ``weight_reuse``
(memory model: each weight fetched once per timestep instead of once per operation),
``fifo_words`` (Lemaire: size of the spike FIFO), ``charge_bias`` (charge bias adds at E_AC).
A model ignores the keywords it has no term for (simple45 has no memory terms).
"""

from __future__ import annotations

from typing import Any

from step.energy.constants import E_BIT_STEP, INT8_BITS, PRECISIONS, op_energies, sram_access_pj
from step.energy.ops import SYNAPTIC_KINDS, LayerOps, OpTable
from step.registry import ENERGY_MODELS


def _constants(**kw: Any) -> dict[str, Any]:
    mac, ac = op_energies(kw["precision"], kw["e_mac"], kw["e_ac"])
    return {**kw, "e_mac": mac, "e_ac": ac}


def _result(name: str, consts: dict, snn: dict, ann: dict, int8: dict, int8_dense: float,
            per_layer: list[float]) -> dict[str, Any]:
    return {
        "model": name,
        "snn_pj": sum(snn.values()),
        "ann_pj": sum(ann.values()),
        "int8_pj": sum(int8.values()),
        "int8_dense_pj": int8_dense,
        "snn_terms_pj": snn,
        "ann_terms_pj": ann,
        "int8_terms_pj": int8,
        "per_layer_pj": per_layer,
        "constants": consts,
    }


def _bias_per_step(row: LayerOps) -> float:
    return row.bias_adds / row.steps if row.steps else 0.0


def _snn_ops(row: LayerOps, mac: float, ac: float, charge_bias: bool) -> float:
    """Arithmetic of one SNN row: E_AC x SOPs + E_MAC x non-spike MACs (+ E_AC x bias adds)."""
    if row.kind not in SYNAPTIC_KINDS:
        return 0.0
    return ac * row.sops + mac * row.nonspike_macs + (ac * row.bias_adds if charge_bias else 0.0)


def _twin_ops(table: OpTable, mac: float, ac: float, charge_bias: bool, bit_serial: bool) -> float:
    """Arithmetic of a one-pass twin: E_MAC x FL (or E_AC x bit-serial ACs on spike-fed layers)."""
    total = 0.0
    for row in table.of_kind(*SYNAPTIC_KINDS):
        if bit_serial and row.spike_driven and row.kind != "matmul":
            total += ac * row.bitserial_acs
        else:
            total += mac * row.macs
        total += ac * _bias_per_step(row) if charge_bias else 0.0
    return total


@ENERGY_MODELS.register("simple45", paper="Horowitz ISSCC 2014; SDT V1/V2 appendix (E = E_MAC FL_enc + E_AC SOPs)")
def simple45(ops: OpTable, *, precision: str = "fp32", e_mac: float | None = None, e_ac: float | None = None,
             e_bit: float = E_BIT_STEP, weight_bits: int = 32, membrane_bits: int = 32, weight_reuse: bool = False,
             fifo_words: int = 1000, charge_bias: bool = True) -> dict[str, Any]:
    """E_SNN = E_MAC x non-spike MACs + E_AC x SOPs; E_ANN = E_MAC x FL (45 nm, Horowitz 2014)."""
    c = _constants(precision=precision, e_mac=e_mac, e_ac=e_ac, e_bit=e_bit, weight_bits=weight_bits,
                   membrane_bits=membrane_bits, weight_reuse=weight_reuse, fifo_words=fifo_words,
                   charge_bias=charge_bias)
    mac, ac = c["e_mac"], c["e_ac"]
    syn = ops.of_kind(*SYNAPTIC_KINDS)
    snn = {
        "sops": ac * sum(r.sops for r in syn),
        "nonspike_macs": mac * sum(r.nonspike_macs for r in syn),
        "bias": ac * sum(r.bias_adds for r in syn) if charge_bias else 0.0,
    }
    ann = {"macs": _twin_ops(ops, mac, ac, charge_bias, bit_serial=False)}
    mac8, ac8 = PRECISIONS["int8"]
    int8 = {"ops": _twin_ops(ops, mac8, ac8, charge_bias, bit_serial=True)}
    dense8 = _twin_ops(ops, mac8, ac8, charge_bias, bit_serial=False)
    per_layer = [_snn_ops(r, mac, ac, charge_bias) for r in ops.layers]
    return _result("simple45", c, snn, ann, int8, dense8, per_layer)


def _weight_fetches(table: OpTable, reuse: bool) -> float:
    """Weights read by the SNN per inference: one per operation, or each weight once per step."""
    total = 0.0
    for row in table.of_kind("conv", "linear"):
        if reuse:
            total += row.params * row.executions
        else:
            total += row.sops + row.nonspike_macs
    return total


@ENERGY_MODELS.register("memory", paper="STEP (Shen et al., NeurIPS 2025 D&B), memory-aware reading; E_bit 3.12 pJ/bit")
def memory(ops: OpTable, *, precision: str = "fp32", e_mac: float | None = None, e_ac: float | None = None,
           e_bit: float = E_BIT_STEP, weight_bits: int = 32, membrane_bits: int = 32, weight_reuse: bool = False,
           fifo_words: int = 1000, charge_bias: bool = True) -> dict[str, Any]:
    """STEP-style: simple45 + E_bit x (b_w x weight fetches + 2 x b_u x T x neurons).

    SNN weight fetches are one per synaptic operation (no reuse) or #weights per timestep (reuse);
    the ANN twin reads one weight per MAC (or each weight once); the INT8 twin reads an 8-bit
    weight per bit-serial AC. Both reuse readings are returned; ``weight_reuse`` picks the total.
    """
    base = simple45(ops, precision=precision, e_mac=e_mac, e_ac=e_ac, e_bit=e_bit, weight_bits=weight_bits,
                    membrane_bits=membrane_bits, weight_reuse=weight_reuse, fifo_words=fifo_words,
                    charge_bias=charge_bias)
    c = base["constants"]
    updates = sum(r.neuron_updates for r in ops.of_kind("neuron"))
    weighted = [r for r in ops.of_kind("conv", "linear")]
    snn_w = {reuse: e_bit * weight_bits * _weight_fetches(ops, reuse) for reuse in (False, True)}
    ann_w = {False: e_bit * weight_bits * sum(r.macs for r in weighted),
             True: e_bit * weight_bits * sum(r.params for r in weighted)}
    int8_fetch = sum(r.bitserial_acs if r.spike_driven else r.macs for r in weighted)
    int8_w = {False: e_bit * INT8_BITS * int8_fetch, True: e_bit * INT8_BITS * sum(r.params for r in weighted)}
    snn = {**base["snn_terms_pj"], "weights": snn_w[weight_reuse], "membrane": e_bit * membrane_bits * 2 * updates}
    ann = {**base["ann_terms_pj"], "weights": ann_w[weight_reuse]}
    int8 = {**base["int8_terms_pj"], "weights": int8_w[weight_reuse]}
    per_layer = []
    for row, arith in zip(ops.layers, base["per_layer_pj"]):
        if row.kind == "neuron":
            per_layer.append(e_bit * membrane_bits * 2 * row.neuron_updates)
        elif row.kind in ("conv", "linear"):
            fetched = row.params * row.executions if weight_reuse else row.sops + row.nonspike_macs
            per_layer.append(arith + e_bit * weight_bits * fetched)
        else:
            per_layer.append(arith)
    out = _result("memory", c, snn, ann, int8, base["int8_dense_pj"] + int8_w[weight_reuse], per_layer)
    out["weights_pj_by_reuse"] = {
        "snn": {"no_reuse": snn_w[False], "reuse": snn_w[True]},
        "ann": {"no_reuse": ann_w[False], "reuse": ann_w[True]},
        "int8": {"no_reuse": int8_w[False], "reuse": int8_w[True]},
    }
    return out


def _formal_layer(row: LayerOps, mac: float, add: float, bits: int, count: float, charge_bias: bool,
                  acs: float | None = None) -> dict[str, float]:
    """Lemaire's ANN ("formal") layer run ``count`` times; ``acs`` replaces MACs by bit-serial adds."""
    if row.kind == "matmul":
        return {"ops": count * mac * row.macs}
    work = row.macs if acs is None else acs
    ops = (mac * row.macs if acs is None else add * acs) + (add * row.n_out if charge_bias else 0.0)
    fan_in_k = row.params * row.n_out * row.kernel / row.macs if row.macs else 0.0  # C_out x K
    address = row.n_in + row.n_out + (fan_in_k if row.kind == "conv" else 0.0)
    return {
        "ops": count * ops,
        "weights": count * work * sram_access_pj(row.params, bits),
        "inputs": count * work * sram_access_pj(row.n_in, bits),
        "outputs": count * row.n_out * sram_access_pj(row.n_out, bits),
        "addressing": count * add * address,
    }


def _lemaire_snn_row(row: LayerOps, mac: float, add: float, c: dict) -> dict[str, float]:
    wb, mb, fifo = c["weight_bits"], c["membrane_bits"], c["fifo_words"]
    if row.kind == "neuron":  # threshold/bias add per update, reset add per spike, leak multiply
        return {
            "ops": add * (row.neuron_updates + row.spikes) + (mac * row.neuron_updates if row.leaky else 0.0),
            "potentials": 2 * row.neuron_updates * sram_access_pj(row.neurons, mb),
            "io": row.spikes * sram_access_pj(fifo, wb),
        }
    if row.kind not in SYNAPTIC_KINDS:
        return {}
    if not row.spike_driven:  # hybrid rule: dense formal layer, once per execution counted
        count = row.nonspike_macs / row.macs if row.macs else 0.0
        return _formal_layer(row, mac, add, wb, count, c["charge_bias"])
    if row.kind == "matmul":
        return {"ops": add * row.sops}
    theta, fan = row.input_spikes, (row.macs / row.n_in if row.n_in else 0.0)
    address = 2 * theta * mac + theta * row.kernel * add if row.kind == "conv" else theta * fan * add
    terms = {
        "ops": add * row.sops,
        "weights": row.sops * sram_access_pj(row.params, wb),
        "potentials": 2 * row.sops * sram_access_pj(row.n_out, mb),
        "io": theta * sram_access_pj(fifo, wb),
        "addressing": address,
    }
    if row.bias_params:
        terms["weights"] += row.bias_adds * sram_access_pj(row.bias_params, wb)
    return terms


def _merge(parts: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


@ENERGY_MODELS.register("lemaire", paper="Lemaire et al., ICONIP 2022 (equations as implemented by qualia-plugin-snn)")
def lemaire(ops: OpTable, *, precision: str = "int32", e_mac: float | None = None, e_ac: float | None = None,
            e_bit: float = E_BIT_STEP, weight_bits: int = 32, membrane_bits: int = 32, weight_reuse: bool = False,
            fifo_words: int = 1000, charge_bias: bool = True) -> dict[str, Any]:
    """Per-access SRAM model: every operand read from SRAM, E_mem(n, b) = 13.2 + 1.09e-5 n b pJ.

    SNN synaptic layer: E_add x SOPs, a weight read and a potential read+write per SOP, an input
    read per spike from the FIFO, addressing (2 MACs + K adds per input spike for conv). Neuron
    layer: an add per update and per spike, a leak MAC per update (LIF), a potential read+write
    per update, an output write per spike. ANN twin: the formal layer (MAC, weight and input read
    per MAC, output write, addressing). E_mul = E_MAC - E_AC, E_add = E_AC (int32: 3.1 / 0.1).
    """
    c = _constants(precision=precision, e_mac=e_mac, e_ac=e_ac, e_bit=e_bit, weight_bits=weight_bits,
                   membrane_bits=membrane_bits, weight_reuse=weight_reuse, fifo_words=fifo_words,
                   charge_bias=charge_bias)
    mac, add = c["e_mac"], c["e_ac"]
    snn_rows = [_lemaire_snn_row(r, mac, add, c) for r in ops.layers]
    syn = ops.of_kind(*SYNAPTIC_KINDS)
    ann = _merge([_formal_layer(r, mac, add, weight_bits, 1.0, charge_bias) for r in syn])
    mac8, add8 = PRECISIONS["int8"]
    int8 = _merge([
        _formal_layer(r, mac8, add8, INT8_BITS, 1.0, charge_bias,
                      acs=r.bitserial_acs if r.spike_driven and r.kind != "matmul" else None)
        for r in syn
    ])
    dense8 = sum(_merge([_formal_layer(r, mac8, add8, INT8_BITS, 1.0, charge_bias) for r in syn]).values())
    per_layer = [sum(t.values()) for t in snn_rows]
    return _result("lemaire", c, _merge(snn_rows), ann, int8, dense8, per_layer)
