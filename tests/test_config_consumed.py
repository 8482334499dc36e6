"""Every value of every shipped experiment and suite is consumed by the run that composes it.

Each experiment (``experiments/experiment/*``) and each job of each suite at ``scale=cpu``
(``experiments/suite/*``) is composed, shrunk (smallest model width, T <= 2, one batch of 4 in each
of two epochs, 32 px), and run for real on tiny fakes of its datasets written in their on-disk formats
(CIFAR pickles, MNIST idx, an ImageNet tree of 1,000 one-image classes, AEDAT4 and .npy event
recordings) or the embedded sets. Shrinking switches no part of a recipe off: a cooldown runs one
epoch, AMP (fp16, CUDA only) runs as CPU autocast in bf16, a distillation teacher is a tiny
registered model, and a fine-tune starts from a tiny checkpoint of its own model (without the
distillation head, as the T=1 checkpoint lacks it); the run's record must show each part of the
experiment's recipe applied (:func:`check_active`). :mod:`config_reads` records which leaves of the composed config
the run read, following values handed to builders until code uses them; a leaf never read fails
the test with its key. Keys that are metadata on purpose are declared in ``METADATA`` with why, and
the one key a setting makes inapplicable in ``NOT_APPLICABLE``.

A fast subset (four experiments covering the recipe features and data kinds, one suite job) runs in
``make test``; the whole sweep (every experiment, every job of every suite's CPU grid) is marked slow.
Run against the code before the recipe reached the loop, the fast subset failed with
``experiment=spikformer-imagenet: the run never read ['dataset.cutmix', 'dataset.label_smoothing',
'dataset.mixup', 'optim.momentum']``.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from config_reads import track_reads, unread
from step.config import compose
from step.config.paths import experiments_dir
from step.engine import run
from tiny import tiny_model, write_cifar, write_imagenet, write_mnist

#: leaves that no run reads on purpose, with the reason (prefixes cover their sub-keys)
METADATA = {
    "reference": "published numbers of an experiment, copied into the record for comparison",
    "tags": "labels for the user's own bookkeeping",
}

#: leaves that a run cannot read in one setting, by design: (key, when, why)
NOT_APPLICABLE = [
    ("model.heads", lambda cfg: cfg.attention.name == "semm",
     "SEMM's experts take the place of heads (step/attention/semm.py); heads acts with any other attention"),
    *[(f"logger.{key}", lambda cfg: not cfg.logger.wandb,
       "a wandb setting (step/engine/wandb_logger.py, tests/test_wandb_logger.py); without logger=wandb no wandb run")
      for key in ("project", "entity", "dir", "mode", "group", "tags")],
]

EXPERIMENTS = sorted(p.stem for p in (experiments_dir() / "experiment").glob("*.yaml"))
SUITES = sorted(p.stem for p in (experiments_dir() / "suite").glob("*.yaml"))
#: the fast subset: mixup + cutmix + smoothing on an ImageNet tree and on CIFAR pickles, event frames, sequences,
#: and a distilled fine-tune (init_from, teacher, distillation head, LAMB, per-iteration schedule, AMP)
FAST = {"spikformer-imagenet", "qkformer-cifar10", "sdt-cifar10dvs", "spikformer-smnist",
        "meta-spikeformer-55m-imagenet-t4-distilled"}
#: the suites' fast subset: the first job of this suite
FAST_SUITES = {"attention"}


def _write_events(root) -> None:
    import numpy as np

    from test_data_events import EVENTS, aedat4_bytes

    for c, cls in enumerate(("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")):
        folder = root / "CIFAR10DVS" / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(10):  # 9:1 per class: 9 train, 1 test
            (folder / f"cifar10_{cls}_{i}.aedat4").write_bytes(aedat4_bytes(*EVENTS))
    xs, ys, ps, ts = EVENTS
    for split, user in (("ibmGestureTrain", "user01_fluorescent"), ("ibmGestureTest", "user24_led")):
        folder = root / "DVSGesture" / split / user
        folder.mkdir(parents=True, exist_ok=True)
        for label in range(11):
            np.save(folder / f"{label}.npy", np.stack([xs, ys, ps, np.asarray(ts) // 100], 1).astype(np.int64))


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-data")
    write_cifar(root, "cifar10")
    write_cifar(root, "cifar100")
    write_mnist(root)
    write_imagenet(root)
    _write_events(root)
    return root


def tiny(cfg) -> list[str]:
    """Overrides that shrink a composed config without removing or adding a key."""
    out = tiny_model(cfg.model) + [
        f"T={min(int(cfg.T), 2)}", "trainer.epochs=2", "trainer.max_batches=1", "trainer.batch_size=4",
        "trainer.eval_batch_size=512", "trainer.device=cpu", "trainer.progress=false",
        "trainer.compile=false", "trainer.compile_neurons=false",
        # AMP stays on as CPU autocast (fp16 needs CUDA); a cooldown keeps one epoch
        "trainer.precision=" + ("32" if str(cfg.trainer.precision) == "32" else "bf16"),
        f"sched.cooldown_epochs={min(int(cfg.sched.cooldown_epochs), 1)}"]
    size = cfg.dataset.get("img_size")
    if size is not None and size > 32 and cfg.task.name == "classification":
        out.append("dataset.img_size=32")
    for key in ("n_train", "n_test"):
        if key in cfg.dataset:
            out.append(f"dataset.{key}=8")
    if cfg.get("kd") is not None and cfg.kd.name != "none":  # no released teacher here: a tiny registered one
        out.append("kd.teacher=meta-spikeformer-tiny")
    return out


def starting_checkpoint(overrides: list[str], path) -> str:
    """A model.pt of the run's own (tiny) model without its distillation head: a fine-tune's start."""
    import torch

    from step.engine import builders

    cfg = compose(overrides + ["trainer.init_from=unused"])
    model = builders.build_model(cfg, builders.build_data(cfg))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head_kd.")}
    torch.save({"model": state, "config": {}}, path)
    return str(path)


def check_active(card, cfg, record) -> None:
    """Each part of the experiment's recipe acted in the tiny run: ``record.json`` says what was applied."""
    what = f"{card.name}: "
    assert len(record["history"]) == cfg.trainer.epochs + cfg.sched.cooldown_epochs, what + "epochs + cooldown"
    assert record["precision"] == str(cfg.trainer.precision) and (record["precision"] == "32") == (
        str(card.trainer.precision) == "32"), what + "precision"
    assert (record["init_from"] is not None) == (card.trainer.get("init_from", None) is not None), what + "init_from"
    if card.task.name != "classification":
        return
    r, d = record["recipe"], card.dataset
    mixing = (d.get("mixup", 0) > 0 or d.get("cutmix", 0) > 0) and d.get("mixup_prob", 1) > 0
    assert (r["mixup"] is not None) == mixing, what + "mixup/cutmix"
    assert r["label_smoothing"] == d.get("label_smoothing", 0.0), what + "label smoothing"
    assert (r["tet"] is not None) == (card.task.get("loss", "ce") == "tet"), what + "TET"
    assert (r["kd"] is not None) == (card.kd.name != "none"), what + "distillation"
    assert r["normalize"] == d.get("normalize", None), what + "normalisation"


def check_consumed(overrides: list[str], fake_data, monkeypatch, tmp_path=None) -> None:
    monkeypatch.setenv("STEP_DATA", str(fake_data))
    card = compose(overrides)
    small = tiny(card)
    if "trainer.init_from" in OmegaConf.missing_keys(card):
        small.append(f"trainer.init_from={starting_checkpoint(overrides + small, tmp_path / 'start.pt')}")
    cfg = compose(overrides + small)
    with track_reads() as reads:
        record = run(cfg)
    skip = tuple(METADATA) + tuple(key for key, when, _ in NOT_APPLICABLE if when(cfg))
    missed = unread(cfg, reads, ignore=skip)
    assert not missed, f"{' '.join(overrides)}: the run never read {missed}"
    if "trainer.init_from" in OmegaConf.missing_keys(card):
        card.trainer.init_from = cfg.trainer.init_from
    check_active(card, cfg, record)


def _params(names, fast):
    return [pytest.param(n, marks=() if n in fast else pytest.mark.slow) for n in names]


@pytest.mark.parametrize("experiment", _params(EXPERIMENTS, FAST))
def test_every_value_of_the_experiment_is_read(experiment, fake_data, monkeypatch, tmp_path):
    check_consumed([f"experiment={experiment}"], fake_data, monkeypatch, tmp_path)


def suite_jobs() -> list[tuple[str, list[str], bool]]:
    from test_sweeps import compose_full, grid

    jobs = []
    for suite in SUITES:
        params = dict(compose_full([f"suite={suite}", "scale=cpu"]).hydra.sweeper.params)
        params["seed"] = str(params["seed"]).split(",")[0]
        for i, job in enumerate(grid(params)):
            jobs.append((suite, job, i == 0 and suite in FAST_SUITES))
    return jobs


SUITE_JOBS = suite_jobs()


@pytest.mark.parametrize("suite,job", [pytest.param(s, j, marks=() if first else pytest.mark.slow, id=f"{s}:{','.join(j)}")
                                       for s, j, first in SUITE_JOBS])
def test_every_value_of_each_suite_job_is_read(suite, job, fake_data, monkeypatch):
    check_consumed([f"suite={suite}", "scale=cpu", *job], fake_data, monkeypatch)


def test_every_value_of_a_run_with_every_recipe_feature_is_read(fake_data, monkeypatch):
    """Mixup + cutmix with an off epoch, smoothing, TET, soft distillation, LAMB with the lr rule and a
    per-iteration schedule, all at once: each of their keys acts."""
    check_consumed(["experiment=demo", "dataset.mixup=0.5", "dataset.cutmix=1.0", "dataset.mixup_off_epoch=1",
                    "dataset.label_smoothing=0.1", "task.loss=tet", "task.tet_lambda=0.1", "kd=deit", "kd.type=soft",
                    "kd.tau=2.0", "kd.alpha=0.3", "optim=lamb", "optim.trust_clip=true", "optim.lr_base_batch=64",
                    "sched.per_iteration=true", "sched.warmup_epochs=1"], fake_data, monkeypatch)
