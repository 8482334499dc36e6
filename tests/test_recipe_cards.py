"""Every reproduce experiment is a recipe card of its released run: its composed config holds the
released values of ``experiments/released.csv``, each recorded there with the line of the release
it comes from, and the card names that release (repository, commit, files)."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from collections import defaultdict

import pytest
from omegaconf import OmegaConf

from step.config import compose, validate_config
from step.config.paths import experiments_dir, project_root

TABLE = project_root() / "experiments" / "released.csv"
ROWS: dict[str, list[dict]] = defaultdict(list)
for _row in csv.DictReader(TABLE.open()):
    ROWS[_row["experiment"]].append(_row)
#: the experiments that reproduce a paper: every card but the platform's own demos and twins
OWN = {"demo", "ann-twin", "int8-twin", "segmentation-digits-scenes", "detection-digits-scenes"}
CARDS = sorted(p.stem for p in (experiments_dir() / "experiment").glob("*.yaml") if p.stem not in OWN)
_MISSING = object()


def same(got, want) -> bool:
    if isinstance(want, bool) or want is None or isinstance(want, str):
        return got == want and type(got) is type(want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    return isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, want, rel_tol=1e-9, abs_tol=0)


def test_every_reproduce_card_has_its_released_values():
    assert set(ROWS) == set(CARDS), "experiments/released.csv must cover every reproduce card, and only those"
    for exp, rows in ROWS.items():
        keys = [r["key"] for r in rows]
        assert len(keys) == len(set(keys)), f"{exp}: a key is listed twice"
        for r in rows:
            assert r["source"].strip(), f"{exp} {r['key']}: no source"
        # the settings the issue lists are all recorded for every card
        for key in ("T", "seed", "trainer.epochs", "sched.cooldown_epochs", "trainer.batch_size", "trainer.precision",
                    "optim.name", "optim.lr", "optim.weight_decay", "sched.warmup_epochs", "sched.min_lr",
                    "dataset.name", "dataset.label_smoothing"):
            assert key in keys, f"{exp}: {key} is not in the released table"


@pytest.mark.parametrize("experiment", CARDS)
def test_card_names_its_release(experiment):
    ref = OmegaConf.load(experiments_dir() / "experiment" / f"{experiment}.yaml").reference
    release = ref.release
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", release.repository) and re.fullmatch(r"[0-9a-f]{40}", release.commit)
    assert release.files and ref.follows
    # the table's source lines are read from that release (a card may borrow a line from another one)
    cited = " ".join(r["source"] for r in ROWS[experiment])
    assert f"{release.repository}@{release.commit[:7]}" in cited
    for file in release.files:
        assert file in cited or file.endswith((".sh", ".md", ".py")), f"{experiment}: {file} is not cited in the table"


@pytest.mark.parametrize("experiment", CARDS)
def test_composed_card_equals_the_released_values(experiment):
    from test_config import user_values

    cfg = compose([f"experiment={experiment}"])
    validate_config(compose([f"experiment={experiment}", *user_values(cfg)]))
    wrong = []
    for row in ROWS[experiment]:
        want = json.loads(row["value"])
        got = OmegaConf.select(cfg, row["key"], default=_MISSING)
        if got is _MISSING:
            wrong.append(f"{row['key']}: missing (released {want!r}; {row['source']})")
            continue
        got = OmegaConf.to_container(got, resolve=True) if OmegaConf.is_config(got) else got
        if not same(got, want):
            wrong.append(f"{row['key']}: card {got!r}, released {want!r} ({row['source']})")
    assert not wrong, f"{experiment} differs from its release:\n  " + "\n  ".join(wrong)


def test_the_table_catches_a_card_that_drifts(tmp_path, monkeypatch):
    """A card changed by one setting fails against the table (the check is not vacuous)."""
    copy = tmp_path / "experiments"
    shutil.copytree(experiments_dir(), copy)
    card = copy / "experiment" / "sdt-cifar10.yaml"
    card.write_text(card.read_text().replace("  lr: 0.0003", "  lr: 0.0005"))
    monkeypatch.setattr("step.config.paths.experiments_dir", lambda: copy)
    cfg = compose(["experiment=sdt-cifar10"])
    row = next(r for r in ROWS["sdt-cifar10"] if r["key"] == "optim.lr")
    assert not same(cfg.optim.lr, json.loads(row["value"])) and "lr: 3e-4" in row["source"]
