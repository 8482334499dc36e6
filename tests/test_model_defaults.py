"""``model=X`` alone is X's paper model: the CLI-composed build equals ``MODELS.build(X, ...)``.

For every conf/model/*.yaml, at the smallest width the model allows, the module the runner builds
from the composed config (``step-train model=X``: its attention and neuron groups) and the module
``MODELS.build`` gives from Python with the same keywords have the same state_dict keys, shapes and
values, and the same forward output on the same input (same seed). ``attention=Y`` still overrides.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from step.config import compose, validate_config
from step.config.validate import group_params
from step.engine import builders
from step.registry import MODELS
from tiny import tiny_model

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
MODEL_CONFS = sorted(p.stem for p in CONF.glob("*.yaml"))
DATA = dict(num_classes=10, in_chans=3, img_size=32)
#: the paper attention of each family (conf/model/*.yaml; README "each model with its own attention")
OWN = {"spikformer": ("ssa", True), "sdt": ("sdsa1", None), "meta-spikeformer": ("sdsa3", None),
       "qkformer": ("ssa", False), "semm-spikformer": ("semm", True)}
#: registered Spikformers whose released code builds Q/K/V without bias (ZK-Zhou/spikformer
#: imagenet/model.py; cifar10dvs/model.py, which also scales the attention by 0.25 instead of 0.125)
RELEASED_SSA = {"spikformer-8-384": ("ssa", False, 0.125), "spikformer-8-512": ("ssa", False, 0.125),
                "spikformer-8-768": ("ssa", False, 0.125), "spikformer-2-256": ("ssa", False, 0.25)}


def _cli_build(overrides):
    model = next(o.split("=", 1)[1] for o in overrides if o.startswith("model="))
    cfg = compose(overrides + tiny_model(OmegaConf.load(CONF / f"{model}.yaml")))
    validate_config(cfg)
    kwargs = {**group_params(cfg, "model"), **DATA}
    torch.manual_seed(0)
    model = builders.build_task(cfg).build_model(cfg.model.name, kwargs, None, builders.build_neuron_factory(cfg),
                                                 builders.build_attention_factory(cfg))
    return cfg, kwargs, model


@pytest.mark.parametrize("conf", MODEL_CONFS)
def test_cli_build_equals_python_build(conf):
    cfg, kwargs, cli = _cli_build([f"model={conf}"])
    torch.manual_seed(0)
    py = MODELS.build(cfg.model.name, **kwargs)
    a, b = cli.state_dict(), py.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(cfg.T, 2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cli.eval(), py.eval()
    with torch.no_grad():
        torch.testing.assert_close(cli(x), py(x), rtol=0, atol=0)


@pytest.mark.parametrize("conf", [c for c in MODEL_CONFS if c != "int8-twin" and not c.endswith("-int8")])
def test_model_alone_selects_its_paper_attention(conf):
    cfg = compose([f"model={conf}"])
    if conf in RELEASED_SSA:
        name, qkv_bias, scale = RELEASED_SSA[conf]
        assert cfg.attention.scale == scale
    else:
        family = max((f for f in OWN if conf == f or conf.startswith(f + "-")), key=len)
        name, qkv_bias = OWN[family]
    assert cfg.attention.name == name and cfg.attention.get("qkv_bias") == qkv_bias


def test_attention_on_the_command_line_still_overrides():
    _, _, model = _cli_build(["model=sdt", "attention=ssa"])
    kinds = {type(m).__name__ for m in model.modules()}
    assert "SpikingSelfAttention" in kinds and "SDSA1" not in kinds
    cfg = compose(["attention=sdsa2", "model=qkformer"])  # order on the command line does not matter
    assert cfg.attention.name == "sdsa2"
    cfg = compose(["experiment=sdt-cifar10", "attention=sdsa3"])
    assert cfg.attention.name == "sdsa3" and cfg.model.name == "sdt-2-512"
