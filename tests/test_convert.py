"""Released checkpoints load: state_dicts in the released key layouts (module names and shapes
written here from reading the released model files) convert onto STEP's models and give outputs
identical to a model whose weights were set directly, module by module."""

from __future__ import annotations

import pytest
import torch

from step.errors import CheckpointError
from step.models.convert import convert_state_dict, detect_family, load_released, unwrap
from step.neurons import NeuronFactory
from step.registry import MODELS

LIF = NeuronFactory("lif", T=2, tau=2.0, v_threshold=1.0, v_reset=0.0, detach_reset=True, surrogate="sigmoid", alpha=4.0)


class Released:
    """A state_dict in a released layout, filled with random values (BN statistics included)."""

    def __init__(self, seed=0):
        self.sd: dict[str, torch.Tensor] = {}
        self.g = torch.Generator().manual_seed(seed)

    def t(self, *shape, scale=0.5):
        return torch.randn(*shape, generator=self.g) * scale

    def conv(self, name, shape, bias=False):
        self.sd[f"{name}.weight"] = self.t(*shape, scale=0.4)
        if bias:
            self.sd[f"{name}.bias"] = self.t(shape[0], scale=0.1)

    def bn(self, name, c):
        self.sd[f"{name}.weight"] = 1.0 + self.t(c, scale=0.2)
        self.sd[f"{name}.bias"] = 0.6 + self.t(c, scale=0.3)  # a positive shift keeps neurons firing
        self.sd[f"{name}.running_mean"] = self.t(c, scale=0.1)
        self.sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=self.g)
        self.sd[f"{name}.num_batches_tracked"] = torch.tensor(7)

    def ln(self, name, c):  # a LayerNorm the released forward never calls
        self.sd[f"{name}.weight"] = self.t(c)
        self.sd[f"{name}.bias"] = self.t(c)


@torch.no_grad()
def put(module, sd, name, linear=False):
    w = sd[f"{name}.weight"]
    module.weight.copy_(w.reshape(module.weight.shape) if linear else w)
    if f"{name}.bias" in sd:
        module.bias.copy_(sd[f"{name}.bias"])
    else:
        assert module.bias is None, name


@torch.no_grad()
def put_bn(bn, sd, name):
    for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        getattr(bn, attr).copy_(sd[f"{name}.{attr}"])


def same_outputs(converted, direct, x):
    converted.eval(), direct.eval()
    with torch.no_grad():
        a, b = converted(x), direct(x)
    assert torch.equal(a, b)
    assert a.std() > 0  # the comparison saw spikes
    return a


# --- Spikformer -----------------------------------------------------------------------------------

def released_sps(r, C, in_ch):
    """The 4-conv spiking patch splitting both Spikformer and SDT release (proj_conv..proj_conv3, rpe_conv)."""
    widths = [in_ch, C // 8, C // 4, C // 2, C]
    for s in range(4):
        tag = "" if s == 0 else str(s)
        r.conv(f"patch_embed.proj_conv{tag}", (widths[s + 1], widths[s], 3, 3))
        r.bn(f"patch_embed.proj_bn{tag}", widths[s + 1])
    r.conv("patch_embed.rpe_conv", (C, C, 3, 3))
    r.bn("patch_embed.rpe_bn", C)


def spikformer_released(C, L, K, in_ch, layout):
    """cifar10/model.py (Linear + BN1d), imagenet/model.py (q/k/v Conv1d without bias, proj Conv1d,
    MLP Conv2d + BN2d) or cifar10dvs/model.py (MLP Conv1d; also pos_embed and a final norm)."""
    r = Released(1)
    released_sps(r, C, in_ch)
    for i in range(L):
        r.ln(f"block.{i}.norm1", C)
        r.ln(f"block.{i}.norm2", C)
        for g in ("q", "k", "v", "proj"):
            if layout == "cifar":
                r.conv(f"block.{i}.attn.{g}_linear", (C, C), bias=True)
            else:
                r.conv(f"block.{i}.attn.{g}_conv", (C, C, 1), bias=g == "proj")
            r.bn(f"block.{i}.attn.{g}_bn", C)
        for fc, shape in (("fc1", (4 * C, C)), ("fc2", (C, 4 * C))):
            if layout == "cifar":
                r.conv(f"block.{i}.mlp.{fc}_linear", shape, bias=True)
            else:
                r.conv(f"block.{i}.mlp.{fc}_conv", shape + ((1, 1) if layout == "imagenet" else (1,)), bias=True)
            r.bn(f"block.{i}.mlp.{fc}_bn", shape[0])
    if layout == "dvs":
        r.sd["pos_embed"] = r.t(1, 4, C)
        r.ln("norm", C)
    r.conv("head", (K, C), bias=True)
    return r.sd


def set_spikformer(model, sd):
    names = ["", "1", "2", "3"]
    for s, stage in enumerate(model.patch_embed.stages):
        put(stage["conv"][0], sd, f"patch_embed.proj_conv{names[s]}")
        put_bn(stage["conv"][1], sd, f"patch_embed.proj_bn{names[s]}")
    put(model.patch_embed.rpe_conv[0], sd, "patch_embed.rpe_conv")
    put_bn(model.patch_embed.rpe_conv[1], sd, "patch_embed.rpe_bn")
    for i, block in enumerate(model.blocks):
        for g in ("q", "k", "v", "proj"):
            src = f"block.{i}.attn.{g}_linear" if f"block.{i}.attn.{g}_linear.weight" in sd else f"block.{i}.attn.{g}_conv"
            put(getattr(block.attn, g).linear, sd, src, linear=True)
            put_bn(getattr(block.attn, g).bn, sd, f"block.{i}.attn.{g}_bn")
        for fc in ("fc1", "fc2"):
            src = f"block.{i}.mlp.{fc}_linear" if f"block.{i}.mlp.{fc}_linear.weight" in sd else f"block.{i}.mlp.{fc}_conv"
            put(getattr(block.mlp, fc).linear, sd, src, linear=True)
            put_bn(getattr(block.mlp, fc).bn, sd, f"block.{i}.mlp.{fc}_bn")
    put(model.head, sd, "head")


SPIKFORMERS = {  # layout: (registered name, build keywords, input [T, B, C, H, W])
    "cifar": ("spikformer-4-384", dict(depth=2, dim=32, heads=2, img_size=16), (2, 3, 3, 16, 16)),
    "imagenet": ("spikformer-8-384", dict(depth=2, dim=32, heads=2, img_size=32), (2, 3, 3, 32, 32)),
    "dvs": ("spikformer-2-256", dict(depth=1, dim=32, heads=2, img_size=32), (2, 3, 2, 32, 32)),
}


@pytest.mark.parametrize("layout", sorted(SPIKFORMERS))
def test_spikformer_released_layouts_convert(layout):
    name, kw, shape = SPIKFORMERS[layout]
    sd = spikformer_released(32, kw["depth"], 5, shape[2], layout)
    assert detect_family(sd) == "spikformer"
    build = lambda: MODELS.build(name, num_classes=5, in_chans=shape[2], neuron=LIF, **kw)  # noqa: E731
    converted, direct = load_released(build(), sd), build()
    set_spikformer(direct, sd)
    torch.manual_seed(0)
    same_outputs(converted, direct, torch.rand(*shape) * 3)
    # the LayerNorms (and the DVS pos_embed / norm) were dropped, nothing else
    dropped = {k for k in sd if ".norm" in k or k.startswith(("pos_embed", "norm."))}
    assert dropped and len(converted.state_dict()) == len(sd) - len(dropped)


# --- SDT ------------------------------------------------------------------------------------------

def sdt_released(C, L, K, in_ch, heads):
    """module/sps.py MS_SPS, module/ms_conv.py MS_SSA_Conv / MS_MLP_Conv (Conv2d 1x1 + BN2d), with the
    never-called talking_heads Conv1d(h, h) in every block."""
    r = Released(2)
    released_sps(r, C, in_ch)
    for i in range(L):
        for g in ("q", "k", "v", "proj"):
            r.conv(f"block.{i}.attn.{g}_conv", (C, C, 1, 1), bias=g == "proj")
            r.bn(f"block.{i}.attn.{g}_bn", C)
        r.conv(f"block.{i}.attn.talking_heads", (heads, heads, 1))
        r.conv(f"block.{i}.mlp.fc1_conv", (4 * C, C, 1, 1), bias=True)
        r.bn(f"block.{i}.mlp.fc1_bn", 4 * C)
        r.conv(f"block.{i}.mlp.fc2_conv", (C, 4 * C, 1, 1), bias=True)
        r.bn(f"block.{i}.mlp.fc2_bn", C)
    r.conv("head", (K, C), bias=True)
    return r.sd


def test_sdt_released_layout_converts():
    sd = sdt_released(32, 2, 4, 3, 2)
    assert detect_family(sd) == "sdt"
    build = lambda: MODELS.build("sdt-2-512", num_classes=4, dim=32, heads=2, img_size=16, neuron=LIF)  # noqa: E731
    converted, direct = load_released(build(), sd), build()
    pe = direct.patch_embed
    for s in range(4):
        tag = "" if s == 0 else str(s)
        put(pe.convs[s][0], sd, f"patch_embed.proj_conv{tag}")
        put_bn(pe.convs[s][1], sd, f"patch_embed.proj_bn{tag}")
    put(pe.rpe_conv[0], sd, "patch_embed.rpe_conv")
    put_bn(pe.rpe_conv[1], sd, "patch_embed.rpe_bn")
    for i, block in enumerate(direct.blocks):
        for g in ("q", "k", "v", "proj"):
            put(getattr(block.attn.branch, g).linear, sd, f"block.{i}.attn.{g}_conv", linear=True)
            put_bn(getattr(block.attn.branch, g).bn, sd, f"block.{i}.attn.{g}_bn")
        for fc in ("fc1", "fc2"):
            put(getattr(block.mlp.branch, fc).linear, sd, f"block.{i}.mlp.{fc}_conv", linear=True)
            put_bn(getattr(block.mlp.branch, fc).bn, sd, f"block.{i}.mlp.{fc}_bn")
    put(direct.head, sd, "head")
    torch.manual_seed(0)
    same_outputs(converted, direct, torch.rand(2, 3, 3, 16, 16) * 3)
    assert not any("talking" in k for k in converted.state_dict())


# --- QKFormer -------------------------------------------------------------------------------------

QK_LAYOUTS = {
    # layout: ({stage: [(conv tag, cin, cout)]}, res conv (stage: cin), stage blocks, attention attr per stage)
    "cifar": "cifar10/model.py: PatchEmbedInit proj/proj1 + res; stages proj3/proj4 + res; tssa, tssa, ssa; mlp1/mlp2",
    "imagenet": "imagenet/qkformer.py: PatchEmbedInit proj/proj1/proj2 + res; proj3/proj4 + res; 1 + 2 tssa, attn; fc1/fc2",
    "dvs": "cifar10-dvs/model.py: PatchEmbedInit proj..proj3 + res; stage proj/proj4 + res; tssa, ssa; mlp1/mlp2",
}


def qkformer_released(layout, D, K, in_ch, mlp=4):
    r = Released(3)
    if layout == "dvs":
        E = D // 2
        embeds = {1: [("", in_ch, E // 8), ("1", E // 8, E // 4), ("2", E // 4, E // 2), ("3", E // 2, E)],
                  2: [("", E, D), ("4", D, D)]}
        res = {1: (E // 4, E), 2: (E, D)}
        blocks = {1: (1, "tssa", E), 2: (1, "ssa", D)}
        mlp_names = ("mlp1", "mlp2")
    else:
        E = D // 4
        first = [("", in_ch, E // 2), ("1", E // 2, E)] + ([("2", E, E)] if layout == "imagenet" else [])
        embeds = {1: first, 2: [("3", E, 2 * E), ("4", 2 * E, 2 * E)], 3: [("3", 2 * E, D), ("4", D, D)]}
        res = {1: (E // 2, E), 2: (E, 2 * E), 3: (2 * E, D)}
        n2, third = (2, "attn") if layout == "imagenet" else (1, "ssa")
        blocks = {1: (1, "tssa", E), 2: (n2, "tssa", 2 * E), 3: (1, third, D)}
        mlp_names = ("fc1", "fc2") if layout == "imagenet" else ("mlp1", "mlp2")
    for s, convs in embeds.items():
        for tag, cin, cout in convs:
            r.conv(f"patch_embed{s}.proj{tag}_conv", (cout, cin, 3, 3))
            r.bn(f"patch_embed{s}.proj{tag}_bn", cout)
        r.conv(f"patch_embed{s}.proj_res_conv", (res[s][1], res[s][0], 1, 1))
        r.bn(f"patch_embed{s}.proj_res_bn", res[s][1])
    for s, (n, attr, C) in blocks.items():
        for j in range(n):
            gens = ("q", "k", "proj") if attr == "tssa" else ("q", "k", "v", "proj")
            for g in gens:
                r.conv(f"stage{s}.{j}.{attr}.{g}_conv", (C, C, 1), bias=g == "proj")
                r.bn(f"stage{s}.{j}.{attr}.{g}_bn", C)
            r.conv(f"stage{s}.{j}.mlp.{mlp_names[0]}_conv", (mlp * C, C, 1, 1), bias=True)
            r.bn(f"stage{s}.{j}.mlp.{mlp_names[0]}_bn", mlp * C)
            r.conv(f"stage{s}.{j}.mlp.{mlp_names[1]}_conv", (C, mlp * C, 1, 1), bias=True)
            r.bn(f"stage{s}.{j}.mlp.{mlp_names[1]}_bn", C)
    r.conv("head", (K, D), bias=True)
    return r.sd, embeds, blocks, mlp_names


@pytest.mark.parametrize("layout,depth,img,in_ch", [("cifar", 3, 8, 3), ("imagenet", 4, 32, 3), ("dvs", 2, 32, 2)])
def test_qkformer_released_layouts_convert(layout, depth, img, in_ch):
    sd, embeds, blocks, mlp_names = qkformer_released(layout, 32, 6, in_ch)
    assert detect_family(sd) == "qkformer"
    build = lambda: MODELS.build("qkformer", layout=layout, depth=depth, dim=32, heads=2, img_size=img,  # noqa: E731
                                 in_chans=in_ch, num_classes=6, mlp_ratio=4.0, neuron=LIF)
    converted, direct = load_released(build(), sd), build()
    for s, convs in embeds.items():
        embed = direct.embeds[s - 1]
        for k, (tag, _, _) in enumerate(convs):
            put(embed.convs[k][0], sd, f"patch_embed{s}.proj{tag}_conv")
            put_bn(embed.convs[k][1], sd, f"patch_embed{s}.proj{tag}_bn")
        put(embed.shortcut[0], sd, f"patch_embed{s}.proj_res_conv")
        put_bn(embed.shortcut[1], sd, f"patch_embed{s}.proj_res_bn")
    for s, (n, attr, _) in blocks.items():
        for j in range(n):
            block = direct.stages[s - 1][j]
            for g in ("q", "k", "v", "proj"):
                if f"stage{s}.{j}.{attr}.{g}_conv.weight" in sd:
                    put(getattr(block.attn, g).linear, sd, f"stage{s}.{j}.{attr}.{g}_conv", linear=True)
                    put_bn(getattr(block.attn, g).bn, sd, f"stage{s}.{j}.{attr}.{g}_bn")
            for ours, released in zip(("fc1", "fc2"), mlp_names):
                put(getattr(block.mlp, ours).linear, sd, f"stage{s}.{j}.mlp.{released}_conv", linear=True)
                put_bn(getattr(block.mlp, ours).bn, sd, f"stage{s}.{j}.mlp.{released}_bn")
    put(direct.head, sd, "head")
    torch.manual_seed(0)
    same_outputs(converted, direct, torch.rand(2, 2, in_ch, img, img) * 3)


# --- Meta-SpikeFormer -----------------------------------------------------------------------------

def meta_released(dims, K, kd=False):
    """classification/models.py: MS_DownSampling (encode_conv with bias + encode_bn), MS_ConvBlock
    (Conv = SepConv pwconv1/bn1/dwconv/pwconv2/bn2; conv1/bn1/conv2/bn2), MS_Block with
    MS_Attention_RepConv_qkv_id (q/k/v/proj_conv = Sequential(RepConv(body), BN2d)) and MS_MLP
    (Conv1d + BN1d); 6 blocks in block3, 2 in block4; head (and head_kd)."""
    r = Released(4)
    c0 = dims[0]
    downs = [("downsample1_1", 3, c0, 7), ("downsample1_2", c0, dims[1], 3), ("downsample2", dims[1], dims[2], 3),
             ("downsample3", dims[2], dims[3], 3), ("downsample4", dims[3], dims[4], 3)]
    for name, cin, cout, k in downs:
        r.conv(f"{name}.encode_conv", (cout, cin, k, k), bias=True)
        r.bn(f"{name}.encode_bn", cout)
    for name, C in (("ConvBlock1_1", dims[0]), ("ConvBlock1_2", dims[1]), ("ConvBlock2_1", dims[2]),
                    ("ConvBlock2_2", dims[2])):
        p = f"{name}.0"
        r.conv(f"{p}.Conv.pwconv1", (2 * C, C, 1, 1))
        r.bn(f"{p}.Conv.bn1", 2 * C)
        r.conv(f"{p}.Conv.dwconv", (2 * C, 1, 7, 7))
        r.conv(f"{p}.Conv.pwconv2", (C, 2 * C, 1, 1))
        r.bn(f"{p}.Conv.bn2", C)
        r.conv(f"{p}.conv1", (4 * C, C, 3, 3))
        r.bn(f"{p}.bn1", 4 * C)
        r.conv(f"{p}.conv2", (C, 4 * C, 3, 3))
        r.bn(f"{p}.bn2", C)
    for name, n, C in (("block3", 6, dims[3]), ("block4", 2, dims[4])):
        for j in range(n):
            for g in ("q", "k", "v", "proj"):
                p = f"{name}.{j}.attn.{g}_conv"
                r.conv(f"{p}.0.body.0", (C, C, 1, 1))
                r.bn(f"{p}.0.body.1.bn", C)
                r.conv(f"{p}.0.body.2.0", (C, 1, 3, 3))
                r.conv(f"{p}.0.body.2.1", (C, C, 1, 1))
                r.bn(f"{p}.0.body.2.2", C)
                r.bn(f"{p}.1", C)
            r.conv(f"{name}.{j}.mlp.fc1_conv", (4 * C, C, 1), bias=True)
            r.bn(f"{name}.{j}.mlp.fc1_bn", 4 * C)
            r.conv(f"{name}.{j}.mlp.fc2_conv", (C, 4 * C, 1), bias=True)
            r.bn(f"{name}.{j}.mlp.fc2_bn", C)
    r.conv("head", (K, dims[4]), bias=True)
    if kd:
        r.conv("head_kd", (K, dims[4]), bias=True)
    return r.sd


META = dict(dims=[8, 16, 32, 64, 64], depths=[1, 1, 2, 6, 2], strides=[2, 2, 2, 2, 1], heads=8, img_size=32)


@pytest.mark.parametrize("kd", [False, True], ids=["released", "distilled"])
def test_meta_spikeformer_released_layout_converts(kd):
    """The released T=1 model, and with ``kd`` the distilled T=4 fine-tune's (``head_kd``, our
    ``distill_head=True``): converted == weights set by hand, whose eval output averages both heads."""
    sd = meta_released(META["dims"], 7, kd=kd)
    assert detect_family(sd) == "meta-spikeformer"
    build = lambda: MODELS.build("meta-spikeformer", num_classes=7, neuron=LIF, distill_head=kd, **META)  # noqa: E731
    converted, direct = load_released(build(), sd), build()
    for i, name in enumerate(["downsample1_1", "downsample1_2", "downsample2", "downsample3", "downsample4"]):
        put(direct.downsample[i].conv[0], sd, f"{name}.encode_conv")
        put_bn(direct.downsample[i].conv[1], sd, f"{name}.encode_bn")
    for name, (stage, j) in {"ConvBlock1_1": (0, 0), "ConvBlock1_2": (1, 0), "ConvBlock2_1": (2, 0),
                             "ConvBlock2_2": (2, 1)}.items():
        block, p = direct.stages[stage][j], f"{name}.0"
        sep, cc = block.sepconv.branch, block.channel_conv.branch
        put(sep.pw1[0], sd, f"{p}.Conv.pwconv1")
        put_bn(sep.pw1[1], sd, f"{p}.Conv.bn1")
        put(sep.dw_pw2[0], sd, f"{p}.Conv.dwconv")
        put(sep.dw_pw2[1], sd, f"{p}.Conv.pwconv2")
        put_bn(sep.dw_pw2[2], sd, f"{p}.Conv.bn2")
        put(cc.conv1[0], sd, f"{p}.conv1")
        put_bn(cc.conv1[1], sd, f"{p}.bn1")
        put(cc.conv2[0], sd, f"{p}.conv2")
        put_bn(cc.conv2[1], sd, f"{p}.bn2")
    for name, stage in (("block3", 3), ("block4", 4)):
        for j, block in enumerate(direct.stages[stage]):
            for g in ("q", "k", "v", "proj"):
                gen, p = getattr(block.attn.branch, g), f"{name}.{j}.attn.{g}_conv"
                put(gen.conv.conv1, sd, f"{p}.0.body.0")
                put_bn(gen.conv.bn1, sd, f"{p}.0.body.1.bn")
                put(gen.conv.dw, sd, f"{p}.0.body.2.0")
                put(gen.conv.pw, sd, f"{p}.0.body.2.1")
                put_bn(gen.conv.bn2, sd, f"{p}.0.body.2.2")
                put_bn(gen.bn, sd, f"{p}.1")
            for fc in ("fc1", "fc2"):
                put(getattr(block.mlp.branch, fc).linear, sd, f"{name}.{j}.mlp.{fc}_conv", linear=True)
                put_bn(getattr(block.mlp.branch, fc).bn, sd, f"{name}.{j}.mlp.{fc}_bn")
    put(direct.head, sd, "head")
    if kd:
        put(direct.head_kd, sd, "head_kd")
        assert torch.equal(converted.head_kd.weight, sd["head_kd.weight"])
        assert not torch.equal(converted.head_kd.weight, converted.head.weight)
    torch.manual_seed(0)
    same_outputs(converted, direct, torch.rand(2, 2, 3, 32, 32) * 3)


def test_a_distilled_meta_checkpoint_needs_the_distillation_head():
    sd = meta_released(META["dims"], 7, kd=True)
    model = MODELS.build("meta-spikeformer", num_classes=7, neuron=LIF, **META)  # distill_head=False
    with pytest.raises(CheckpointError, match="'head_kd.weight' is the distillation head.*distill_head=true"):
        convert_state_dict(sd, model)


# --- wrong checkpoints: one message naming the first key that does not fit --------------------

def test_wrong_checkpoints_name_the_first_key_that_does_not_fit():
    build = lambda: MODELS.build("spikformer-4-384", num_classes=5, depth=2, dim=32, heads=2, img_size=16)  # noqa: E731
    sd = spikformer_released(32, 2, 5, 3, "cifar")
    extra = {**sd, "block.0.attn.q_lif.w": torch.zeros(())}  # a PLIF neuron's parameter
    with pytest.raises(CheckpointError, match="key 'block.0.attn.q_lif.w' \\(\\) has no place"):
        convert_state_dict(extra, build())
    with pytest.raises(CheckpointError, match="key 'head.weight' has shape \\(5, 32\\) but 'head.weight' is \\(9, 32\\)"):
        convert_state_dict(sd, MODELS.build("spikformer-4-384", num_classes=9, depth=2, dim=32, heads=2, img_size=16))
    deeper = spikformer_released(32, 3, 5, 3, "cifar")
    with pytest.raises(CheckpointError, match="'block.2.attn.q_linear.weight' maps to 'blocks.2.attn.q.linear.weight', which"):
        convert_state_dict(deeper, build())
    short = {k: v for k, v in sd.items() if not k.startswith("block.1.mlp.fc2_bn.")}
    with pytest.raises(CheckpointError, match="nothing for 'blocks.1.mlp.fc2.bn.weight'"):
        convert_state_dict(short, build())
    with pytest.raises(CheckpointError, match="cannot tell which released model"):
        detect_family({"foo.weight": torch.zeros(1)})
    assert unwrap({"state_dict": {"module.head.weight": torch.zeros(1)}, "epoch": 3}) == {"head.weight": torch.zeros(1)}


# --- the console script ---------------------------------------------------------------------------

def test_step_convert_writes_a_checkpoint_step_eval_reads(tmp_path, capsys):
    from step.cli import convert_main
    from step.engine.evaluate import evaluate_checkpoint

    sd = spikformer_released(16, 1, 10, 1, "cifar")
    released = tmp_path / "released.pth.tar"
    torch.save({"epoch": 299, "arch": "spikformer", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, released)
    out = tmp_path / "converted" / "model.pt"
    convert_main([str(released), str(out), "model.depth=1", "model.dim=16", "model.heads=2", "neuron=lif",
                  "surrogate=sigmoid"])
    printed = capsys.readouterr().out
    assert "(spikformer) -> spikformer" in printed and "10 classes" in printed
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["converted_from"]["family"] == "spikformer" and ckpt["config"]["model"]["dim"] == 16
    torch.testing.assert_close(ckpt["model"]["blocks.0.attn.q.linear.weight"], sd["block.0.attn.q_linear.weight"])
    result = evaluate_checkpoint(out)  # on the embedded digits (10 classes, 1 channel, 16 px), energy counted
    assert 0.0 <= result["test_top1"] <= 100.0 and result["energy_mj"] > 0 and 0 < result["firing_rate"] < 1
    with pytest.raises(SystemExit) as stop:
        convert_main([str(tmp_path / "nowhere.pth"), str(out)])
    assert stop.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_main([str(released), str(out), "model=spikformer-4-384", "model.depth=1", "model.dim=32", "model.heads=2"])
    assert "has shape" in capsys.readouterr().err  # a 16-wide checkpoint in a 32-wide model: one message


def test_step_convert_loads_a_distilled_meta_checkpoint_into_the_distillation_head(tmp_path, capsys):
    """The released T=4 fine-tune's ``head_kd`` lands in ``head_kd`` of a model built with
    ``model.distill_head=true``; without that override the CLI says so in one line."""
    from step.cli import convert_main

    sd = meta_released(META["dims"], 7, kd=True)
    released = tmp_path / "meta_t4_kd.pth"
    torch.save({"model": sd}, released)
    out = tmp_path / "model.pt"
    build = ["model=meta-spikeformer", "model.dims=[8,16,32,64,64]", "model.depths=[1,1,2,6,2]",
             "model.strides=[2,2,2,2,1]", "model.heads=8", "dataset.img_size=32"]
    with pytest.raises(SystemExit) as stop:
        convert_main([str(released), str(out), *build])
    assert stop.value.code == 2 and "model.distill_head=true" in capsys.readouterr().err
    convert_main([str(released), str(out), *build, "model.distill_head=true"])
    assert "(meta-spikeformer) -> meta-spikeformer" in capsys.readouterr().out
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["config"]["model"]["distill_head"] is True
    for part in ("weight", "bias"):
        assert torch.equal(ckpt["model"][f"head_kd.{part}"], sd[f"head_kd.{part}"])
        assert torch.equal(ckpt["model"][f"head.{part}"], sd[f"head.{part}"])
