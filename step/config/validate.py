"""Checks a composed config before anything is built: names, keys and value ranges.

Each problem becomes one :class:`~step.errors.ConfigError` whose message names the bad key or
value and the valid ones, so a run never starts on a config that would silently misbehave.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from step.errors import ConfigError
from step.registry import ALL_REGISTRIES, BACKENDS

#: config group -> registry; the group's keys other than ``name`` are the builder's keywords
REGISTRY_GROUPS = {
    "model": "model",
    "attention": "attention",
    "neuron": "neuron",
    "surrogate": "surrogate",
    "encoder": "encoder",
    "dataset": "dataset",
    "task": "task",
}

#: the dataset group's batch recipe, applied by the training loop (step.engine.recipe), not by the
#: dataset builder: any dataset config may hold them
DATASET_RECIPE_KEYS = ("mixup", "cutmix", "label_smoothing", "mixup_prob", "mixup_switch_prob", "mixup_mode",
                       "mixup_off_epoch")

#: keys of a group consumed by the runner itself rather than passed to the builder
RUNNER_KEYS = {
    "energy": {"name", "enabled", "encoder_per_step", "skip_zero_weights"},
    "dataset": {"name", *DATASET_RECIPE_KEYS},
}

#: the keys of each kd option (conf/kd/*.yaml)
KD_KEYS = {"none": {"name"}, "deit": {"name", "teacher", "type", "alpha", "tau"}}


def group_params(cfg: DictConfig, group: str) -> dict[str, Any]:
    """The builder keywords of a registry-backed group (everything but ``name`` and runner keys)."""
    node = OmegaConf.to_container(cfg[group], resolve=True)
    assert isinstance(node, dict)
    skip = RUNNER_KEYS.get(group, {"name"})
    return {k: v for k, v in node.items() if k not in skip}


def _require_name(cfg: DictConfig, group: str) -> str:
    name = cfg[group].get("name")
    if not name:
        raise ConfigError(f"Config group '{group}' has no 'name' key; every {group} config must name its registry entry.")
    return str(name)


def _check_range(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_encoder_input(cfg: DictConfig) -> None:
    """Refuse a dataset that standardises its images (``normalize``, or random erasing with noise)
    in front of an encoder that codes intensities in [0, 1] (rate, latency, phase, delta)."""
    data = cfg.dataset
    encoder = str(cfg.encoder.name)
    if getattr(ALL_REGISTRIES["encoder"].get(encoder), "accepts_normalized", False):
        return
    if data.get("normalize", False):
        raise ConfigError(
            f"dataset.normalize=true standardises the images with the dataset mean and std, but encoder "
            f"'{encoder}' codes intensities in [0, 1]; use encoder=direct (the released recipes' encoding) "
            "or set dataset.normalize=false."
        )
    if data.get("reprob", 0) and data.get("remode", "const") != "const":
        raise ConfigError(
            f"dataset.remode={data.get('remode')} erases boxes with normal noise, outside the [0, 1] intensities "
            f"encoder '{encoder}' codes; use dataset.remode=const (black boxes) or encoder=direct."
        )


def missing_values(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys left '???' in ``node`` (Hydra's own ``hydra`` node aside; interpolations are not resolved)."""
    out: list[str] = []
    for key in node.keys():
        path = f"{prefix}{key}"
        if path == "hydra":
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            out += missing_values(child, path + ".")
        elif OmegaConf.is_missing(node, key):
            out.append(path)
    return sorted(out)


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first problem found in ``cfg``."""
    missing = missing_values(cfg)
    if missing:  # '???' in a config: a value only the user can give (e.g. a fine-tune's starting checkpoint)
        raise ConfigError(f"{', '.join(missing)} must be given on the command line (the config leaves "
                          f"{'it' if len(missing) == 1 else 'them'} '???'), e.g. {missing[0]}=<value>; the "
                          "experiment's comment says what it needs.")
    for group, kind in REGISTRY_GROUPS.items():
        registry = ALL_REGISTRIES[kind]
        name = _require_name(cfg, group)
        params = group_params(cfg, group)
        if group == "model":  # the runner adds the data-dependent keywords and the components
            params = {**params, "num_classes": 2, "neuron": None, "attention": None}
        if group == "attention":
            params = {**params, "dim": 8, "heads": 1, "neuron": None}
        if group == "dataset":
            params = {**params, "root": "."}
        if group == "encoder":
            params = {**params, "T": 1}
        registry.check_kwargs(name, params)  # raises UnknownNameError / ConfigError

    check_encoder_input(cfg)
    backend = _require_name(cfg, "backend")
    BACKENDS.entry(backend)  # raises for an unknown backend, with the valid names
    if "energy" in cfg and cfg.energy.get("enabled", True):
        energy_name = _require_name(cfg, "energy")
        ALL_REGISTRIES["energy"].check_kwargs(energy_name, group_params(cfg, "energy"))

    t = cfg.trainer
    _check_range(cfg.T >= 1, f"T must be >= 1 (timesteps), got T={cfg.T}.")
    _check_range(t.epochs >= 1, f"trainer.epochs must be >= 1, got {t.epochs}: an untrained model has no place "
                                "on the leaderboard. To evaluate a saved model, use step-eval <model.pt>.")
    _check_range(t.batch_size >= 1, f"trainer.batch_size must be >= 1, got {t.batch_size}.")
    _check_range(t.eval_batch_size >= 1, f"trainer.eval_batch_size must be >= 1, got {t.eval_batch_size}.")
    _check_range(t.eval_every >= 1, f"trainer.eval_every must be >= 1, got {t.eval_every}.")
    _check_range(t.ckpt_every >= 0, f"trainer.ckpt_every must be >= 0, got {t.ckpt_every}.")
    _check_range(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"),
                 f"trainer.device must be auto, cpu or cuda, got '{t.device}'.")
    _check_range(str(t.precision) in ("32", "bf16", "fp16"),
                 f"trainer.precision must be 32, bf16 or fp16, got '{t.precision}'.")
    _check_range(bool(str(t.resume).strip()),
                 "trainer.resume must be never, auto or the path of a last.pt (or its run folder), got ''.")
    _check_range(t.get("init_from") is None or bool(str(t.init_from).strip()),
                 "trainer.init_from must be the path of a model.pt (or last.pt) to start from, or null; got ''.")
    _check_range(t.num_workers >= 0, f"trainer.num_workers must be >= 0, got {t.num_workers}.")
    _check_range(t.max_batches is None or t.max_batches >= 1,
                 f"trainer.max_batches must be >= 1 or null, got {t.max_batches}.")
    _check_range(t.grad_clip is None or t.grad_clip > 0,
                 f"trainer.grad_clip must be > 0 or null, got {t.grad_clip}.")
    _check_range(cfg.optim.lr > 0, f"optim.lr must be > 0, got {cfg.optim.lr}.")
    _check_range(cfg.optim.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}.")
    _check_range(cfg.logger.mode in ("offline", "online", "disabled"),
                 f"logger.mode must be offline, online or disabled, got '{cfg.logger.mode}'.")
    _check_range(t.get("eval_time_order", "normal") in ("normal", "reversed", "shuffled"),
                 f"trainer.eval_time_order must be normal, reversed or shuffled, got '{t.get('eval_time_order')}'.")
    _check_range(cfg.optim.get("lr_base_batch") is None or cfg.optim.lr_base_batch >= 1,
                 f"optim.lr_base_batch must be null or >= 1 (the batch optim.lr is given for), got {cfg.optim.get('lr_base_batch')}.")
    _check_range(cfg.sched.cooldown_epochs >= 0 and cfg.sched.warmup_epochs >= 0,
                 "sched.warmup_epochs and sched.cooldown_epochs must be >= 0.")
    _check_recipe(cfg)


def _check_recipe(cfg: DictConfig) -> None:
    """Ranges of the dataset recipe keys and the kd group (what they do: step.engine.recipe)."""
    d = cfg.dataset
    for key in ("mixup", "cutmix"):
        _check_range(float(d.get(key, 0.0)) >= 0, f"dataset.{key} (an alpha) must be >= 0, got {d.get(key)}.")
    _check_range(0.0 <= float(d.get("label_smoothing", 0.0)) < 1.0,
                 f"dataset.label_smoothing must be in [0, 1), got {d.get('label_smoothing')}.")
    for key in ("mixup_prob", "mixup_switch_prob"):
        _check_range(0.0 <= float(d.get(key, 0.5)) <= 1.0, f"dataset.{key} must be in [0, 1], got {d.get(key)}.")
    _check_range(d.get("mixup_mode", "batch") in ("batch", "pair", "elem"),
                 f"dataset.mixup_mode must be batch, pair or elem, got '{d.get('mixup_mode')}'.")
    off = d.get("mixup_off_epoch")
    _check_range(off is None or (isinstance(off, int) and off >= 0),
                 f"dataset.mixup_off_epoch must be null or an epoch >= 0, got {off!r}.")
    kd = cfg.get("kd")
    if kd is None:
        return
    name = str(kd.get("name", ""))
    _check_range(name in KD_KEYS, f"kd must be one of {', '.join(KD_KEYS)}, got '{name}'.")
    extra = sorted(set(kd.keys()) - KD_KEYS[name])
    _check_range(not extra, f"kd={name} has no option {', '.join(extra)}; valid: {', '.join(sorted(KD_KEYS[name]))}"
                 + (" (choose kd=deit to distil)." if name == "none" else "."))
