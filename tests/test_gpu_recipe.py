"""The GPU recipe (conf/trainer/gpu.yaml): its values, who selects it, and its loader knobs acting on
the DataLoaders of a real run and landing in record.json. (bf16 autocast, channels-last and
torch.compile are tested in tests/test_precision.py and tests/test_lif_op.py; on a GPU in
tests/test_gpu.py.)"""

from __future__ import annotations

import importlib

import pytest

from step.config import compose
from step.engine import builders, run

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2",
        "trainer.batch_size=16", "trainer.eval_batch_size=64", "trainer.progress=false",
        "dataset.test_fraction=0.05", "energy.enabled=false", "logger=none", "trainer.epochs=1"]


def test_gpu_trainer_holds_the_gpu_defaults():
    t = compose(["trainer=gpu"]).trainer
    assert (t.precision, t.channels_last, t.pin_memory, t.persistent_workers, t.num_workers, t.compile) == \
        ("bf16", True, True, True, 8, False)
    assert compose(["trainer=gpu", "trainer.compile=true"]).trainer.compile is True  # the option
    default = compose([]).trainer
    assert (default.precision, default.pin_memory, default.persistent_workers, default.num_workers) == ("32", False, False, 0)


def test_published_experiments_and_full_scale_run_the_gpu_recipe_and_cpu_scale_does_not():
    for overrides in (["experiment=spikformer-cifar10"], ["experiment=meta-spikeformer-15m-imagenet-t1"],
                      ["suite=attention", "scale=full"], ["experiment=qkformer-cifar10", "scale=full"]):
        t = compose(overrides).trainer
        assert t.pin_memory and t.persistent_workers and t.num_workers == 8 and t.channels_last, overrides
    spikformer = compose(["experiment=spikformer-cifar10"]).trainer
    # the card's released values stay on top of the GPU recipe: AMP (fp16), batch, epochs
    assert (spikformer.precision, spikformer.batch_size, spikformer.epochs) == ("fp16", 128, 300)
    for overrides in (["experiment=spikformer-cifar10", "scale=cpu"], ["experiment=demo"]):
        t = compose(overrides).trainer
        assert t.precision == "32" and not t.pin_memory and t.num_workers == 0, overrides


def test_loader_knobs_reach_the_dataloaders_of_a_run_and_the_record(monkeypatch):
    run_module = importlib.import_module("step.engine.run")
    real, built = builders.build_loaders, []

    def build_and_keep(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    from torch.utils.data import DataLoader

    started = []  # one entry per worker start-up (DataLoader._get_iterator builds the worker processes)
    real_iterator = DataLoader._get_iterator
    monkeypatch.setattr(DataLoader, "_get_iterator", lambda self: started.append(self) or real_iterator(self))
    monkeypatch.setattr(run_module.builders, "build_loaders", build_and_keep)
    record = run(compose([*TINY, "trainer.device=cpu", "trainer.num_workers=1", "trainer.persistent_workers=true",
                          "trainer.pin_memory=true", "trainer.epochs=2", "trainer.eval_every=1"]))
    train, test = built[0]
    assert train.num_workers == 1 and train.persistent_workers and test.persistent_workers
    # persistent: the workers started for epoch 0 served epoch 1 too (one start per loader, not per epoch)
    assert started.count(train) == 1 and started.count(test) == 1
    assert train._iterator._workers[0].is_alive()
    # a CPU run does not pin (page-locked memory only speeds up copies to a GPU), and says so
    assert not train.pin_memory
    assert record["loader"] == {"num_workers": 1, "pin_memory": False, "persistent_workers": True}
    from step import native

    assert record["neuron_kernel"] == native.implementation("lif")
    del train._iterator, test._iterator  # stop the workers now


def test_pin_memory_is_asked_of_the_dataloader_when_the_run_trains_on_cuda():
    cfg = compose([*TINY, "trainer.device=cuda", "trainer.pin_memory=true"])
    assert builders.loader_options(cfg)["pin_memory"] is True
    bundle = builders.build_data(cfg)
    import torch

    train, test = builders.build_loaders(cfg, bundle, torch.Generator().manual_seed(0))
    assert train.pin_memory and test.pin_memory
    # without workers there is nothing to keep alive
    assert builders.loader_options(compose(["trainer.persistent_workers=true"]))["persistent_workers"] is False


@pytest.mark.parametrize("bad", ["trainer.pin_memory=maybe"])
def test_loader_knobs_are_typed(bad):
    with pytest.raises(Exception):
        compose([bad])
