"""Turn a validated run config into components, data, model, task, recipe, optimiser and schedule."""

from __future__ import annotations

import pickle
import re
import zipfile
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from step.attention.factory import AttentionFactory
from step.config.validate import group_params
from step.data.base import DataBundle
from step.engine.distributed import DistInfo, ShardSampler, per_rank_batch
from step.errors import ConfigError, DatasetCorruptError, StepError
from step.neurons.factory import NeuronFactory
from step.registry import DATASETS, ENCODERS, MODELS, TASKS


def build_neuron_factory(cfg: DictConfig) -> NeuronFactory:
    params = group_params(cfg, "neuron")
    surrogate = group_params(cfg, "surrogate")
    return NeuronFactory(
        cfg.neuron.name,
        backend=cfg.backend.name,
        T=cfg.T,
        surrogate=cfg.surrogate.name,
        **surrogate,
        **params,
    )


def build_attention_factory(cfg: DictConfig) -> AttentionFactory:
    return AttentionFactory(cfg.attention.name, **group_params(cfg, "attention"))


#: what reading a damaged file raises (beside StepErrors the readers raise themselves)
_FILE_ERRORS = (OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, UnicodeDecodeError)
#: what a builder raises for a value it cannot build (a size that does not divide, memory it cannot get)
_VALUE_ERRORS = (ValueError, AssertionError, RuntimeError, MemoryError, ZeroDivisionError, IndexError)


def _reason(err: BaseException) -> str:
    """One line saying why a builder failed (an allocation failure says how much it asked for)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    asked = re.search(r"allocate (\d+) bytes", text)
    if isinstance(err, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower():
        size = f" ({int(asked.group(1)) / 1e9:,.1f} GB requested)" if asked else ""
        return f"it needs more memory than this machine has{size}"
    return f"{type(err).__name__}: {text[:300]}"


def _settings(cfg: DictConfig, group: str) -> str:
    return ", ".join(f"{group}.{k}={v}" for k, v in group_params(cfg, group).items()) or "its defaults"


def build_data(cfg: DictConfig) -> DataBundle:
    try:
        bundle = DATASETS.build(cfg.dataset.name, root=cfg.paths.data_root, **group_params(cfg, "dataset"))
    except StepError:
        raise
    except _FILE_ERRORS as err:
        raise DatasetCorruptError(
            f"dataset '{cfg.dataset.name}' could not read its files under the data root {cfg.paths.data_root} "
            f"(paths.data_root, env STEP_DATA): {_reason(err)}. A file there is corrupt or truncated: delete it "
            "(caches are made again) or fetch the dataset again, then re-run.") from None
    except _VALUE_ERRORS as err:
        raise ConfigError(f"dataset '{cfg.dataset.name}' cannot be built with {_settings(cfg, 'dataset')}: "
                          f"{_reason(err)}. Change those values.") from None
    if bundle.modality == "event" and bundle.timesteps not in (None, cfg.T):
        raise ConfigError(
            f"dataset {bundle.name} gives {bundle.timesteps} time bins but T={cfg.T}; "
            f"set T={bundle.timesteps} or the dataset's number of bins to {cfg.T}."
        )
    return bundle


def build_encoder(cfg: DictConfig) -> nn.Module:
    return ENCODERS.build(cfg.encoder.name, T=cfg.T, **group_params(cfg, "encoder"))


def model_data_kwargs(model_name: str, bundle: DataBundle) -> dict[str, Any]:
    """The keywords a model takes from the data (classes, channels, size, modality)."""
    kwargs: dict[str, Any] = {"num_classes": bundle.num_classes, "in_chans": bundle.in_chans}
    if bundle.img_size is not None:
        kwargs["img_size"] = bundle.img_size
    if bundle.modality == "sequence":
        accepted = MODELS.entry(model_name).accepted_keywords()
        if accepted is not None and "modality" not in accepted:
            raise ConfigError(
                f"model '{model_name}' takes images or event frames only, and dataset '{bundle.name}' is a "
                "sequence dataset; use model=spikformer (1-D patch embedding) for sequences."
            )
        kwargs["modality"] = "sequence"
    return kwargs


def build_model(cfg: DictConfig, bundle: DataBundle) -> nn.Module:
    kwargs = {**group_params(cfg, "model"), **model_data_kwargs(cfg.model.name, bundle)}
    # the task builds it: the registered classifier itself, or the model as backbone + neck + head
    try:
        return build_task(cfg).build_model(cfg.model.name, kwargs, bundle, build_neuron_factory(cfg),
                                           build_attention_factory(cfg))
    except StepError:
        raise
    except _VALUE_ERRORS as err:
        raise ConfigError(f"model '{cfg.model.name}' cannot be built with {_settings(cfg, 'model')} (attention "
                          f"'{cfg.attention.name}', dataset image size {bundle.img_size}): {_reason(err)}. "
                          "Change those values.") from None


def init_weights(cfg: DictConfig, model: nn.Module) -> dict | None:
    """Load ``trainer.init_from`` into ``model`` (see :mod:`step.engine.init_weights`); None when unset."""
    path = cfg.trainer.get("init_from")
    if not path:
        return None
    from step.engine.init_weights import load_initial_weights

    return load_initial_weights(path, model)


def build_task(cfg: DictConfig):
    return TASKS.build(cfg.task.name, **group_params(cfg, "task"))


def loader_options(cfg: DictConfig) -> dict[str, Any]:
    """``pin_memory`` / ``persistent_workers`` as the loaders get them (and the record shows):
    pinning only when the run trains on CUDA (page-locked memory helps host-to-device copies
    only), persistent workers only when there are workers."""
    t = cfg.trainer
    on_cuda = str(t.device).startswith("cuda") or (str(t.device) == "auto" and torch.cuda.is_available())
    return {"num_workers": int(t.num_workers), "pin_memory": bool(t.pin_memory) and on_cuda,
            "persistent_workers": bool(t.persistent_workers) and int(t.num_workers) > 0}


def build_loaders(cfg: DictConfig, bundle: DataBundle, generator: torch.Generator,
                  info: DistInfo = DistInfo(), drop_last: bool = False) -> tuple[DataLoader, DataLoader]:
    """Train and test loaders for this process.

    Training order comes from a ``DistributedSampler`` even in one process (a permutation seeded by
    ``seed + epoch``, see ``set_epoch``), so N processes with per-rank batch ``batch_size / N`` see
    the same global batches as one process with ``batch_size``, and a resumed run sees the same
    order as an uninterrupted one. The test split is sharded without padding (:class:`ShardSampler`).
    ``drop_last`` drops a short last training batch (batch mixing pairs samples: it needs even batches).
    """
    t = cfg.trainer
    options = loader_options(cfg)
    sampler = DistributedSampler(bundle.train, num_replicas=info.world_size, rank=info.rank,
                                 shuffle=True, seed=int(cfg.seed), drop_last=False)
    train = DataLoader(
        bundle.train, batch_size=per_rank_batch(t.batch_size, info), sampler=sampler, drop_last=drop_last,
        generator=generator, collate_fn=build_task(cfg).collate_fn, **options,
    )
    eval_batch = max(1, -(-t.eval_batch_size // info.world_size))
    test = DataLoader(bundle.test, batch_size=eval_batch, sampler=ShardSampler(len(bundle.test), info),
                      collate_fn=build_task(cfg).collate_fn, **options)
    return train, test


def effective_lr(cfg: DictConfig) -> float:
    """The optimizer's peak lr: ``optim.lr``, scaled by ``trainer.batch_size / optim.lr_base_batch`` when
    that is set (the linear scaling rule of the released ImageNet scripts; the batch is the GLOBAL one)."""
    o = cfg.optim
    base = o.get("lr_base_batch")
    return float(o.lr) * int(cfg.trainer.batch_size) / int(base) if base else float(o.lr)


#: optimizer keywords that only some optimizers take; null in the config means "this one has none"
OPTIONAL_OPTIM_KEYS = ("momentum", "trust_clip")


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    import inspect

    from timm.optim import create_optimizer_v2, get_optimizer_class

    o = cfg.optim
    try:
        accepted = inspect.signature(get_optimizer_class(o.name, bind_defaults=False)).parameters
    except (AssertionError, ValueError, KeyError) as err:
        raise ConfigError(f"optim.name='{o.name}' is not an optimizer timm knows ({err}); try adamw, sgd or lamb.") from None
    kwargs: dict[str, Any] = {}
    for key in OPTIONAL_OPTIM_KEYS:
        value = o.get(key)
        if value is None:
            continue
        if key not in accepted:
            raise ConfigError(f"optim.{key}={value} does not apply to optim.name={o.name}; set it to null.")
        kwargs[key] = value
    return create_optimizer_v2(model, opt=o.name, lr=effective_lr(cfg), weight_decay=o.weight_decay,
                               filter_bias_and_bn=o.filter_bias_and_bn, **kwargs)


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, updates_per_epoch: int = 1):
    """The run's :class:`~step.engine.schedule.Schedule`: a timm scheduler stepped per epoch or per
    iteration (``sched.per_iteration``), and the epochs to train (``trainer.epochs`` + cooldown)."""
    from step.engine.schedule import build_schedule

    return build_schedule(cfg, optimizer, updates_per_epoch)


def batches_per_epoch(cfg: DictConfig, train_loader) -> int:
    """Optimizer steps per epoch: the loader's batches, capped by ``trainer.max_batches``."""
    cap = cfg.trainer.max_batches
    return len(train_loader) if cap is None else min(len(train_loader), int(cap))


def build_recipe(cfg: DictConfig, bundle: DataBundle, task, model: nn.Module, info: DistInfo = DistInfo(),
                 resolved: dict[str, Any] | None = None):
    """The run's :class:`~step.engine.recipe.Recipe`: batch transform (mixup) and criterion (smoothing, TET, KD)."""
    from step.engine.recipe import build_recipe as _build

    return _build(cfg, bundle, task, model, per_rank_batch=per_rank_batch(cfg.trainer.batch_size, info),
                  resolved=resolved)
