"""The board's figures on the shipped results, and the spike raster of a tiny trained run.

Each figure is checked from its matplotlib objects: one panel per (dataset, task, metric) found in
the rows, the legend naming exactly the families and attentions drawn, every energy (point and
error bar) above zero on a log axis named by its convention, n shown, and each file as PNG, SVG
(well-formed XML) and PDF.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from step.results import plots, rate_plots, style
from step.results.aggregate import aggregate, read_rows, select
from step.results.board import build_board, separate_metrics

RESULTS = Path(__file__).resolve().parents[1] / "results"
BOARD, REFERENCE = RESULTS / "leaderboard.csv", RESULTS / "reference.csv"
BY = ["model", "attention"]


@pytest.fixture(scope="module")
def shipped():
    rows = select(read_rows([str(BOARD)]))
    rows = rows[rows["source"].fillna("run") != "paper"]
    by = separate_metrics(rows, BY)
    return rows, by, aggregate(rows, by=by)


def _files_ok(png: Path) -> None:
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ET.parse(png.with_suffix(".svg"))  # well-formed XML
    assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


def _title(key) -> str:
    return " · ".join(str(k) for k in key)


def test_log_errors_clip_the_lower_end_above_zero():
    lower, upper = plots.log_errors(np.array([10.0, 1.0, 4.0]), np.array([2.0, 5.0, np.nan]))
    assert lower.tolist() == [2.0, 0.9, 0.0]  # 10-2 = 8; 1-5 < 0 -> clipped at 0.1 x 1; no std -> no bar
    assert upper.tolist() == [2.0, 5.0, 0.0]


def test_family_drops_sizes_and_overrides():
    assert style.family("spikformer-4-384[depth=1,dim=64,heads=4]") == "spikformer"
    assert style.family("meta-spikeformer-15m") == "meta-spikeformer"
    assert style.family("semm-spikformer-4-384") == "semm-spikformer"
    assert style.family("int8-twin") == "int8-twin"
    assert style.palette(["sdt", "spikformer"])["spikformer"] == style.palette(["spikformer"])["spikformer"]


def test_a_group_never_mixes_metrics(shipped):
    rows, by, agg = shipped
    assert {"dataset", "task", "metric_name"} <= set(by)
    assert not agg["metric_name"].str.contains(",").any()
    assert set(agg["metric_name"]) == set(rows["metric_name"])  # top1, miou, map50 each their own groups


def test_accuracy_vs_energy_on_the_shipped_results(shipped, tmp_path):
    rows, by, agg = shipped
    ref = pd.read_csv(REFERENCE)
    fig = plots.accuracy_vs_energy(agg, by, reference=ref)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    energy = pd.to_numeric(rows["energy_mj"], errors="coerce")
    drawn = rows[(energy > 0) & rows["metric"].notna()]
    ours = {_title(k) for k, _ in drawn.groupby(["dataset", "task", "metric_name"])}
    published = ref[pd.to_numeric(ref["energy_mj"], errors="coerce") > 0]
    theirs = {_title(k) for k, _ in published.groupby(["dataset", "task", "metric_name"])}
    titles = {ax.get_title().removesuffix(" (published only)") for ax in axes}
    assert titles == ours | theirs and len(axes) == len(titles)  # one panel per (dataset, task, metric)
    for ax in axes:
        assert ax.get_xscale() == "log"
        assert "µJ" in ax.get_xlabel() and "paper convention" in ax.get_xlabel()
        dataset, task, metric = ax.get_title().removesuffix(" (published only)").split(" · ")
        assert ax.get_ylabel() == f"{metric} (%)"
        part = agg[(agg["dataset"] == dataset) & (agg["task"] == task) & (agg["metric_name"] == metric)]
        part = part[part["energy_mj_mean"] > 0]
        points = [line for c in ax.containers for line in c.lines[:1]]
        xs = sorted(float(p.get_xdata()[0]) for p in points)
        ys = sorted(float(p.get_ydata()[0]) for p in points)
        # every point is one setting of this panel: energy in µJ, its own metric (never another task's)
        assert xs == pytest.approx(sorted(part["energy_mj_mean"] * 1000))
        assert ys == pytest.approx(sorted(part["metric_mean"]))
        for c in ax.containers:  # error bars: no segment at energy <= 0
            for bars in c.lines[2]:
                for seg in bars.get_segments():
                    assert (np.asarray(seg)[:, 0] > 0).all()
        from matplotlib.collections import PathCollection

        for coll in (c for c in ax.collections if isinstance(c, PathCollection)):  # scatter: front, published
            offsets = np.asarray(coll.get_offsets())
            if len(offsets):
                assert (offsets[:, 0] > 0).all()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    families = {style.family(m) for m in drawn["model"]} | {style.family(m) for m in published["model"]}
    shown_families = {re.sub(r" \((n=[\d–]+|published)\)$", "", t) for t in legend if re.search(r"\((n=|published\))", t)}
    assert shown_families == families
    for fam in {style.family(m) for m in drawn["model"]}:
        ns = agg[agg["model"].map(style.family) == fam].dropna(subset=["energy_mj_mean"])["n"]
        n_text = f"n={ns.min()}" if ns.min() == ns.max() else f"n={ns.min()}–{ns.max()}"
        assert f"{fam} ({n_text})" in legend
    i = legend.index("\nattention")
    assert set(legend[i + 1:legend.index("", i)]) == set(drawn["attention"])
    assert "published (paper's own energy)" in legend
    _files_ok(style.save(fig, tmp_path / "accuracy_vs_energy"))


def test_the_exact_convention_reads_its_own_column(shipped):
    rows, by, agg = shipped
    fig = plots.accuracy_vs_energy(agg, by, convention="exact")
    if agg["energy_exact_mj_mean"].isna().all():  # rows written before the exact column existed
        assert fig is None
        return
    ax = fig.axes[0]
    assert "exact convention" in ax.get_xlabel()
    panel = agg[(agg["dataset"] + " · " + agg["task"] + " · " + agg["metric_name"]) == ax.get_title()]
    xs = sorted(float(c.lines[0].get_xdata()[0]) for c in ax.containers)
    assert xs == pytest.approx(sorted(panel["energy_exact_mj_mean"].dropna() * 1000))


def test_accuracy_vs_T_draws_the_timesteps_suite(shipped, tmp_path):
    rows, by, _ = shipped
    fig = plots.accuracy_vs_T(rows, BY)
    suite = rows[rows["command"].str.contains("suite=timesteps")]
    assert len(suite)
    expected = suite.groupby("T")["metric"].agg(["mean", "std", "count"])
    (ax,) = [a for a in fig.axes if a.get_visible()]
    (curve,) = ax.containers
    assert curve.lines[0].get_xdata().tolist() == expected.index.tolist()
    assert curve.lines[0].get_ydata() == pytest.approx(expected["mean"].to_numpy())
    assert ax.get_xlabel() == "timesteps T"
    n = expected["count"].unique()
    (text,) = [t.get_text() for t in ax.get_legend().get_texts()]
    assert text.endswith(f"(n={n[0]} per T)") and len(n) == 1
    _files_ok(style.save(fig, tmp_path / "accuracy_vs_T"))


def test_firing_rates_honour_by(shipped, tmp_path):
    rows, _, _ = shipped
    with_rate = rows.dropna(subset=["firing_rate"])
    one = rate_plots.firing_rates(rows, ["attention"])
    bars = one.axes[0].patches
    ticks = [t.get_text() for t in one.axes[0].get_yticklabels()]
    assert len(bars) >= with_rate["attention"].nunique() > 1  # one bar per setting, never one for all runs
    # a setting of one config on one classification dataset: its tick is "dataset: attention"
    single = with_rate[with_rate["task"] == "classification"].groupby(["dataset", "attention"])["config_hash"].nunique()
    dataset, attention = single[single == 1].index[0]
    part = with_rate[(with_rate["attention"] == attention) & (with_rate["dataset"] == dataset)]
    (i,) = [k for k, t in enumerate(ticks) if t == f"{dataset}: {attention}"]
    assert bars[i].get_width() == pytest.approx(part["firing_rate"].mean())
    texts = [t.get_text() for t in one.axes[0].texts]
    assert f"n={len(part)}" in texts[i]
    _files_ok(style.save(one, tmp_path / "firing_rate_per_setting"))


def test_the_html_page_uses_one_number_notation(tmp_path):
    build_board([BOARD], by=BY, out_dir=tmp_path, reference=REFERENCE, records_root=tmp_path)
    page = re.sub(r"src='data:[^']*'", "", (tmp_path / "leaderboard.html").read_text())
    cells = re.findall(r"<td>([^<]*)</td>", page)
    scientific = r"(^|± )[-+]?\d+(\.\d+)?[eE][-+]?\d+( |$)"  # a number, not a config hash like 5a230e13
    assert re.search(scientific, "2.3e-05 ± 1e-06") and not re.search(scientific, "5a230e13")
    assert cells and not [c for c in cells if re.search(scientific, c)]
    assert "0.00" in page  # small energies in fixed notation
    for name in ("accuracy_vs_energy", "accuracy_vs_T", "firing_rate_per_setting"):
        _files_ok(tmp_path / "figures" / f"{name}.png")


# -- a tiny trained run: per-layer rates from its record, the raster of one input -----------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import os

    from step.config import compose
    from step.engine import run

    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEP_OUT", str(root / "outputs"))
        mp.setenv("STEP_RESULTS", str(root / "results"))
        mp.setenv("STEP_DATA", os.environ.get("STEP_TEST_DATA", str(root.parent / "step-data")))
        record = run(compose(["experiment=demo", "model.depth=1", "model.dim=16", "model.heads=2",
                              "trainer.epochs=1", "trainer.max_batches=3", "trainer.progress=false", "logger=none"]))
    return root, record


def test_per_layer_firing_rates_come_from_the_records(tiny_run, tmp_path):
    import json

    root, record = tiny_run
    rows = read_rows([str(root / "results" / "leaderboard.csv")])
    fig = rate_plots.layer_firing_rates(rows, ["model"], root / "outputs")
    ax = fig.axes[0]
    saved = json.loads(Path(record["record_path"] if "record_path" in record else
                            root / "outputs" / rows["record_path"].iloc[0]).read_text())
    neurons = [r for r in saved["energy"]["per_layer"] if r["kind"] == "neuron"]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(names) == sorted(r["name"] for r in neurons)
    widths = dict(zip(names, (p.get_width() for p in ax.patches)))
    for r in neurons:
        assert widths[r["name"]] == pytest.approx(r["output_rate"] or 0.0)
    assert ax.get_title().endswith("(n=1)")
    _files_ok(style.save(fig, tmp_path / "firing_rate_per_layer"))


def test_raster_records_every_neuron_layer_of_one_input(tiny_run, tmp_path, monkeypatch):
    import json

    from step.engine.loop import to_time_major
    from step.results import raster
    from step.results.cli import main

    root, record = tiny_run
    run_dir = Path(record["checkpoint"]).parent
    before = sorted(p.name for p in run_dir.iterdir())
    loaded = raster.load_run(run_dir)
    spikes = raster.record_spikes(loaded, sample=3)
    T = int(loaded.cfg.T)
    per_layer = json.loads((run_dir / "record.json").read_text())["energy"]["per_layer"]
    counted = {r["name"]: int(r["neurons"]) for r in per_layer if r["kind"] == "neuron"}
    # every neuron layer the energy meter counted, each [its neurons, T], spikes in {0, 1} (LIF)
    assert {k: v.shape for k, v in spikes.layers.items()} == {k: (n, T) for k, n in counted.items()}
    assert all(set(np.unique(v)) <= {0.0, 1.0} for v in spikes.layers.values())

    # the per-step curve is the mean of that layer's spikes, recorded here by a hook of our own
    name = "blocks.0.mlp.lif1"
    mine = {}
    module = dict(loaded.model.named_modules())[name]
    handle = module.register_forward_hook(lambda m, i, o: mine.setdefault("out", o.detach()))
    x, _ = loaded.bundle.test[3]
    with torch.no_grad():
        loaded.model(to_time_major(x.unsqueeze(0), loaded.bundle.modality, loaded.encoder))
    handle.remove()
    by_hand = mine["out"][:, 0].reshape(T, -1).float().mean(dim=1).numpy()
    curves = {line.get_label(): line.get_ydata() for line in raster.rate_figure(spikes).axes[0].lines}
    assert curves[name] == pytest.approx(by_hand)
    assert len(curves) == len(counted)

    fig = raster.raster_figure(spikes, layers=3, max_neurons=64)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    picked = raster.pick_layers(list(spikes.layers), 3)
    assert [im.shape for im in images] == [spikes.layers[k][::-(-counted[k] // 64)].shape for k in picked]
    assert all(im.shape[1] == T for im in images)

    monkeypatch.chdir(tmp_path)  # default --out: ./figures, never beside the checkpoint
    assert main(["--raster", str(run_dir / "model.pt")]) == 0
    for stem in ("spike_raster", "firing_rate_per_step"):
        _files_ok(tmp_path / "figures" / f"{stem}.png")
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_raster_of_a_folder_without_checkpoint_says_so(tmp_path, capsys):
    from step.results.cli import main

    assert main(["--raster", str(tmp_path)]) == 2
    assert "holds no model.pt or last.pt" in capsys.readouterr().err
