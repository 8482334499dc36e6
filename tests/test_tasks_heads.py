"""Forward / backward of the segmentation and detection heads on every backbone kind, at tiny size."""

import pytest
import torch
from torch import nn

from step.components import default_attention_factory, default_neuron_factory
from step.data.base import DataBundle
from step.layers.fold import SeqModule
from step.neurons.factory import spiking_nodes
from step.registry import MODELS, TASKS
from step.tasks.dense_model import DenseModel
from step.tasks.heads.features import feature_maps, tokens_to_map

T, B, SIZE = 1, 2, 16


class StandInPyramid(nn.Module):
    """A hierarchical backbone stand-in: three conv-BN-neuron stages at strides 2, 4, 8."""

    def __init__(self, num_classes=11, in_chans=1, img_size=SIZE, neuron=None, attention=None):
        super().__init__()
        widths = [in_chans, 8, 12, 16]
        self.stages = nn.ModuleList(
            nn.ModuleDict({"conv": SeqModule(nn.Conv2d(widths[i], widths[i + 1], 3, 2, 1), nn.BatchNorm2d(widths[i + 1])),
                           "lif": neuron()}) for i in range(3))
        self.head = nn.Linear(16, num_classes)

    def forward_features(self, x):
        out = []
        for s in self.stages:
            x = s["lif"](s["conv"](x))
            out.append(x)
        return out[::-1]  # coarsest first on purpose: the adapter sorts


if "test-standin-pyramid" not in MODELS.names():
    MODELS.add("test-standin-pyramid", StandInPyramid, paper="test stand-in")

BACKBONES = {
    "spikformer": dict(depth=1, dim=32, heads=2, patch_size=4),
    "test-standin-pyramid": {},
    "meta-spikeformer-tiny": {},
    "qkformer": dict(layout="cifar", depth=3, dim=32, heads=2),
}


def _bundle(in_chans=1):
    return DataBundle(name="stand-in", train=[], test=[], num_classes=5, in_chans=in_chans, img_size=SIZE)


def _targets():
    masks = torch.randint(0, 5, (B, SIZE, SIZE))
    masks[0, 0, 0] = 255
    boxes = [{"boxes": torch.tensor([[2.0, 3.0, 10.0, 12.0]]), "labels": torch.tensor([3])},
             {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    return masks, boxes


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("task_name", ["segmentation", "detection"])
def test_head_forward_backward(backbone, task_name):
    torch.manual_seed(0)
    if backbone not in MODELS.names():
        pytest.skip(f"{backbone} not registered")
    in_chans = 3 if backbone == "qkformer" else 1
    bundle = _bundle(in_chans)
    neuron = default_neuron_factory(T=T)
    task = TASKS.build(task_name, neck_dim=8, **({"head_dim": 8} if task_name == "segmentation" else {"tower_depth": 1}))
    kwargs = dict(num_classes=5, in_chans=in_chans, img_size=SIZE, **BACKBONES[backbone])
    model = task.build_model(backbone, kwargs, bundle, neuron, default_attention_factory())
    assert isinstance(model, DenseModel) and isinstance(model.backbone.head, nn.Identity)
    names = [n for n, _ in spiking_nodes(model)]
    assert any(n.startswith("neck.") for n in names) and any(n.startswith("head.") for n in names)
    x = torch.rand(T, B, in_chans, SIZE, SIZE)
    masks, boxes = _targets()
    out = model(x)
    target = masks if task_name == "segmentation" else boxes
    if task_name == "segmentation":
        assert out.shape == (B, 5, SIZE, SIZE)
    else:
        assert out["cls_logits"].shape[-1] == 4 and out["box_ltrb"].shape[:2] == out["cls_logits"].shape[:2]
    loss = task.loss(out, target)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("head.") and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    metrics = task.make_metrics(5)
    task.update_metrics(metrics, out, target)
    result = task.compute_metrics(metrics)
    assert task.metric_name in result and 0.0 <= result[task.metric_name] <= 100.0


def test_tokens_to_map_grid_and_order():
    tokens = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(1, 1, 8, 6)[..., :3]  # N=8 tokens, D=3
    m = tokens_to_map(tokens.reshape(1, 1, 8, 3), (16, 32))  # aspect 1:2 -> 2 x 4 grid
    assert m.shape == (1, 1, 3, 2, 4)
    assert torch.equal(m[0, 0, :, 1, 2], tokens.reshape(8, 3)[1 * 4 + 2])  # row-major token order
    maps = feature_maps([torch.zeros(1, 1, 4, 2, 2), torch.zeros(1, 1, 4, 8, 8)], (16, 16))
    assert [tuple(f.shape[-2:]) for f in maps] == [(8, 8), (2, 2)]
    with pytest.raises(ValueError):
        tokens_to_map(torch.zeros(1, 1, 7, 3), (16, 16))


def test_fcos_towers_share_convs_but_normalise_each_level_with_its_own_statistics():
    from step.tasks.heads.fcos import SpikingFCOSHead

    torch.manual_seed(0)
    head = SpikingFCOSHead(8, 3, default_neuron_factory(T=1), depth=1, num_levels=2)
    unit = head.cls_tower[0]
    assert len(unit.norms) == 2 and unit.conv[0].weight.shape == (8, 8, 3, 3)
    # two levels whose inputs differ in scale: a shared BN would pool their running statistics
    fine, coarse = torch.rand(1, 4, 8, 8, 8) * 4, torch.rand(1, 4, 8, 4, 4) * 0.5
    head.train()
    for norm in unit.norms:
        norm[0].momentum = None  # cumulative average: running mean = the mean of what it saw
    for _ in range(3):
        head([fine, coarse], (32, 32))
    m0, m1 = (n[0].running_mean for n in unit.norms)
    assert not torch.allclose(m0, m1)
    # each level's running statistics track that level's conv output alone
    with torch.no_grad():
        conv_out = unit.conv(unit.lif(fine))
    assert torch.allclose(m0, conv_out.mean(dim=(0, 1, 3, 4)), atol=1e-3)
