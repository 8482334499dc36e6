"""step.energy.report: how one measured table becomes the record's energy block and the board's columns.

A tiny IF network is measured once; every figure below is checked against the energy models run by
hand on the same table (``ENERGY_MODELS.build``), so a report that picks the wrong model, table,
convention or constants, or mislabels a unit, fails here.
"""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import step  # noqa: F401 (registers the energy models and neurons)
from step.energy import EnergyMeter
from step.energy.report import EnergyReport, split_energy_cfg
from step.errors import StepError
from step.layers import SeqModule
from step.registry import ENERGY_MODELS, NEURONS

MODELS = ("lemaire", "memory", "simple45")


@pytest.fixture(scope="module")
def report():
    torch.manual_seed(0)
    # padded convolutions: the exact convention counts fewer operations at the borders than the paper's
    net = nn.Sequential(SeqModule(nn.Conv2d(1, 4, 3, padding=1)), NEURONS.build("if", T=2),
                        SeqModule(nn.Conv2d(4, 2, 3, padding=1)))
    meter = EnergyMeter(net, T=2)
    with meter, torch.inference_mode():
        net(torch.rand(2, 3, 1, 6, 6) * 3)
    rep = meter.report()
    assert rep.table.totals()["sops"] > 0 and rep.table.totals()["nonspike_macs"] > 0
    return rep


def snn_mj(table, name="simple45", **constants):
    return ENERGY_MODELS.build(name, ops=table, **constants)["snn_pj"] / 1e9


# -- split_energy_cfg -------------------------------------------------------------------------------
def test_split_energy_cfg_separates_runner_keys_from_model_keywords():
    assert split_energy_cfg(None) == ("simple45", None, {})
    assert split_energy_cfg({}) == ("simple45", None, {})
    cfg = {"name": "memory", "enabled": True, "encoder_per_step": 1, "skip_zero_weights": True, "e_bit": 2.0}
    assert split_energy_cfg(cfg) == ("memory", True, {"e_bit": 2.0})
    assert split_energy_cfg({"name": "simple45", "encoder_per_step": 0}) == ("simple45", False, {})
    root = OmegaConf.create({"bits": 1.5, "energy": {"name": "memory", "enabled": True, "e_bit": "${bits}"}})
    assert split_energy_cfg(root.energy) == ("memory", None, {"e_bit": 1.5})  # an OmegaConf node, resolved


def test_split_energy_cfg_refuses_a_keyword_the_model_does_not_take():
    with pytest.raises(StepError, match="energy model 'simple45' has no option 'e_mc'.*e_mac"):
        split_energy_cfg({"name": "simple45", "e_mc": 3.0})


# -- columns ----------------------------------------------------------------------------------------
def test_columns_are_the_chosen_model_on_both_conventions_plus_memory_and_totals(report):
    t = report.table
    cols = report.columns({"name": "simple45", "e_ac": 0.5})
    assert set(cols) == {"energy_mj", "energy_exact_mj", "energy_mem_mj", "energy_ann_mj", "energy_int8_mj",
                         "sops", "firing_rate"}
    chosen = ENERGY_MODELS.build("simple45", ops=t, e_ac=0.5)
    assert cols["energy_mj"] == pytest.approx(chosen["snn_pj"] / 1e9, rel=1e-12)
    assert cols["energy_exact_mj"] == pytest.approx(snn_mj(t.under("exact"), e_ac=0.5), rel=1e-12)
    assert cols["energy_mem_mj"] == pytest.approx(snn_mj(t, "memory"), rel=1e-12)  # memory at its own defaults
    assert cols["energy_ann_mj"] == pytest.approx(chosen["ann_pj"] / 1e9, rel=1e-12)
    assert cols["energy_int8_mj"] == pytest.approx(chosen["int8_pj"] / 1e9, rel=1e-12)
    assert cols["sops"] == t.totals()["sops"] and cols["firing_rate"] == t.totals()["mean_firing_rate"]
    assert cols["energy_exact_mj"] < cols["energy_mj"]  # the padded borders do less work when counted exactly


def test_columns_under_the_memory_model_pass_its_constants_to_energy_mem(report):
    cols = report.columns({"name": "memory", "e_bit": 1.0})
    assert cols["energy_mj"] == pytest.approx(snn_mj(report.table, "memory", e_bit=1.0), rel=1e-12)
    assert cols["energy_mem_mj"] == cols["energy_mj"]
    assert report.columns({})["energy_mj"] == pytest.approx(snn_mj(report.table), rel=1e-12)


def test_columns_follow_the_encoder_convention_asked_for(report):
    once, per_step = report.columns({"encoder_per_step": False}), report.columns({"encoder_per_step": True})
    assert per_step["energy_mj"] == pytest.approx(snn_mj(report.table.with_encoder_per_step(True)), rel=1e-12)
    assert per_step["energy_mj"] > once["energy_mj"]  # the encoder charged at each of the 2 steps


# -- the record block -------------------------------------------------------------------------------
def test_record_block_structure_and_every_model_on_the_chosen_table(report):
    rec = json.loads(json.dumps(report.to_record({"name": "simple45", "e_mac": 2.0})))
    assert set(rec) == {"version", "model", "by_convention", "constants", "conventions", "totals", "energy",
                        "encoder_conventions", "per_layer"}
    assert rec["model"] == "simple45" and rec["constants"]["e_mac"] == 2.0
    assert set(rec["energy"]) == set(MODELS) == set(ENERGY_MODELS.names())
    t = report.table
    for model, block in rec["energy"].items():
        result = ENERGY_MODELS.build(model, ops=t, **({"e_mac": 2.0} if model == "simple45" else {}))
        for kind in ("snn", "ann", "int8", "int8_dense"):
            assert block[f"{kind}_pj"] == pytest.approx(result[f"{kind}_pj"], rel=1e-12)
            assert block[f"{kind}_mj"] == pytest.approx(result[f"{kind}_pj"] / 1e9, rel=1e-12)
        for terms in ("snn_terms_pj", "ann_terms_pj", "int8_terms_pj"):
            assert block[terms] == pytest.approx(result[terms], rel=1e-12)
        assert block["constants"] == json.loads(json.dumps(result["constants"]))
        assert ("weights_pj_by_reuse" in block) == ("weights_pj_by_reuse" in result)
    assert rec["totals"] == pytest.approx(t.totals())


def test_record_conventions_paper_exact_and_neurobench(report):
    t = report.table
    rec = report.to_record({"name": "simple45"})
    paper, exact = rec["by_convention"]["paper"], rec["by_convention"]["exact"]
    assert paper["sops"] == t.totals()["sops"] and paper["nonspike_macs"] == t.totals()["nonspike_macs"]
    assert exact["sops"] == t.under("exact").totals()["sops"]
    assert exact["nonspike_macs"] == t.under("exact").totals()["nonspike_macs"]
    assert exact["paper_minus_exact"] == t.totals()["paper_minus_exact"] and exact["skip_zero_weights"] is False
    for model in MODELS:
        assert paper["energy_mj"][model] == pytest.approx(snn_mj(t, model), rel=1e-12)
        assert exact["energy_mj"][model] == pytest.approx(snn_mj(t.under("exact"), model), rel=1e-12)
    assert paper["statement"] != exact["statement"] and paper["source"] and exact["source"]
    assert set(rec["by_convention"]) == {"paper", "exact", "neurobench"}
    assert rec["by_convention"]["neurobench"]["not_seen"] == []


def test_record_encoder_conventions_hold_both_figures_whichever_is_chosen(report):
    t = report.table
    for chosen in (False, True):
        rec = report.to_record({"encoder_per_step": chosen})
        assert rec["conventions"]["encoder_per_step"] is chosen
        for label, flag in (("encoder_once", False), ("encoder_per_step", True)):
            block = rec["encoder_conventions"][label]
            other = t.with_encoder_per_step(flag)
            assert block["nonspike_macs"] == other.totals()["nonspike_macs"]
            assert block["energy_mj"]["simple45"] == pytest.approx(snn_mj(other), rel=1e-12)
        assert rec["totals"] == pytest.approx(t.with_encoder_per_step(chosen).totals())
    once, per = report.to_record({})["encoder_conventions"].values()
    assert per["nonspike_macs"] > once["nonspike_macs"]


def test_record_per_layer_rows_carry_the_chosen_models_energy_under_both_conventions(report):
    t = report.table
    rows = report.to_record({"name": "memory"})["per_layer"]
    paper = ENERGY_MODELS.build("memory", ops=t)["per_layer_pj"]
    exact = ENERGY_MODELS.build("memory", ops=t.under("exact"))["per_layer_pj"]
    assert [r["name"] for r in rows] == [layer.name for layer in t.layers]
    assert [r["energy_pj"] for r in rows] == pytest.approx(paper, rel=1e-12)
    assert [r["energy_exact_pj"] for r in rows] == pytest.approx(exact, rel=1e-12)
    default = report.per_layer  # the text table's rows: simple45 at its defaults
    assert [r["energy_pj"] for r in default] == pytest.approx(ENERGY_MODELS.build("simple45", ops=t)["per_layer_pj"])
    assert report.to_text().splitlines()[2].startswith("0.0 ")


def test_record_states_what_its_numbers_are_per_and_how_ops_are_counted(report):
    conv = report.to_record({})["conventions"]
    assert set(conv) == {"encoder_per_step", "per", "sop", "binary_test", "encoder", "norm", "pool", "bias",
                         "ann_twin", "int8_twin"}
    assert conv["per"] == "inference (one sample); SOPs include the factor T"
    assert conv["norm"] == "BatchNorm folded into the preceding layer (norm_ops reported, not charged)"
    assert conv["pool"] == "pooling comparisons/adds reported (pool_ops), not charged"
    assert conv["bias"] == "bias adds counted apart, charged at E_AC when charge_bias"
    assert conv["ann_twin"] == "same architecture, one pass, dense MACs at E_MAC (+ the model's memory terms)"
    assert conv["sop"] == ("T x input rate x dense MACs (value-weighted for integer spikes); exact AND count for "
                           "binary x binary products; rate of the binary operand x m k n for binary x real")
    assert conv["binary_test"] == ("run time: binary = every input value in {0, 1}; ternary = in {-1, 0, 1}; integer "
                                   "spikes: integer values (a value v is |v| accumulates)")
    assert conv["encoder"] == ("first synaptic layer with a real-valued input; MACs once per inference (SDT) or once "
                               "per timestep (syops); both figures under 'encoder_conventions'")
    assert conv["int8_twin"] == ("bit-serial QANN whose activations are the SNN's spike counts over T: int8 E_AC x "
                                 "1-bits x fan-out (dense int8 MACs on real-valued inputs and attention products); "
                                 "int8_dense: int8 E_MAC x dense MACs")


def test_to_text_prints_the_rows_it_is_given_even_none_and_its_own_otherwise(report):
    assert len(report.to_text([]).splitlines()) == 3  # header, rule, legend: the given (empty) rows
    assert len(report.to_text().splitlines()) == 3 + len(report.table.layers)


def test_every_column_follows_the_chosen_model_and_encoder_convention(report):
    per_step = report.table.with_encoder_per_step(True)
    cols = report.columns({"name": "memory", "encoder_per_step": True, "e_bit": 2.0})
    assert cols["energy_mem_mj"] == pytest.approx(snn_mj(per_step, "memory", e_bit=2.0), rel=1e-12)
    assert cols["energy_exact_mj"] == pytest.approx(snn_mj(per_step.under("exact"), "memory", e_bit=2.0), rel=1e-12)
    plain = report.columns({"encoder_per_step": True})
    assert plain["energy_mem_mj"] == pytest.approx(snn_mj(per_step, "memory"), rel=1e-12)


def test_the_chosen_constants_and_encoder_convention_reach_every_block_of_the_record(report):
    per_step = report.table.with_encoder_per_step(True)
    cfg = {"name": "simple45", "encoder_per_step": True, "e_mac": 2.0, "e_ac": 0.5}
    rec = report.to_record(cfg)
    assert rec["by_convention"]["paper"]["energy_mj"]["simple45"] == pytest.approx(
        snn_mj(per_step, e_mac=2.0, e_ac=0.5), rel=1e-12)
    assert rec["by_convention"]["paper"]["energy_mj"]["memory"] == pytest.approx(snn_mj(per_step, "memory"), rel=1e-12)
    assert rec["by_convention"]["exact"]["energy_mj"]["simple45"] == pytest.approx(
        snn_mj(per_step.under("exact"), e_mac=2.0, e_ac=0.5), rel=1e-12)
    for label, flag in (("encoder_once", False), ("encoder_per_step", True)):
        assert rec["encoder_conventions"][label]["energy_mj"]["simple45"] == pytest.approx(
            snn_mj(report.table.with_encoder_per_step(flag), e_mac=2.0, e_ac=0.5), rel=1e-12)
    chosen = ENERGY_MODELS.build("simple45", ops=per_step, e_mac=2.0, e_ac=0.5)
    assert [r["energy_pj"] for r in rec["per_layer"]] == pytest.approx(chosen["per_layer_pj"], rel=1e-12)
    nb = rec["by_convention"]["neurobench"]
    assert nb["energy_mj"] == pytest.approx((0.5 * nb["effective_acs"] + 2.0 * nb["effective_macs"]) / 1e9, rel=1e-12)
    assert nb["effective_macs"] > 0 and nb["effective_acs"] > 0  # both constants act


def test_memory_models_weight_reuse_figures_are_kept(report):
    rec = report.to_record({"name": "memory"})
    result = ENERGY_MODELS.build("memory", ops=report.table)
    assert "weights_pj_by_reuse" in result
    assert rec["energy"]["memory"]["weights_pj_by_reuse"] == result["weights_pj_by_reuse"]


def test_a_table_measured_per_step_stays_per_step_unless_asked_otherwise(report):
    per_step_report = EnergyReport(report.table.with_encoder_per_step(True))
    assert per_step_report.table.encoder_per_step is True
    assert per_step_report.columns({})["energy_mj"] == pytest.approx(snn_mj(per_step_report.table), rel=1e-12)
    assert per_step_report.columns({"encoder_per_step": False})["energy_mj"] == pytest.approx(
        snn_mj(report.table), rel=1e-12)
    assert per_step_report.to_record({})["conventions"]["encoder_per_step"] is True


def test_the_energy_block_and_exact_per_layer_rows_use_the_chosen_table_and_constants(report):
    per_step = report.table.with_encoder_per_step(True)
    rec = report.to_record({"name": "simple45", "encoder_per_step": True, "e_mac": 2.0})
    assert rec["energy"]["simple45"]["snn_mj"] == pytest.approx(snn_mj(per_step, e_mac=2.0), rel=1e-12)
    assert rec["energy"]["memory"]["snn_mj"] == pytest.approx(snn_mj(per_step, "memory"), rel=1e-12)
    exact = ENERGY_MODELS.build("simple45", ops=per_step.under("exact"), e_mac=2.0)["per_layer_pj"]
    assert [r["energy_exact_pj"] for r in rec["per_layer"]] == pytest.approx(exact, rel=1e-12)


def test_energy_without_a_model_name_is_simple45_on_the_measured_table(report):
    assert report.energy()["snn_pj"] == ENERGY_MODELS.build("simple45", ops=report.table)["snn_pj"]
