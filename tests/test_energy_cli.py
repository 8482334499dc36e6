"""``step-energy`` on a tiny record and a tiny checkpoint."""

from __future__ import annotations

import json

import torch
from torch import nn

import step  # noqa: F401
from step.energy import EnergyMeter
from step.energy.cli import main
from step.registry import MODELS, NEURONS


def _tiny_record(tmp_path):
    net = nn.Sequential(nn.Linear(4, 3), NEURONS.build("if", T=2), nn.Linear(3, 2))
    meter = EnergyMeter(net, T=2)
    with meter, torch.inference_mode():
        net(torch.rand(2, 5, 4) * 3)
    path = tmp_path / "run" / "record.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"name": "tiny", "energy": meter.report().to_record()}))
    return path


def test_cli_reads_a_record_prints_the_table_and_plots(tmp_path, capsys):
    path = _tiny_record(tmp_path)
    assert main([str(path)]) == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]  # nothing written without --out
    assert main([str(path), "--out", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    for name in ("0", "1", "2"):  # the Sequential's layer names
        assert f"\n{name} " in out
    assert "simple45" in out and "ANN twin" in out
    # the per-layer table and the summary show the three counting conventions
    header = next(line for line in out.splitlines() if line.startswith("layer"))
    assert "paper ops" in header and "exact ops" in header and "NB ops" in header and "exact pJ" in header
    record = json.loads(path.read_text())["energy"]["by_convention"]
    for name in ("paper", "exact", "neurobench"):
        assert record[name]["statement"] in out
    assert f"Effective_ACs {record['neurobench']['effective_acs']:.6g}" in out
    png = tmp_path / "figs" / "record_firing_rates.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_measures_a_checkpoint(tmp_path, capsys):
    kw = dict(depth=1, dim=32, heads=2)
    model = MODELS.build("spikformer", num_classes=10, img_size=16, in_chans=1, **kw)
    ckpt = tmp_path / "last.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    args = [str(ckpt), "--model", "spikformer", "--T", "2", "--max-samples", "8"]
    args += [f"--model-arg={k}={v}" for k, v in kw.items()]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    block = json.loads((tmp_path / "out" / "energy.json").read_text())["energy"]
    assert block["totals"]["n_samples"] == 8 and block["totals"]["T"] == 2
    assert (tmp_path / "out" / "last_firing_rates.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "out"]
    assert "blocks.0.attn.qk" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    ckpt = tmp_path / "x.pt"
    torch.save({}, ckpt)
    assert main([str(ckpt)]) == 2
    assert "--model" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps({"name": "no energy"}))
    assert main([str(bad)]) == 2
    assert "energy.enabled" in capsys.readouterr().err


def _changed(value):
    """Another value of the same kind: what a user would set instead."""
    if value is None:
        return 1.234
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2
    return {"fp32": "int8", "int32": "fp16"}[value]


def _pj(result):
    return {k: v for k, v in result.items() if k != "constants"}


def test_each_energy_config_holds_exactly_the_keywords_its_model_uses(tmp_path):
    """Every model keyword of conf/energy/<model>.yaml changes that model's energy when changed, and
    every keyword the model takes but its config leaves out changes nothing (so a config holds no
    key that its model ignores, and misses none that acts)."""
    import inspect
    from pathlib import Path

    from omegaconf import OmegaConf

    from step.energy.report import RUNNER_KEYS, split_energy_cfg
    from step.registry import ENERGY_MODELS

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), NEURONS.build("lif", T=2), nn.Linear(8, 2))
    meter = EnergyMeter(net, T=2)
    with meter, torch.inference_mode():
        net(torch.rand(2, 5, 4) * 10)
    table = meter.report().table
    assert table.totals()["sops"] > 0  # spikes flow, so every per-spike term has something to charge

    files = sorted(Path(__file__).resolve().parents[1].glob("conf/energy/*.yaml"))
    cfgs = {f.stem: OmegaConf.to_container(OmegaConf.load(f)) for f in files}
    assert {"simple45", "memory", "lemaire"} <= set(cfgs)
    for stem, cfg in cfgs.items():
        assert cfg["name"] == stem and cfg["enabled"] is True and cfg["encoder_per_step"] is False
        assert set(RUNNER_KEYS) <= set(cfg)
        name, _, constants = split_energy_cfg(cfg)
        base = _pj(ENERGY_MODELS.build(name, ops=table, **constants))
        for key, value in constants.items():
            changed = _pj(ENERGY_MODELS.build(name, ops=table, **{**constants, key: _changed(value)}))
            assert changed != base, f"conf/energy/{stem}.yaml: {key} does not act in model '{name}'"
        keywords = inspect.signature(ENERGY_MODELS.entry(name).fn).parameters
        for key, param in keywords.items():
            if key == "ops" or key in constants:
                continue
            changed = _pj(ENERGY_MODELS.build(name, ops=table, **{**constants, key: _changed(param.default)}))
            assert changed == base, f"conf/energy/{stem}.yaml leaves out {key}, which acts in model '{name}'"
