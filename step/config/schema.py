"""The structured schema of a run config (registered in Hydra's ConfigStore as ``train_schema``).

Engine groups (trainer, optim, sched, logger, paths) are typed dataclasses: a misspelled key fails
when Hydra composes. The ``kd`` group holds ``name`` and, for ``kd=deit``, the distillation keys
(checked by :func:`step.config.validate.validate_config`). Registry-backed groups (model, attention, neuron, surrogate, encoder, backend,
dataset, task, energy) are ``name`` plus the builder's keyword arguments; their keys are checked
against the builder's signature by :func:`step.config.validate.validate_config` before anything
is built, so a misspelling there fails with the valid keys too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainerConf:
    epochs: int = 10
    batch_size: int = 64  # the GLOBAL batch: under torchrun each of N processes loads batch_size / N
    eval_batch_size: int = 256  # global, split over processes like batch_size
    num_workers: int = 0
    pin_memory: bool = False  # page-locked host batches (CUDA runs only): faster, asynchronous copies to the GPU
    persistent_workers: bool = False  # keep the loader worker processes alive across epochs (num_workers > 0)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (torchrun pins each process to cuda:LOCAL_RANK)
    precision: str = "32"  # 32 | bf16 (CPU or CUDA autocast) | fp16 (CUDA autocast + GradScaler)
    compile: bool = False  # torch.compile the model
    compile_neurons: bool = False  # torch.compile the fused IF/LIF loops (bit-identical; ~25 s first compile)
    channels_last: bool = True  # conv stacks run channels-last (NHWC): faster oneDNN / cuDNN kernels
    cpu_allocator: str = "keep"  # keep (reuse freed memory, no page faults per step) | system (glibc defaults)
    progress: bool = True
    grad_clip: Optional[float] = None
    eval_every: int = 1  # evaluate on the test split every N epochs (and always at the end)
    ckpt_every: int = 0  # write <run_dir>/last.pt every N epochs; 0: only at the end (and on interrupt)
    resume: str = "never"  # never | auto | <path to a last.pt or its run folder>
    init_from: Optional[str] = None  # path to a model.pt / last.pt: start from its weights (fresh optimiser, epoch 0)
    deterministic: bool = True
    max_batches: Optional[int] = None  # cap batches per epoch (smoke tests)
    eval_time_order: str = "normal"  # normal | reversed | shuffled: final test only (step.engine.time_order)
    sync_bn: bool = False  # SyncBatchNorm under torchrun (CUDA only); otherwise each process normalises its own batch


@dataclass
class OptimConf:
    name: str = "adamw"  # any timm optimizer name (create_optimizer_v2): adamw, sgd, lamb, ...
    lr: float = 1e-3  # the peak lr, or the lr per lr_base_batch samples when that is set
    weight_decay: float = 0.05
    momentum: Optional[float] = None  # SGD-family momentum; null for optimizers without one (adamw, lamb)
    filter_bias_and_bn: bool = True
    lr_base_batch: Optional[int] = None  # set: lr = optim.lr * trainer.batch_size (global) / lr_base_batch
    trust_clip: Optional[bool] = None  # LAMB's trust-ratio clipping (timm Lamb trust_clip); null elsewhere


@dataclass
class SchedConf:
    name: str = "cosine"  # any timm scheduler name (create_scheduler_v2), or none
    warmup_epochs: int = 0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    cooldown_epochs: int = 0  # epochs at min_lr after the schedule: the run trains epochs + cooldown_epochs
    per_iteration: bool = False  # step the schedule after every optimizer step (timm t_in_epochs=False)


@dataclass
class LoggerConf:
    """conf/logger: csv (default) | wandb (csv + wandb) | [csv,wandb] | none (step/engine/loggers.py)."""

    csv: bool = True  # <run_dir>/metrics.csv, one row per epoch
    wandb: bool = False  # Weights & Biases beside the CSV (step/engine/wandb_logger.py)
    project: Optional[str] = None  # null: WANDB_PROJECT, else "step"
    entity: Optional[str] = None  # null: WANDB_ENTITY, else wandb's default
    dir: Optional[str] = None  # null: WANDB_DIR, else the run folder
    mode: str = "offline"  # wandb mode when WANDB_MODE is not set: offline | online | disabled
    group: Optional[str] = None  # null: a sweep job's sweep folder name; a single run has none
    tags: list[str] = field(default_factory=list)  # added to the run's tags and a sweep job's overrides


@dataclass
class PathsConf:
    data_root: str = MISSING
    output_root: str = MISSING
    leaderboard: str = MISSING


@dataclass
class TrainConf:
    model: dict[str, Any] = MISSING
    attention: dict[str, Any] = MISSING
    neuron: dict[str, Any] = MISSING
    surrogate: dict[str, Any] = MISSING
    encoder: dict[str, Any] = MISSING
    backend: dict[str, Any] = MISSING
    dataset: dict[str, Any] = MISSING
    task: dict[str, Any] = MISSING
    energy: dict[str, Any] = MISSING
    kd: dict[str, Any] = MISSING  # distillation: kd=none | kd=deit (step.engine.recipe, step.engine.teacher)
    optim: OptimConf = field(default_factory=OptimConf)
    sched: SchedConf = field(default_factory=SchedConf)
    trainer: TrainerConf = field(default_factory=TrainerConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    paths: PathsConf = field(default_factory=PathsConf)
    T: int = 4
    seed: int = 0
    name: str = "run"  # experiment name: the leaderboard's `experiment` column
    tags: list[str] = field(default_factory=list)
    reference: Optional[dict[str, Any]] = None  # published numbers (experiments only)


def register_schema() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConf)
