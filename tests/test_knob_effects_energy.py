"""Every ``energy.*`` knob, shown by the ``energy_mj`` a tiny real run writes to its leaderboard row.

The model is trained for two batches with cumulative BN statistics so that its neurons fire
(tests/knob_runs.py); the run is deterministic, so every variant counts the same operations. The
expected energies are the models' equations (shared/reference/energy.md) evaluated by hand on the
run's own operation totals, with the published constants: simple45
E = E_MAC x non-spike MACs + E_AC x (SOPs + bias adds) at 4.6 / 0.9 pJ (fp32), 1.5 / 0.4 (fp16),
0.23 / 0.03 (int8); memory adds E_bit x (b_w x weight fetches + b_u x 2 x neuron updates).
"""

from __future__ import annotations

import pandas as pd
import pytest

from knob_runs import cumulative_bn, on_model, tiny_run


def _simple45(t, mac=4.6, ac=0.9, bias=True):
    return mac * t["nonspike_macs"] + ac * t["sops"] + (ac * t["bias_adds"] if bias else 0.0)


def _memory(t, e_bit=3.12, wb=32, mb=32, reuse=False, **kw):
    fetches = t["weight_fetches_reuse"] if reuse else t["weight_fetches"]
    return _simple45(t, **kw) + e_bit * (wb * fetches + mb * 2 * t["neuron_updates"])


CASES = {
    # id: (overrides, expected pJ from the run's totals)
    "simple45": ([], lambda t: _simple45(t)),
    "memory": (["energy=memory"], lambda t: _memory(t)),
    "precision-fp16": (["energy.precision=fp16"], lambda t: _simple45(t, 1.5, 0.4)),
    "precision-int8": (["energy.precision=int8"], lambda t: _simple45(t, 0.23, 0.03)),
    "e_mac": (["energy.e_mac=2.0"], lambda t: _simple45(t, mac=2.0)),
    "e_ac": (["energy.e_ac=0.5"], lambda t: _simple45(t, ac=0.5)),
    "charge_bias": (["energy.charge_bias=false"], lambda t: _simple45(t, bias=False)),
    "encoder_per_step": (["energy.encoder_per_step=true"], lambda t: _simple45(t)),
    "e_bit": (["energy=memory", "energy.e_bit=1.0"], lambda t: _memory(t, e_bit=1.0)),
    "weight_bits": (["energy=memory", "energy.weight_bits=8"], lambda t: _memory(t, wb=8)),
    "membrane_bits": (["energy=memory", "energy.membrane_bits=16"], lambda t: _memory(t, mb=16)),
    "weight_reuse": (["energy=memory", "energy.weight_reuse=true"], lambda t: _memory(t, reuse=True)),
}


@pytest.fixture
def firing(monkeypatch):
    on_model(monkeypatch, cumulative_bn)


def _row(isolated_roots):
    return pd.read_csv(isolated_roots / "results" / "leaderboard.csv").iloc[-1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_energy_knob_prices_energy_mj(firing, isolated_roots, case):
    overrides, expected = CASES[case]
    record = tiny_run(*overrides)
    totals = record["energy"]["totals"]
    assert totals["sops"] > 1000 and totals["mean_firing_rate"] > 0.01  # spikes, so E_AC terms matter
    row = _row(isolated_roots)
    assert row["energy_mj"] == pytest.approx(expected(totals) / 1e9, rel=1e-9)
    assert row["energy_mem_mj"] == pytest.approx(_memory(totals) / 1e9 if case not in (
        "e_bit", "weight_bits", "membrane_bits", "weight_reuse") else row["energy_mj"], rel=1e-9)
    assert record["energy"]["model"] == ("memory" if "energy=memory" in overrides else "simple45")


def test_encoder_per_step_charges_the_encoder_once_per_timestep(firing):
    once = tiny_run()["energy"]["totals"]
    per_step = tiny_run("energy.encoder_per_step=true")["energy"]["totals"]
    assert once["nonspike_macs"] == once["nonspike_macs_encoder_once"]
    assert per_step["nonspike_macs"] == per_step["nonspike_macs_encoder_per_step"]
    # the encoder (the real-valued first conv) runs T = 2 times instead of once
    assert per_step["nonspike_macs"] - once["nonspike_macs"] == pytest.approx(once["encoder_macs"], rel=1e-9)


def test_lemaire_fifo_words_prices_the_spike_io(firing, isolated_roots):
    """Lemaire: every spike read/written through a FIFO of ``fifo_words`` words costs one SRAM
    access of 13.2 + 1.09e-5 x words x bits pJ; nothing else depends on the FIFO size."""
    small = tiny_run("energy=lemaire", "energy.fifo_words=1000")
    e_small = _row(isolated_roots)["energy_mj"]
    big = tiny_run("energy=lemaire", "energy.fifo_words=100000")
    e_big = _row(isolated_roots)["energy_mj"]
    io_small = small["energy"]["energy"]["lemaire"]["snn_terms_pj"]["io"]
    io_big = big["energy"]["energy"]["lemaire"]["snn_terms_pj"]["io"]
    access = lambda words: 13.2 + 1.09e-5 * words * 32  # noqa: E731
    assert io_big / io_small == pytest.approx(access(100000) / access(1000), rel=1e-9)
    assert (e_big - e_small) * 1e9 == pytest.approx(io_big - io_small, rel=1e-6)
    assert e_small == pytest.approx(small["energy"]["energy"]["lemaire"]["snn_mj"], rel=1e-12)
    assert small["energy"]["model"] == "lemaire" and e_small not in (_simple45(small["energy"]["totals"]) / 1e9,)


def test_energy_disabled_counts_nothing_and_leaves_the_columns_empty(isolated_roots, monkeypatch):
    import step.energy

    def no_meter(*args, **kwargs):
        raise AssertionError("energy.enabled=false must not build an EnergyMeter")

    monkeypatch.setattr(step.energy, "EnergyMeter", no_meter)
    record = tiny_run("energy.enabled=false")
    assert record["energy"] == {} and record["status"] == "ok"
    row = _row(isolated_roots)
    assert pd.isna(row["energy_mj"]) and pd.isna(row["sops"])


def test_energy_is_counted_on_the_whole_test_set(firing):
    """``trainer.max_batches`` caps training and the intermediate evaluations, never the measured one."""
    record = tiny_run("trainer.max_batches=1", "trainer.eval_batch_size=16")
    assert record["data"]["n_test"] == 90 and record["energy"]["totals"]["n_samples"] == 90
