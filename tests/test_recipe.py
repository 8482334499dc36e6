"""The recipe reaches the loop: what the criterion of a real tiny run receives (mixed inputs, soft
targets, the smoothing value, per-timestep logits), checked against the equations of mixup, cutmix,
label smoothing and TET; refusals where a recipe cannot apply; the record's ``recipe`` block."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from step.config import compose
from step.engine import run
from step.engine.recipe import Recipe
from step.errors import ConfigError
from step.tasks.criterion import CrossEntropy, TETLoss

BASE = ["T=2", "trainer.epochs=1", "trainer.max_batches=2", "trainer.batch_size=16", "trainer.progress=false",
        "energy.enabled=false"]
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", *BASE]
META_TINY = ["model=meta-spikeformer-tiny", "model.dims=[8,16,16,16,16]", *BASE]


def tiny_run(*extra):
    if any(o.startswith("model=meta") for o in extra):
        return run(compose([*META_TINY, *extra]))
    return run(compose([*TINY, *extra]))


@pytest.fixture
def seen(monkeypatch):
    """Spies: every (raw, transformed) batch of Recipe.transform and every (logits, target) the cross-entropy gets."""
    log = {"batches": [], "losses": [], "tet": []}
    transform, ce, tet = Recipe.transform, CrossEntropy.forward, TETLoss.forward

    def spy_transform(self, x, y, epoch):
        raw = (x.clone(), y.clone())
        out = transform(self, x, y, epoch)
        log["batches"].append((epoch, raw, (out[0].clone(), out[1].clone())))
        return out

    def spy_ce(self, logits, target):
        log["losses"].append((logits.detach().clone(), target.clone(), self.label_smoothing, self.soft_targets))
        return ce(self, logits, target)

    def spy_tet(self, outputs, target):
        value = tet(self, outputs, target)
        log["tet"].append((outputs.detach().clone(), target.clone(), value.detach().clone()))
        return value

    monkeypatch.setattr(Recipe, "transform", spy_transform)
    monkeypatch.setattr(CrossEntropy, "forward", spy_ce)
    monkeypatch.setattr(TETLoss, "forward", spy_tet)
    return log


def smoothed(y: torch.Tensor, k: int, eps: float) -> torch.Tensor:
    return F.one_hot(y, k).float() * (1 - eps) + eps / k


def test_mixup_trains_on_mixed_inputs_with_soft_smoothed_targets(seen):
    record = tiny_run("dataset.mixup=0.8", "dataset.label_smoothing=0.1")
    assert seen["batches"] and len(seen["losses"]) == len(seen["batches"]) == 2
    for (_, (x, y), (xm, tm)), (_, target, _, soft) in zip(seen["batches"], seen["losses"]):
        assert soft and target.dtype == torch.float32 and target.shape == (16, 10)
        torch.testing.assert_close(target, tm)
        # one lam per batch (mode batch): target = lam * s(y) + (1 - lam) * s(flip(y)), s = smoothing 0.1
        a, b = smoothed(y, 10, 0.1), smoothed(y.flip(0), 10, 0.1)
        i = int((a != b).any(1).nonzero()[0])
        j = int((a[i] != b[i]).nonzero()[0])
        lam = float((target[i, j] - b[i, j]) / (a[i, j] - b[i, j]))
        assert 0.0 <= lam <= 1.0
        torch.testing.assert_close(target, lam * a + (1 - lam) * b)
        torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))  # Zhang et al. 2018
    assert not all(torch.equal(x, xm) for _, (x, _), (xm, _) in seen["batches"])
    saved = json.loads(open(record["record_path"]).read())["recipe"]
    assert saved["mixup"] == {"mixup_alpha": 0.8, "cutmix_alpha": 0.0, "prob": 1.0, "switch_prob": 0.5, "mode": "batch",
                              "off_epoch": None, "label_smoothing": 0.1}
    assert saved["loss"] == "soft_target_ce" and saved["label_smoothing"] == 0.1 and saved["encoder"] == "direct"


def test_cutmix_on_event_frames_pastes_one_box_through_every_bin(seen):
    tiny_run("dataset=digits-dvs", "dataset.cutmix=1.0", "model.patch_size=4")
    (_, (x, y), (xm, target)), = seen["batches"][:1]
    assert x.dim() == 5  # [B, T, 2, H, W]
    B, T, C, H, W = x.shape
    pasted = (xm == x.flip(0)) & (xm != x)
    where = pasted.any(0).any(0).any(0)  # [H, W]: pixels taken from the partner anywhere
    rows, cols = where.any(1).nonzero().flatten(), where.any(0).nonzero().flatten()
    box = torch.zeros(H, W, dtype=torch.bool)
    box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    torch.testing.assert_close(xm, torch.where(box, x.flip(0), x))  # the same box in every sample, bin, polarity
    lam = 1 - float(box.sum()) / (H * W)  # Yun et al. 2019: the target weight is the kept area
    torch.testing.assert_close(target, lam * F.one_hot(y, 10).float() + (1 - lam) * F.one_hot(y.flip(0), 10).float())


def test_mixup_blends_sequences_as_the_images_they_are_read_from(seen):
    """STEP's released sCIFAR-10 recipe mixes images before reading them as sequences; mixing the
    sequences is the same, because reading pixels in a fixed order (permuted or not) is linear."""
    from step.data.sequences import fixed_permutation, image_to_sequence

    a, b = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for perm in (None, fixed_permutation(64, 3)):
        torch.testing.assert_close(image_to_sequence(0.3 * a + 0.7 * b, "pixel", perm),
                                   0.3 * image_to_sequence(a, "pixel", perm) + 0.7 * image_to_sequence(b, "pixel", perm))
    record = tiny_run("dataset=digits-seq", "+dataset.mixup=0.8")
    (_, (x, y), (xm, target)), = seen["batches"][:1]
    assert x.dim() == 3  # [B, L, C]
    a, b = F.one_hot(y, 10).float(), F.one_hot(y.flip(0), 10).float()
    i = int((a != b).any(1).nonzero()[0])
    lam = float(target[i, y[i]])
    torch.testing.assert_close(target, lam * a + (1 - lam) * b)
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))
    assert not torch.equal(x, xm) and record["recipe"]["mixup"]["mixup_alpha"] == 0.8


def test_label_smoothing_without_mixing_reaches_the_cross_entropy(seen):
    tiny_run("dataset.label_smoothing=0.2")
    logits, target, eps, soft = seen["losses"][0]
    assert not soft and eps == 0.2 and target.dtype == torch.int64
    logp = logits.log_softmax(-1)
    by_hand = ((1 - eps) * -logp.gather(1, target[:, None]).squeeze(1) + eps * -logp.mean(1)).mean()
    torch.testing.assert_close(F.cross_entropy(logits, target, label_smoothing=eps), by_hand)
    assert not any(seen["batches"][0][1][0].ne(seen["batches"][0][2][0]).flatten())  # inputs unchanged


def test_mixing_stops_at_mixup_off_epoch(seen):
    record = tiny_run("dataset.mixup=1.0", "dataset.mixup_off_epoch=1", "trainer.epochs=2", "trainer.max_batches=1")
    by_epoch = {e: (raw, out) for e, raw, out in seen["batches"]}
    (x0, _), (xm0, _) = by_epoch[0]
    (x1, y1), (xm1, t1) = by_epoch[1]
    assert not torch.equal(x0, xm0)
    assert torch.equal(x1, xm1) and torch.equal(t1, F.one_hot(y1, 10).float())  # unmixed, still soft targets
    assert record["recipe"]["mixup"]["off_epoch"] == 1


def test_default_run_is_plain_cross_entropy(seen):
    record = tiny_run()
    logits, target, eps, soft = seen["losses"][0]
    assert not soft and eps == 0.0 and target.dtype == torch.int64
    assert record["recipe"] == {"encoder": "direct", "normalize": None, "mixup": None, "loss": "ce",
                                "label_smoothing": 0.0, "tet": None, "kd": None, "per_timestep_logits": False}


@pytest.mark.parametrize("overrides,fragment", [
    (["dataset=digits-seq", "+dataset.mixup=0.8", "+dataset.cutmix=1.0"], "cutmix pastes a box of an image"),
    (["task=segmentation", "dataset=digits-scenes", "dataset.n_train=32", "dataset.n_test=16",
      "+dataset.label_smoothing=0.1"],
     "task=segmentation trains with its own loss"),
    (["dataset.mixup=0.8", "trainer.batch_size=15"], "even batch"),
    (["task.loss=tet", "model=int8-twin", "neuron=int8", "attention=softmax"], None),
    (["task.tet_lambda=0.5"], "task.loss=tet"),
    (["kd=none", "+kd.teacher=spikformer"], "kd=none has no option teacher"),
    (["model=meta-spikeformer-tiny", "model.distill_head=true"], "distill_head=true adds a head"),
])
def test_recipes_that_cannot_apply_are_refused(overrides, fragment, isolated_roots):
    if fragment is None:  # the int8 twin is a Spikformer: TET applies to it too
        tiny_run("task.loss=tet", "model=int8-twin", "trainer.max_batches=1")
        return
    with pytest.raises(ConfigError, match=fragment):
        tiny_run(*overrides)
    assert not (isolated_roots / "results" / "leaderboard.csv").exists()  # refused before anything was written


# -- TET -------------------------------------------------------------------------------------------

def test_tet_loss_against_a_hand_computed_value():
    # O(1) = [2, 0], O(2) = [0, 0], y = 0, lambda = 0.5, phi = 1:
    # CE(O1) = log(1 + e^-2), CE(O2) = log 2; L_TET = their mean; MSE = mean((2-1)^2, 1, 1, 1) = 1
    outputs = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])
    l_tet = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    loss = TETLoss(CrossEntropy(), lamb=0.5, means=1.0)(outputs, torch.tensor([0]))
    assert loss.item() == pytest.approx(0.5 * l_tet + 0.5 * 1.0, abs=1e-6)
    assert TETLoss(CrossEntropy(), lamb=0.0)(outputs, torch.tensor([0])).item() == pytest.approx(l_tet, abs=1e-6)


def test_tet_run_feeds_per_timestep_logits_and_evaluates_the_average(seen):
    record = tiny_run("task.loss=tet", "task.tet_lambda=0.25", "task.tet_means=0.5", "T=3")
    outputs, target, value = seen["tet"][0]
    assert outputs.shape == (3, 16, 10) and target.shape == (16,)
    by_hand = (0.75 * sum(F.cross_entropy(outputs[t], target) for t in range(3)) / 3
               + 0.25 * ((outputs - 0.5) ** 2).mean())
    torch.testing.assert_close(value, by_hand)
    assert record["recipe"]["tet"] == {"lambda": 0.25, "means": 0.5, "base": "ce"} and record["recipe"]["loss"] == "tet"
    assert 0.0 <= record["metrics"]["top1"] <= 100.0  # evaluation on the time-averaged output


@pytest.mark.parametrize("name,kwargs", [
    ("spikformer", dict(depth=1, dim=16, heads=2)), ("sdt", dict(depth=1, dim=16, heads=2)),
    ("qkformer", dict(depth=3, dim=32, heads=2)), ("semm-spikformer", dict(depth=1, dim=16, heads=2)),
    ("meta-spikeformer", dict(dims=[8, 16, 32, 32, 32], depths=[1, 1, 1, 1, 1], heads=2)),
])
def test_per_timestep_logits_average_to_the_default_output(name, kwargs):
    from step.registry import MODELS

    model = MODELS.build(name, num_classes=5, img_size=16, in_chans=1, **kwargs).train()
    x = torch.rand(4, 2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        default = model(x)
        model.per_timestep_logits = True
        per_t = model(x)
        model.eval()
        assert model(x).shape == (2, 5)  # evaluation averages whatever the flag
    assert default.shape == (2, 5) and per_t.shape == (4, 2, 5)
    torch.testing.assert_close(per_t.mean(0), default, rtol=1e-5, atol=1e-6)
    # the default forward is still the model's own head, computed as before (bit for bit)
    model.per_timestep_logits = False
    with torch.no_grad():
        feats = model.forward_features(x)
        if name in ("spikformer", "semm-spikformer"):
            before = model.head(feats.mean(2).mean(0))
        elif name == "sdt":
            before = model.head(model.head_lif(feats.mean(2))).mean(0)
        elif name == "qkformer":
            before = model.head(feats[-1].flatten(3).mean(3).mean(0))
        else:
            before = model.head(model.head_lif(feats[-1].flatten(-2).mean(-1))).mean(0)
        assert torch.equal(model(x), before)
