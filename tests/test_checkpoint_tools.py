"""Issue 19, tools that know a checkpoint: ``step-energy RUN/model.pt`` and ``step-eval RUN/model.pt``
rebuild the model from the checkpoint's own config (here SDSA-1 attention, PLIF neurons and rate
coding, none of them the defaults), write nothing beside it unless ``--out`` is given, and
``step-eval --T 2`` (or ``T=2``) evaluates at another number of time steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from step.cli import eval_main
from step.config import compose
from step.energy.cli import main as energy_main
from step.engine import run

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "trainer.max_batches=2", "trainer.batch_size=16",
        "trainer.eval_batch_size=64", "trainer.progress=false", "dataset.test_fraction=0.05", "logger=none",
        "trainer.epochs=1"]


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt-tools")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEP_OUT", str(root / "outputs"))
        mp.setenv("STEP_RESULTS", str(root / "results"))
        record = run(compose([*TINY, "attention=sdsa1", "neuron=plif", "encoder=rate"]))
    return record


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def _printed(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def test_step_energy_rebuilds_a_checkpoint_from_its_own_config(rate_run, tmp_path, capsys):
    ckpt = Path(rate_run["checkpoint"])
    assert rate_run["components"]["attention"] == "sdsa1" and rate_run["components"]["encoder"] == "rate"
    before = _files(ckpt.parent)
    assert energy_main([str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert _files(ckpt.parent) == before  # nothing beside the checkpoint
    assert "attn" in out and "ANN twin" in out  # the per-layer table of the rebuilt SDSA-1 model
    recorded = rate_run["energy"]["totals"]
    assert energy_main([str(ckpt), "--out", str(tmp_path / "e")]) == 0
    block = json.loads((tmp_path / "e" / "energy.json").read_text())["energy"]
    # rate coding draws new spikes, so only what does not depend on them equals the run's own count
    for key in ("T", "n_samples", "neuron_updates"):
        assert block["totals"][key] == recorded[key], key
    assert [r["name"] for r in block["per_layer"]] == [r["name"] for r in rate_run["energy"]["per_layer"]]
    assert (tmp_path / "e" / "model_firing_rates.png").is_file()
    assert f"{'T':>18}: 4" in out


def test_step_energy_of_a_direct_coded_checkpoint_equals_its_record(trained_demo, tmp_path):
    """Direct coding is deterministic: the table measured again is the one the run recorded."""
    record = trained_demo.record
    assert energy_main([record["checkpoint"], "--out", str(tmp_path)]) == 0
    block = json.loads((tmp_path / "energy.json").read_text())["energy"]
    for key, value in record["energy"]["totals"].items():
        assert block["totals"][key] == pytest.approx(value, rel=1e-9), key
    for model, e in record["energy"]["energy"].items():
        assert block["energy"][model]["snn_mj"] == pytest.approx(e["snn_mj"], rel=1e-9), model


def test_step_eval_evaluates_at_another_T(rate_run, capsys):
    ckpt = rate_run["checkpoint"]
    before = _files(Path(ckpt).parent)
    eval_main([ckpt])
    own = _printed(capsys.readouterr().out)
    eval_main([ckpt, "--T", "2"])
    at2 = _printed(capsys.readouterr().out)
    eval_main([ckpt, "T=2"])
    at2_override = _printed(capsys.readouterr().out)
    assert own["T"] == "4" and at2["T"] == "2"
    assert at2_override == at2  # the same evaluation, the same seed
    assert float(own["energy_mj"]) == pytest.approx(rate_run["leaderboard_row"]["energy_mj"], rel=0.5)
    assert float(at2["energy_mj"]) != float(own["energy_mj"])
    # energy scales with the steps taken: at T=2 it is well under the T=4 figure
    assert float(at2["energy_mj"]) < 0.8 * float(own["energy_mj"])
    assert _files(Path(ckpt).parent) == before
    with pytest.raises(SystemExit) as stop:
        eval_main([ckpt, "model.dim=8"])
    assert stop.value.code == 2 and "T=N" in capsys.readouterr().err


def test_a_checkpoint_whose_config_this_version_cannot_build_names_the_commit_that_wrote_it(rate_run, tmp_path, capsys):
    import torch

    from step.engine import checkpoint

    folder = tmp_path / "old-run"
    folder.mkdir()
    blob = checkpoint.read(Path(rate_run["checkpoint"]))
    blob["config"]["task"]["label_smoothing"] = 0.1  # where an older STEP kept it (issue 20 moved it to dataset)
    torch.save(blob, folder / "model.pt")
    (folder / "record.json").write_text(json.dumps({"git_commit": "0123abc"}))
    with pytest.raises(SystemExit) as stop:
        eval_main([str(folder / "model.pt")])
    err = capsys.readouterr().err
    assert stop.value.code != 0 and "label_smoothing" in err and "commit 0123abc" in err
    assert len(err.strip().splitlines()) == 1
