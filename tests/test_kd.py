"""Distillation (kd=deit) with a tiny teacher, and Meta-SpikeFormer's distillation head.

Checked through real tiny runs: what the distillation loss receives and its value against the DeiT
equations, the teacher frozen (weights unchanged, no gradients, outside the optimiser and the
energy count), a registered-model teacher and a STEP model.pt teacher (its own config), hard and
soft distillation; the head's parameter count and its eval-time average of the two heads.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from step.config import compose
from step.engine import run
from step.errors import ConfigError
from step.registry import MODELS
from step.tasks.criterion import DistillationLoss

BASE = ["T=2", "trainer.epochs=1", "trainer.max_batches=1", "trainer.batch_size=16", "trainer.progress=false",
        "dataset.test_fraction=0.05"]
SPIKFORMER = ["model.depth=1", "model.dim=16", "model.heads=2"]
META = ["model=meta-spikeformer-tiny", "model.dims=[8,16,16,16,16]"]


@pytest.fixture
def kd_calls(monkeypatch):
    calls = []
    forward = DistillationLoss.forward

    def spy(self, outputs, target, teacher_logits):
        value = forward(self, outputs, target, teacher_logits)
        outs = tuple(o.detach().clone() for o in outputs) if isinstance(outputs, tuple) else outputs.detach().clone()
        calls.append((self, outs, target.clone(), teacher_logits.clone(), value.detach().clone()))
        return value

    monkeypatch.setattr(DistillationLoss, "forward", spy)
    return calls


def test_meta_spikeformer_55m_with_distillation_head_has_55991248_parameters():
    with torch.device("meta"):
        plain = MODELS.build("meta-spikeformer-55m", num_classes=1000)
        headed = MODELS.build("meta-spikeformer-55m", num_classes=1000, distill_head=True)
    assert sum(p.numel() for p in plain.parameters()) == 55_350_248
    assert sum(p.numel() for p in headed.parameters()) == 55_991_248  # + Linear(640, 1000)


def test_distillation_head_returns_both_heads_in_training_and_their_mean_in_eval():
    model = MODELS.build("meta-spikeformer-tiny", num_classes=5, in_chans=1, distill_head=True)
    x = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cls, dist = model.train()(x)
        assert cls.shape == dist.shape == (3, 5) and not torch.equal(cls, dist)
        model.eval()
        spikes = model.head_lif(model.forward_features(x)[-1].flatten(-2).mean(-1))
        by_hand = (model.head(spikes).mean(0) + model.head_kd(spikes).mean(0)) / 2
        torch.testing.assert_close(model(x), by_hand)


def test_hard_distillation_from_a_registered_teacher(kd_calls, isolated_roots):
    record = run(compose([*BASE, *SPIKFORMER, "kd=deit", "kd.teacher=meta-spikeformer-tiny", "kd.alpha=0.3"]))
    loss, outputs, target, teacher, value = kd_calls[0]
    assert torch.is_tensor(outputs) and teacher.shape == outputs.shape == (16, 10)  # one head: the class head
    by_hand = 0.7 * F.cross_entropy(outputs, target) + 0.3 * F.cross_entropy(outputs, teacher.argmax(1))
    torch.testing.assert_close(value, by_hand)
    t = loss.teacher.model
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    kd = record["recipe"]["kd"]
    assert kd["teacher"] == "meta-spikeformer-tiny" and kd["type"] == "hard" and kd["alpha"] == 0.3 and kd["tau"] is None
    assert kd["teacher_params"] == sum(p.numel() for p in t.parameters()) and record["params"] < kd["teacher_params"]
    plain = run(compose([*BASE, *SPIKFORMER]))  # the energy count sees the student only
    assert [r["name"] for r in record["energy"]["per_layer"]] == [r["name"] for r in plain["energy"]["per_layer"]]


def test_soft_distillation_from_a_checkpoint_teacher_into_the_distillation_head(kd_calls, isolated_roots, monkeypatch):
    teacher_record = run(compose([*BASE, *SPIKFORMER, "name=teacher", "T=3", "encoder=rate", "energy.enabled=false"]))
    path = teacher_record["checkpoint"]
    saved = torch.load(path, weights_only=False)["model"]
    snapshots = []
    from step.engine import teacher as teacher_module

    build = teacher_module.build_teacher
    monkeypatch.setattr(teacher_module, "build_teacher", lambda cfg, bundle: snapshots.append(build(cfg, bundle)) or snapshots[-1])
    record = run(compose([*BASE, *META, "model.distill_head=true", "kd=deit", f"kd.teacher={path}", "kd.type=soft",
                          "kd.tau=2.0", "kd.alpha=0.5", "energy.enabled=false"]))
    loss, (cls, dist), target, teacher, value = kd_calls[0]
    assert cls.shape == dist.shape == teacher.shape == (16, 10)
    tau = 2.0
    kl = (F.softmax(teacher / tau, 1) * (F.log_softmax(teacher / tau, 1) - F.log_softmax(dist / tau, 1))).sum()
    by_hand = 0.5 * F.cross_entropy(cls, target) + 0.5 * kl * tau ** 2 / dist.numel()
    torch.testing.assert_close(value, by_hand)
    t = snapshots[0]
    assert t.encoder is not None and t.encoder.T == 3  # the teacher encodes with its own encoder and T
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in saved.items())  # loaded, and never trained
    assert record["recipe"]["kd"]["student_head"] == "distillation head"
    assert "STEP checkpoint" in record["recipe"]["kd"]["teacher_kind"]


@pytest.mark.parametrize("overrides,fragment", [
    (["kd=deit"], "needs kd.teacher"),
    (["kd=deit", "kd.teacher=spikformr"], "Did you mean 'spikformer'"),
    (["kd=deit", "kd.teacher=spikformer", "kd.tau=2.0"], "hard distillation has none"),
    (["kd=deit", "kd.teacher=spikformer", "kd.type=soft"], "needs a temperature"),
])
def test_bad_distillation_settings_are_refused(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run(compose([*BASE, *SPIKFORMER, *overrides]))


def test_hard_distillation_from_a_pretrained_timm_teacher_on_the_image_batch(kd_calls, isolated_roots, monkeypatch):
    """``kd.teacher=timm:<name>`` (the released fine-tune's CAFormer teacher is one): timm builds it with its
    pretrained weights, and it sees the image batch before the student's encoder, not spikes."""
    import timm

    from step.engine.recipe import Recipe

    real_create, asked, batches = timm.create_model, [], []

    def create_model(name, pretrained=False, **kw):  # no download here: a tiny timm net stands in for the weights
        asked.append((name, pretrained, kw))
        torch.manual_seed(0)
        return real_create("test_resnet", pretrained=False, num_classes=10, in_chans=1)

    monkeypatch.setattr(timm, "create_model", create_model)
    loss = Recipe.loss
    monkeypatch.setattr(Recipe, "loss", lambda self, out, y, x, xt: batches.append(x.clone()) or loss(self, out, y, x, xt))
    record = run(compose([*BASE, *SPIKFORMER, "kd=deit", "kd.teacher=timm:caformer_b36.sail_in22k_ft_in1k"]))
    assert asked == [("caformer_b36.sail_in22k_ft_in1k", True, {})]
    distill, outputs, target, teacher, value = kd_calls[0]
    assert batches[0].shape == (16, 1, 16, 16)  # [B, C, H, W]: the images, not [T, B, ...] spikes
    with torch.no_grad():
        torch.testing.assert_close(teacher, distill.teacher.model(batches[0]))
    by_hand = 0.5 * F.cross_entropy(outputs, target) + 0.5 * F.cross_entropy(outputs, teacher.argmax(1))
    torch.testing.assert_close(value, by_hand)
    assert record["recipe"]["kd"]["teacher"] == "timm:caformer_b36.sail_in22k_ft_in1k"
    assert "timm model" in record["recipe"]["kd"]["teacher_kind"]


def test_a_timm_teacher_that_does_not_fit_is_refused(monkeypatch):
    import timm

    real_create = timm.create_model
    with pytest.raises(ConfigError, match="timm cannot build it.*timm.list_models"):
        run(compose([*BASE, *SPIKFORMER, "kd=deit", "kd.teacher=timm:no_such_net"]))
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained=False, **kw: real_create("test_resnet", in_chans=1))
    with pytest.raises(ConfigError, match="predicts 1000 classes and dataset 'digits' has 10"):
        run(compose([*BASE, *SPIKFORMER, "kd=deit", "kd.teacher=timm:test_resnet"]))
