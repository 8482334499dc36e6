"""Load released checkpoints: map a state_dict of the authors' code onto STEP's models.

Supported families and the released code they come from (module names read from the repositories
at the commits in ``docs/fidelity.md``):

=====================  ===============================================================================
``spikformer``         ZK-Zhou/spikformer: ``cifar10/model.py`` (Linear layers), ``imagenet/model.py``
                       and ``cifar10dvs/model.py`` (1x1 Conv1d/Conv2d layers)
``sdt``                BICLab/Spike-Driven-Transformer: ``model/spikeformer.py``, ``module/*.py``
``qkformer``           zhouchenlin2096/QKFormer: ``cifar10/``, ``cifar100/``, ``imagenet/``,
                       ``cifar10-dvs/``, ``dvs128-gesture/`` model files
``meta-spikeformer``   BICLab/Spike-Driven-Transformer-V2: ``classification/models.py``
=====================  ===============================================================================

What the conversion does: renames keys (``block.3.attn.q_conv`` -> ``blocks.3.attn.q.linear``),
turns 1x1 convolution weights ``[out, in, 1(, 1)]`` into linear weights ``[out, in]`` (a 1x1
convolution and a token-wise linear layer compute the same products; BatchNorm1d/2d over the same
channels hold the same parameters and statistics), and drops modules the released forward never
calls: Spikformer's per-block LayerNorms ``norm1``/``norm2`` (and the DVS model's ``pos_embed`` and
final ``norm``), SDT's ``talking_heads`` convolutions. Everything else must fit exactly: the first
key that has no place in the model, lands on a parameter of another shape, or a model parameter
the checkpoint leaves empty, ends the conversion with one :class:`~step.errors.CheckpointError`
naming that key.

Neurons: the released models use SpikingJelly's LIF (tau 2, threshold 1, hard reset, detached
reset, sigmoid surrogate alpha 4; attention neurons at 0.5); build the STEP model with
``neuron=lif surrogate=sigmoid`` (the paper experiments do) to evaluate a converted checkpoint as
released. Two released behaviours that differ from the papers have switches:
``model.released_stage3_lif`` (QKFormer) and ``model.released_router_reshape`` (STEP's SEMM).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import nn

from step.errors import CheckpointError

FAMILIES = ("spikformer", "sdt", "qkformer", "meta-spikeformer")
DROP = object()  #: a released key that is dropped on purpose (a module the released forward never calls)


def unwrap(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The state_dict inside a released checkpoint file's content (timm's ``state_dict``, MAE-style
    ``model``, or a bare dict), without a DataParallel ``module.`` prefix."""
    state = checkpoint
    for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("the file holds no state_dict of tensors (looked at the file itself and its "
                              "'state_dict', 'model', 'state_dict_ema' and 'model_ema' entries).")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def detect_family(state: Mapping[str, torch.Tensor]) -> str:
    """The released family a state_dict's key layout belongs to."""
    keys = list(state)
    has = lambda pattern: any(re.match(pattern, k) for k in keys)  # noqa: E731
    if has(r"downsample1_1\.encode_conv\."):
        return "meta-spikeformer"
    if has(r"patch_embed1\.proj_conv\."):
        return "qkformer"
    if has(r"block\.\d+\.attn\.talking_heads\."):
        return "sdt"
    if has(r"block\.\d+\.norm1\.") or has(r"block\.\d+\.attn\.q_linear\.") or has(r"pos_embed$"):
        return "spikformer"
    q = next((v for k, v in state.items() if re.match(r"block\.\d+\.attn\.q_conv\.weight$", k)), None)
    if q is not None:  # SDT's Q is a Conv2d, the ImageNet / DVS Spikformer's a Conv1d
        return "sdt" if q.dim() == 4 else "spikformer"
    raise CheckpointError(
        f"cannot tell which released model this state_dict comes from (first keys: {', '.join(keys[:3])}); "
        f"pass the family explicitly, one of {', '.join(FAMILIES)}.")


# --- key rules: (regex on the released key, replacement or DROP) ----------------------------------

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

SPIKFORMER_RULES: list[tuple[str, Any]] = [
    (r"patch_embed\.proj_conv\.(.+)", r"patch_embed.stages.0.conv.0.\1"),
    (r"patch_embed\.proj_bn\.(.+)", r"patch_embed.stages.0.conv.1.\1"),
    (r"patch_embed\.proj_conv(\d)\.(.+)", r"patch_embed.stages.\1.conv.0.\2"),
    (r"patch_embed\.proj_bn(\d)\.(.+)", r"patch_embed.stages.\1.conv.1.\2"),
    (r"patch_embed\.rpe_conv\.(.+)", r"patch_embed.rpe_conv.0.\1"),
    (r"patch_embed\.rpe_bn\.(.+)", r"patch_embed.rpe_conv.1.\1"),
    (r"block\.(\d+)\.attn\.(q|k|v|proj)_(?:linear|conv)\.(.+)", r"blocks.\1.attn.\2.linear.\3"),
    (r"block\.(\d+)\.attn\.(q|k|v|proj)_bn\.(.+)", r"blocks.\1.attn.\2.bn.\3"),
    (r"block\.(\d+)\.mlp\.(fc1|fc2)_(?:linear|conv)\.(.+)", r"blocks.\1.mlp.\2.linear.\3"),
    (r"block\.(\d+)\.mlp\.(fc1|fc2)_bn\.(.+)", r"blocks.\1.mlp.\2.bn.\3"),
    (r"block\.\d+\.norm[12]\..+", DROP),  # LayerNorms built, never called
    (r"pos_embed", DROP),  # CIFAR10-DVS: built, never added
    (r"norm\.(weight|bias)", DROP),  # CIFAR10-DVS: final LayerNorm, never called
    (r"head\.(weight|bias)", r"head.\1"),
]

SDT_RULES: list[tuple[str, Any]] = [
    (r"patch_embed\.proj_conv\.(.+)", r"patch_embed.convs.0.0.\1"),
    (r"patch_embed\.proj_bn\.(.+)", r"patch_embed.convs.0.1.\1"),
    (r"patch_embed\.proj_conv(\d)\.(.+)", r"patch_embed.convs.\1.0.\2"),
    (r"patch_embed\.proj_bn(\d)\.(.+)", r"patch_embed.convs.\1.1.\2"),
    (r"patch_embed\.rpe_conv\.(.+)", r"patch_embed.rpe_conv.0.\1"),
    (r"patch_embed\.rpe_bn\.(.+)", r"patch_embed.rpe_conv.1.\1"),
    (r"block\.(\d+)\.attn\.(q|k|v|proj)_conv\.(.+)", r"blocks.\1.attn.branch.\2.linear.\3"),
    (r"block\.(\d+)\.attn\.(q|k|v|proj)_bn\.(.+)", r"blocks.\1.attn.branch.\2.bn.\3"),
    (r"block\.\d+\.attn\.talking_heads\..+", DROP),  # built, never called
    (r"block\.(\d+)\.mlp\.(fc1|fc2)_conv\.(.+)", r"blocks.\1.mlp.branch.\2.linear.\3"),
    (r"block\.(\d+)\.mlp\.(fc1|fc2)_bn\.(.+)", r"blocks.\1.mlp.branch.\2.bn.\3"),
    (r"head\.(weight|bias)", r"head.\1"),
]

#: Meta-SpikeFormer's downsampling layers and its one-block conv stages (ConvBlock2_1 and 2_2 are
#: the two blocks of our sub-stage 2)
_META_DOWN = {"downsample1_1": 0, "downsample1_2": 1, "downsample2": 2, "downsample3": 3, "downsample4": 4}
_META_CONV = {"ConvBlock1_1": "stages.0.0", "ConvBlock1_2": "stages.1.0", "ConvBlock2_1": "stages.2.0",
              "ConvBlock2_2": "stages.2.1"}
#: RepConv = body(conv1x1, BNAndPad(bn), Sequential(dw3x3, pw1x1, BN)), then the outer BN -> TokenRepConvBN
_REPCONV = [(r"0\.body\.0\.weight", "conv.conv1.weight"), (r"0\.body\.1\.bn\." + _BN, r"conv.bn1.\2"),
            (r"0\.body\.2\.0\.weight", "conv.dw.weight"), (r"0\.body\.2\.1\.weight", "conv.pw.weight"),
            (r"0\.body\.2\.2\." + _BN, r"conv.bn2.\2"), (r"1\." + _BN, r"bn.\2")]


def _meta_rules() -> list[tuple[str, Any]]:
    rules: list[tuple[str, Any]] = []
    for name, i in _META_DOWN.items():
        rules += [(rf"{name}\.encode_conv\.(weight|bias)", rf"downsample.{i}.conv.0.\1"),
                  (rf"{name}\.encode_bn\.(.+)", rf"downsample.{i}.conv.1.\1")]
    for name, at in _META_CONV.items():
        rules += [(rf"{name}\.0\.Conv\.pwconv1\.weight", f"{at}.sepconv.branch.pw1.0.weight"),
                  (rf"{name}\.0\.Conv\.bn1\.(.+)", rf"{at}.sepconv.branch.pw1.1.\1"),
                  (rf"{name}\.0\.Conv\.dwconv\.weight", f"{at}.sepconv.branch.dw_pw2.0.weight"),
                  (rf"{name}\.0\.Conv\.pwconv2\.weight", f"{at}.sepconv.branch.dw_pw2.1.weight"),
                  (rf"{name}\.0\.Conv\.bn2\.(.+)", rf"{at}.sepconv.branch.dw_pw2.2.\1"),
                  (rf"{name}\.0\.conv1\.weight", f"{at}.channel_conv.branch.conv1.0.weight"),
                  (rf"{name}\.0\.bn1\.(.+)", rf"{at}.channel_conv.branch.conv1.1.\1"),
                  (rf"{name}\.0\.conv2\.weight", f"{at}.channel_conv.branch.conv2.0.weight"),
                  (rf"{name}\.0\.bn2\.(.+)", rf"{at}.channel_conv.branch.conv2.1.\1")]
    for name, stage in (("block3", 3), ("block4", 4)):
        for gen in ("q", "k", "v", "proj"):
            rules += [(rf"{name}\.(\d+)\.attn\.{gen}_conv\.{released}", rf"stages.{stage}.\1.attn.branch.{gen}.{ours}")
                      for released, ours in _REPCONV]
        rules += [(rf"{name}\.(\d+)\.mlp\.(fc1|fc2)_conv\.(weight|bias)", rf"stages.{stage}.\1.mlp.branch.\2.linear.\3"),
                  (rf"{name}\.(\d+)\.mlp\.(fc1|fc2)_bn\.(.+)", rf"stages.{stage}.\1.mlp.branch.\2.bn.\3")]
    return rules + [(r"head\.(weight|bias)", r"head.\1"), (r"head_kd\.(weight|bias)", _DistillHead())]


class _DistillHead:
    """Meta-SpikeFormer's ``head_kd`` (the DeiT distillation head of its T=4 fine-tune): ours has the same
    name and shape, built with ``distill_head=True`` (:class:`step.models.meta_spikeformer.MetaSpikeFormer`)."""

    def __call__(self, match: re.Match, target: Mapping) -> str:
        key = f"head_kd.{match.group(1)}"
        if key in target:
            return key
        raise CheckpointError(f"key '{match.group(0)}' is the distillation head of a Meta-SpikeFormer fine-tuned with "
                              "knowledge distillation; build the model with its distillation head "
                              "(model.distill_head=true) to load it.")


def _qkformer_rules(keys: list[str]) -> list[tuple[str, Any]]:
    """QKFormer names its patch-embedding convs proj, proj1, ... (proj3, proj4 in later stages, proj
    and proj4 in the DVS ones): the k-th conv of a stage, in the order of those numbers, is ours ``convs.k``."""
    rules: list[tuple[str, Any]] = []
    numbers: dict[str, set[int]] = {}
    for k in keys:
        m = re.match(r"patch_embed(\d+)\.proj(\d*)_conv\.weight$", k)
        if m:
            numbers.setdefault(m.group(1), set()).add(int(m.group(2) or 0))
    for stage, found in numbers.items():
        s = int(stage) - 1
        for rank, n in enumerate(sorted(found)):
            tag = str(n) if n else ""
            rules += [(rf"patch_embed{stage}\.proj{tag}_conv\.(.+)", rf"embeds.{s}.convs.{rank}.0.\1"),
                      (rf"patch_embed{stage}\.proj{tag}_bn\.(.+)", rf"embeds.{s}.convs.{rank}.1.\1")]
        rules += [(rf"patch_embed{stage}\.proj_res_conv\.(.+)", rf"embeds.{s}.shortcut.0.\1"),
                  (rf"patch_embed{stage}\.proj_res_bn\.(.+)", rf"embeds.{s}.shortcut.1.\1")]
    rules += [
        (r"stage(\d)\.(\d+)\.(?:tssa|ssa|attn)\.(q|k|v|proj)_conv\.(.+)", _StageBlock(r"attn.\3.linear.\4")),
        (r"stage(\d)\.(\d+)\.(?:tssa|ssa|attn)\.(q|k|v|proj)_bn\.(.+)", _StageBlock(r"attn.\3.bn.\4")),
        (r"stage(\d)\.(\d+)\.mlp\.(?:mlp1|fc1)_conv\.(.+)", _StageBlock(r"mlp.fc1.linear.\3")),
        (r"stage(\d)\.(\d+)\.mlp\.(?:mlp1|fc1)_bn\.(.+)", _StageBlock(r"mlp.fc1.bn.\3")),
        (r"stage(\d)\.(\d+)\.mlp\.(?:mlp2|fc2)_conv\.(.+)", _StageBlock(r"mlp.fc2.linear.\3")),
        (r"stage(\d)\.(\d+)\.mlp\.(?:mlp2|fc2)_bn\.(.+)", _StageBlock(r"mlp.fc2.bn.\3")),
        (r"head\.(weight|bias)", r"head.\1"),
    ]
    return rules


class _StageBlock:
    """``stage<s>.<j>.<...>`` -> ``stages.<s-1>.<j>.<...>``."""

    def __init__(self, rest: str):
        self.rest = rest

    def __call__(self, match: re.Match, target: Mapping) -> str:
        return f"stages.{int(match.group(1)) - 1}.{match.group(2)}." + match.expand(self.rest)


def rules_for(family: str, keys: list[str]) -> list[tuple[str, Any]]:
    if family == "spikformer":
        return SPIKFORMER_RULES
    if family == "sdt":
        return SDT_RULES
    if family == "qkformer":
        return _qkformer_rules(keys)
    if family == "meta-spikeformer":
        return _meta_rules()
    raise CheckpointError(f"unknown released family {family!r}; one of {', '.join(FAMILIES)}.")


def _target_key(rules, key: str, target: Mapping) -> Any:
    for pattern, replacement in rules:
        m = re.fullmatch(pattern, key)
        if m is None:
            continue
        if replacement is DROP:
            return DROP
        return replacement(m, target) if callable(replacement) else m.expand(replacement)
    return None


def _fit(value: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """``value`` in ``shape``: as is, or a 1x1 convolution's weight ``[out, in, 1(, 1)]`` as a linear one."""
    if value.shape == shape:
        return value
    if value.dim() > len(shape) and value.shape[:len(shape)] == shape and all(d == 1 for d in value.shape[len(shape):]):
        return value.reshape(shape)
    return None


def convert_state_dict(released: Mapping[str, Any], model: nn.Module, family: str = "auto") -> dict[str, torch.Tensor]:
    """Map a released checkpoint (its content, or its state_dict) onto ``model``'s state_dict keys.

    Raises :class:`CheckpointError` naming the first key that does not fit (see the module doc).
    """
    source = unwrap(released)
    keys = list(source)
    family = detect_family(source) if family == "auto" else family
    rules = rules_for(family, keys)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        new = _target_key(rules, key, target)
        if new is DROP:
            continue
        if new is None:
            raise CheckpointError(f"released {family} checkpoint: key '{key}' {tuple(source[key].shape)} has no place in "
                                  f"{type(model).__name__}; is it a checkpoint of another model or of a variant "
                                  "(a PLIF neuron's parameter, say) that STEP does not build?")
        if new not in target:
            raise CheckpointError(f"released {family} checkpoint: key '{key}' maps to '{new}', which this "
                                  f"{type(model).__name__} does not have; build the model the checkpoint was trained as "
                                  "(depth, width, layout).")
        value = _fit(source[key], target[new].shape)
        if value is None:
            raise CheckpointError(f"released {family} checkpoint: key '{key}' has shape {tuple(source[key].shape)} but "
                                  f"'{new}' is {tuple(target[new].shape)}; build the model the checkpoint was trained as "
                                  "(width, heads, mlp ratio, classes, input channels).")
        if new in out:
            raise CheckpointError(f"released {family} checkpoint: key '{key}' maps to '{new}', which another key filled.")
        out[new] = value.detach().clone().to(target[new].dtype)
    missing = [k for k in target if k not in out and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"released {family} checkpoint has nothing for '{missing[0]}'"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                              + "; build the model the checkpoint was trained as (depth, layout).")
    for k in target:
        out.setdefault(k, target[k])
    return out


def load_released(model: nn.Module, released: Mapping[str, Any], family: str = "auto") -> nn.Module:
    """Load a released checkpoint into ``model`` (in place); returns the model."""
    model.load_state_dict(convert_state_dict(released, model, family))
    return model


#: the first convolution of each family: its input channels are the checkpoint's input channels
FIRST_CONV = {
    "spikformer": "patch_embed.proj_conv.weight",
    "sdt": "patch_embed.proj_conv.weight",
    "qkformer": "patch_embed1.proj_conv.weight",
    "meta-spikeformer": "downsample1_1.encode_conv.weight",
}


def read_released(path) -> dict[str, torch.Tensor]:
    """The state_dict of a released checkpoint file (``.pth`` / ``.pth.tar``), or one CheckpointError."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"released checkpoint {path} does not exist.")
    try:  # released files pickle their argparse Namespace next to the weights: not weights_only
        content = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unreadable file
        raise CheckpointError(f"released checkpoint {path} cannot be read ({type(err).__name__}: {err}).") from None
    return unwrap(content)


def convert_file(released_path, overrides, output, family: str = "auto") -> dict[str, Any]:
    """Convert a released checkpoint file into a STEP ``model.pt`` for the run config ``overrides``.

    The model is built as the config says (``experiment=...`` or ``model=... attention=...``); the
    class count and input channels come from the checkpoint (its head and first convolution), the
    image size from ``dataset.img_size``, so no dataset is read. The output holds ``model`` (the
    converted state_dict), ``config`` (the resolved run config) and ``converted_from``; ``step-eval``
    evaluates it and counts its energy like any STEP checkpoint.
    """
    from pathlib import Path

    from omegaconf import OmegaConf

    from step.config import compose, validate_config
    from step.data.base import DataBundle
    from step.engine import builders

    state = read_released(released_path)
    family = detect_family(state) if family == "auto" else family
    if family not in FAMILIES:
        raise CheckpointError(f"unknown released family {family!r}; one of {', '.join(FAMILIES)}.")
    cfg = compose(list(overrides))
    validate_config(cfg)
    head, first = state.get("head.weight"), state.get(FIRST_CONV[family])
    if head is None or first is None:
        raise CheckpointError(f"released {family} checkpoint has no 'head.weight' or '{FIRST_CONV[family]}'; "
                              "is it a classification checkpoint of that family?")
    img_size = cfg.dataset.get("img_size")
    stub = DataBundle(name=str(cfg.dataset.name), train=[], test=[], num_classes=int(head.shape[0]),
                      in_chans=int(first.shape[1]), img_size=None if img_size is None else int(img_size),
                      modality="event" if int(first.shape[1]) == 2 else "image")
    model = builders.build_model(cfg, stub)
    converted = convert_state_dict(state, model, family)
    model.load_state_dict(converted)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    info = {"file": str(released_path), "family": family, "released_keys": len(state),
            "params": sum(p.numel() for p in model.parameters())}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    torch.save({"model": model.state_dict(), "config": resolved, "epoch": 0, "converted_from": info}, tmp)
    tmp.replace(output)
    return {**info, "output": str(output), "model": str(cfg.model.name), "num_classes": stub.num_classes}
