"""step.engine.checkpoint function by function, on tiny objects and hand-made files.

The run-level tests (test_resume, test_commit_order, test_safe_loading) show that a killed run
resumes; these pin each piece: what a snapshot holds, which RNG streams come back, which sidecar
``resume=auto`` picks, and the exact message of each refusal (it names the file and the fix).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from step.engine import checkpoint as ck
from step.errors import CheckpointError

CONFIG = {"model": {"name": "tiny", "dim": 4}, "seed": 0, "paths": {"output_root": "/x"}}


def tiny_state(epoch=1, config=CONFIG, run_id="r1", **over):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = ck.capture(model=model, optimizer=opt, scheduler=None, scaler=None, generator=None, epoch=epoch,
                       best={"top1": 50.0}, history=[{"epoch": 0}], config=config, world_size=1, run_id=run_id)
    state.update(over)
    return state


# -- what a snapshot holds --------------------------------------------------------------------------
def test_capture_holds_every_part_as_plain_cpu_data():
    state = tiny_state(epoch=3)
    assert state["format"] == "step-train-state" and state["version"] == 2 and state["epoch"] == 3
    assert set(state["model"]) == {"weight", "bias"} and state["scheduler"] is None and state["scaler"] is None
    assert state["best"] == {"top1": 50.0} and state["history"] == [{"epoch": 0}] and state["world_size"] == 1
    assert state["fingerprint"] == ck.fingerprint(CONFIG) and state["run_id"] == "r1"
    assert state["config"] == CONFIG and set(state["rng"]) == {"python", "numpy", "torch"}


def test_plain_copies_tensors_and_turns_numpy_into_tensors_and_numbers():
    t = torch.ones(2, requires_grad=True)
    out = ck._plain({"t": t, "a": np.arange(3, dtype=np.int64), "g": np.float32(2.5), "tup": (1, "x"), "l": [None],
                     "d": torch.float16, "s": torch.Size([2])})
    assert not out["t"].requires_grad
    t.data.fill_(7.0)
    assert out["t"].tolist() == [1.0, 1.0]  # a copy, not a view
    assert isinstance(out["a"], torch.Tensor) and out["a"].tolist() == [0, 1, 2]
    assert type(out["g"]) is float and out["g"] == 2.5
    assert type(out["tup"]) is tuple and out["tup"] == (1, "x") and out["l"] == [None]
    assert out["d"] is torch.float16 and out["s"] == torch.Size([2])


def test_plain_refuses_any_other_object_naming_its_type():
    with pytest.raises(TypeError) as err:
        ck._plain({"x": {1, 2}})
    assert str(err.value) == "a checkpoint holds tensors and plain data only, not set ({1, 2})"


def test_a_numpy_array_in_the_snapshot_is_not_shared_with_the_live_array():
    a = np.zeros(2)
    out = ck._plain(a)
    a[0] = 5.0
    assert out.tolist() == [0.0, 0.0]


# -- RNG streams ------------------------------------------------------------------------------------
def test_every_rng_stream_continues_where_it_was_saved():
    gen = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(2), torch.manual_seed(4)
    np.random.normal()  # leaves a cached gaussian: has_gauss / gauss must come back too
    state = ck.rng_state(gen)
    state = torch.load(_roundtrip(state), weights_only=True)
    want = (random.random(), np.random.normal(), np.random.rand(), torch.rand(1).item(),
            torch.rand(1, generator=gen).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9), gen.manual_seed(9)
    np.random.normal()
    ck.restore_rng(state, gen)
    got = (random.random(), np.random.normal(), np.random.rand(), torch.rand(1).item(),
           torch.rand(1, generator=gen).item())
    assert got == want


def test_a_state_without_the_loader_stream_leaves_the_generator_alone():
    gen = torch.Generator().manual_seed(5)
    state = ck.rng_state(None)
    assert "loader" not in state
    expected = torch.Generator().manual_seed(5)
    ck.restore_rng(state, gen)
    assert torch.rand(2, generator=gen).tolist() == torch.rand(2, generator=expected).tolist()


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


# -- sidecars and statuses --------------------------------------------------------------------------
def test_sidecar_and_status_readers_give_empty_answers_for_missing_broken_or_odd_files(tmp_path):
    assert ck.read_sidecar(tmp_path) == {} and ck.read_status(tmp_path) is None
    (tmp_path / "last.json").write_text("{not json")
    (tmp_path / "record.json").write_text("[1, 2")
    assert ck.read_sidecar(tmp_path) == {} and ck.read_status(tmp_path) is None
    (tmp_path / "last.json").write_text("[1, 2]")
    (tmp_path / "record.json").write_text("[1, 2]")
    assert ck.read_sidecar(tmp_path) == {} and ck.read_status(tmp_path) is None
    (tmp_path / "record.json").write_text(json.dumps({"status": "failed"}))
    assert ck.read_status(tmp_path) == "failed"


def test_write_sidecar_from_a_state_then_a_status_only_update_keeps_the_rest(tmp_path):
    ck.write_sidecar(tmp_path, tiny_state(epoch=2, run_id="abc"), "running")
    first = ck.read_sidecar(tmp_path)
    assert {k: first[k] for k in ("status", "fingerprint", "epoch", "checkpoint", "run_id")} == {
        "status": "running", "fingerprint": ck.fingerprint(CONFIG), "epoch": 2, "checkpoint": "last.pt",
        "run_id": "abc"}
    ck.write_sidecar(tmp_path, None, "ok")
    second = ck.read_sidecar(tmp_path)
    assert second["status"] == "ok" and second["epoch"] == 2 and second["run_id"] == "abc"
    assert second["saved_at"] >= first["saved_at"]
    assert (tmp_path / "last.json").read_text().startswith('{\n  "')  # indented: readable by hand


def test_save_writes_the_state_and_its_sidecar(tmp_path):
    path = ck.save(tmp_path, tiny_state(epoch=4), status="interrupted")
    assert path == tmp_path / "last.pt" and ck.read(path)["epoch"] == 4
    assert ck.read_sidecar(tmp_path)["status"] == "interrupted"
    assert ck.read_sidecar(tmp_path / "elsewhere") == {}


def test_save_model_holds_the_weights_config_epoch_and_run_id(tmp_path):
    model = nn.Linear(3, 2)
    path = ck.save_model(tmp_path, model, CONFIG, epoch=5, run_id="r9")
    blob = ck.read(path)
    assert path == tmp_path / "model.pt"
    assert (blob["format"], blob["version"], blob["config"], blob["epoch"], blob["run_id"]) == (
        "step-model", 2, CONFIG, 5, "r9")
    assert torch.equal(blob["model"]["weight"], model.weight)


def test_is_finished_reads_the_sidecar_or_the_record(tmp_path):
    assert not ck.is_finished(tmp_path)
    (tmp_path / "last.json").write_text(json.dumps({"status": "ok"}))
    assert ck.is_finished(tmp_path)
    (tmp_path / "last.json").write_text(json.dumps({"status": "running"}))
    assert not ck.is_finished(tmp_path)
    (tmp_path / "record.json").write_text(json.dumps({"status": "ok"}))
    assert ck.is_finished(tmp_path)


# -- reading files ----------------------------------------------------------------------------------
def test_a_corrupt_file_gets_one_message_and_is_left_untouched(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        ck.read(path)
    assert str(err.value) == (f"checkpoint {path} cannot be read: it is corrupt or not a PyTorch file. It was left "
                              "untouched; move it aside or set trainer.resume=never.")
    assert path.read_bytes() == b"\x80\x02not a checkpoint"


def test_a_truncated_file_names_the_reader_error(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"a": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(CheckpointError) as err:
        ck.read(path)
    text = str(err.value)
    assert text.startswith(f"checkpoint {path} cannot be read (RuntimeError: ")
    assert text.endswith("); it is corrupt or truncated. It was left untouched; move it aside or set "
                         "trainer.resume=never.")


class _Foreign:  # a class torch's weights-only reader refuses
    pass


@pytest.mark.parametrize("count", [1, 6])
def test_a_file_with_python_objects_names_at_most_four_of_them(tmp_path, count):
    path = tmp_path / "weights.pt"
    classes = [type(f"Foreign{i}", (), {"__module__": __name__}) for i in range(count)]
    for c in classes:
        globals()[c.__name__] = c
    torch.save({c.__name__: c() for c in classes}, path)
    with pytest.raises(CheckpointError) as err:
        ck.read(path)
    names = sorted(f"{__name__}.{c.__name__}" for c in classes)
    shown = ", ".join(names[:4]) + (f" and {count - 4} more" if count > 4 else "")
    assert str(err.value) == (
        f"{path} was not loaded: it holds Python objects other than tensors and plain data ({shown}), and "
        "unpickling them could run code. STEP reads only weights-only files (torch.save of tensors, dicts, lists "
        "and numbers); save the model's state_dict alone.")


# -- load: the checks before a state is used --------------------------------------------------------
def test_load_takes_a_run_folder_or_its_last_pt(tmp_path):
    ck.save(tmp_path, tiny_state(epoch=2))
    assert ck.load(tmp_path, CONFIG)["epoch"] == 2
    assert ck.load(tmp_path / "last.pt", CONFIG)["epoch"] == 2


def test_load_refuses_a_missing_file_naming_the_choices(tmp_path):
    for given, named in ((tmp_path / "run", tmp_path / "run"), (tmp_path, tmp_path / "last.pt")):
        with pytest.raises(CheckpointError) as err:
            ck.load(given, CONFIG)
        assert str(err.value) == (f"trainer.resume: checkpoint {named} does not exist; give a last.pt, its run "
                                  "folder, auto, or never.")


def test_load_refuses_a_finished_run_and_names_step_eval(tmp_path):
    ck.save(tmp_path, tiny_state(), status="ok")
    with pytest.raises(CheckpointError) as err:
        ck.load(tmp_path, CONFIG)
    assert str(err.value) == (
        f"trainer.resume: the run in {tmp_path} has finished (status ok; its model.pt, record.json and leaderboard "
        f"row exist), so it is not trained again. Evaluate it with `step-eval {tmp_path / 'model.pt'}`, or start a "
        "new run (trainer.resume=never).")


@pytest.mark.parametrize(("blob", "message"), [
    ([1, 2], "is not a STEP training state (no format 'step-train-state'); only last.pt files written by "
             "step-train can be resumed."),
    ({"format": "step-model"}, "is not a STEP training state (no format 'step-train-state'); only last.pt files "
                               "written by step-train can be resumed."),
    ({"format": "step-train-state", "version": 3}, "has format version 3, this STEP reads version 2; resume it "
                                                   "with the STEP version that wrote it."),
])
def test_load_refuses_what_is_not_this_versions_training_state(tmp_path, blob, message):
    torch.save(blob, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as err:
        ck.load(tmp_path, CONFIG)
    assert str(err.value) == f"checkpoint {tmp_path / 'last.pt'} {message}"


def test_load_refuses_another_config_naming_the_keys(tmp_path):
    ck.save(tmp_path, tiny_state())
    other = {**CONFIG, "seed": 1, "paths": {"output_root": "/elsewhere"}}
    with pytest.raises(CheckpointError) as err:
        ck.load(tmp_path, other)
    assert str(err.value) == (f"checkpoint {tmp_path / 'last.pt'} was made by a different config, so it cannot be "
                              "continued: seed: checkpoint 0, this run 1. Use the original settings or "
                              "trainer.resume=never.")
    assert ck.load(tmp_path, {**CONFIG, "paths": {"output_root": "/elsewhere"}})["epoch"] == 1  # paths do not count


# -- find_latest: what resume=auto continues --------------------------------------------------------
def _run(root, name, saved_at, status="running", config=CONFIG, checkpoint=True, record=None):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    if checkpoint:
        torch.save({"x": 1}, run_dir / "last.pt")
    (run_dir / "last.json").write_text(json.dumps({"fingerprint": ck.fingerprint(config), "status": status,
                                                   "saved_at": saved_at, "checkpoint": "last.pt"}))
    if record:
        (run_dir / "record.json").write_text(json.dumps({"status": record}))
    return run_dir


def test_find_latest_picks_the_most_recently_saved_unfinished_run_of_this_config(tmp_path):
    _run(tmp_path, "a/old", 100.0)
    newest = _run(tmp_path, "b/new", 300.0)
    _run(tmp_path, "mid", 200.0)
    _run(tmp_path, "done", 900.0, status="ok")
    _run(tmp_path, "diverged", 901.0, status="diverged")
    _run(tmp_path, "other", 902.0, config={**CONFIG, "seed": 7})
    _run(tmp_path, "no-ckpt", 903.0, checkpoint=False)
    assert ck.find_latest(tmp_path, CONFIG) == newest / "last.pt"


def test_find_latest_settles_a_run_whose_record_says_ok_instead_of_continuing_it(tmp_path):
    settled = []
    older = _run(tmp_path, "older", 1.0)
    _run(tmp_path, "recorded", 5.0, record="ok")
    _run(tmp_path, "failed", 0.5, record="failed")
    assert ck.find_latest(tmp_path, CONFIG, settle=settled.append) == older / "last.pt"
    assert settled == [tmp_path / "recorded"]
    assert ck.find_latest(tmp_path, CONFIG) == older / "last.pt"  # no settle given: skipped all the same


def test_find_latest_without_runs_or_a_root_is_none(tmp_path):
    assert ck.find_latest(tmp_path / "absent", CONFIG) is None
    assert ck.find_latest(tmp_path, CONFIG) is None
    _run(tmp_path, "a", 0.0)  # saved at 0.0 still counts
    assert ck.find_latest(tmp_path, CONFIG) == tmp_path / "a" / "last.pt"


def test_find_latest_follows_the_checkpoint_the_sidecar_names(tmp_path):
    run_dir = _run(tmp_path, "a", 1.0, checkpoint=False)
    torch.save({"x": 1}, run_dir / "epoch3.pt")
    info = json.loads((run_dir / "last.json").read_text())
    (run_dir / "last.json").write_text(json.dumps({**info, "checkpoint": "epoch3.pt"}))
    assert ck.find_latest(tmp_path, CONFIG) == run_dir / "epoch3.pt"
    del info["checkpoint"], info["saved_at"]
    (run_dir / "last.json").write_text(json.dumps(info))
    torch.save({"x": 1}, run_dir / "last.pt")
    assert ck.find_latest(tmp_path, CONFIG) == run_dir / "last.pt"


# -- restore ----------------------------------------------------------------------------------------
def test_restore_loads_model_optimizer_scheduler_and_scaler(tmp_path):
    torch.manual_seed(1)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model(torch.ones(1, 3)).sum().backward()
    opt.step(), sched.step()
    state = ck.capture(model=model, optimizer=opt, scheduler=sched, scaler=None, generator=None, epoch=1, best=None,
                       history=[], config=CONFIG, world_size=1)
    fresh = nn.Linear(3, 2)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh_sched = torch.optim.lr_scheduler.StepLR(fresh_opt, step_size=1, gamma=0.5)
    ck.restore(state, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched, scaler=None, generator=None,
               path=tmp_path / "last.pt")
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_opt.param_groups[0]["lr"] == pytest.approx(0.05) and fresh_sched.last_epoch == 1
    assert torch.equal(fresh_opt.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])


def test_restore_skips_a_scheduler_the_state_does_not_hold(tmp_path):
    state = tiny_state()
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    ck.restore(state, model=model, optimizer=opt, scheduler=sched, scaler=None, generator=None, path=tmp_path)
    assert sched.last_epoch == 0


def test_restore_names_the_file_when_the_model_does_not_fit(tmp_path):
    with pytest.raises(CheckpointError) as err:
        ck.restore(tiny_state(), model=nn.Linear(4, 2), optimizer=None, scheduler=None, scaler=None, generator=None,
                   path=tmp_path / "last.pt")
    assert str(err.value).startswith(f"checkpoint {tmp_path / 'last.pt'} does not fit the model this config builds: "
                                     "Error(s) in loading state_dict for Linear")


class _Scaler:
    def __init__(self, scale=1.0):
        self.scale, self.loaded = scale, None

    def state_dict(self):
        return {"scale": self.scale}

    def load_state_dict(self, state):
        self.loaded = state


def test_restore_loads_the_grad_scaler_and_the_loader_generator(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(11)
    torch.rand(3, generator=gen)
    state = ck.capture(model=model, optimizer=opt, scheduler=None, scaler=_Scaler(1024.0), generator=gen, epoch=1,
                       best=None, history=[], config=CONFIG, world_size=1)
    expected = torch.rand(4, generator=gen).tolist()
    scaler, fresh_gen = _Scaler(), torch.Generator().manual_seed(99)
    ck.restore(state, model=model, optimizer=opt, scheduler=None, scaler=scaler, generator=fresh_gen, path=tmp_path)
    assert scaler.loaded == {"scale": 1024.0}
    assert torch.rand(4, generator=fresh_gen).tolist() == expected
    untouched = _Scaler()
    ck.restore({**state, "scaler": None}, model=model, optimizer=opt, scheduler=None, scaler=untouched,
               generator=None, path=tmp_path)
    assert untouched.loaded is None  # a run saved without AMP leaves the scaler at its start
    ck.restore(state, model=model, optimizer=opt, scheduler=None, scaler=None, generator=None, path=tmp_path)


def test_cuda_rng_states_are_saved_and_restored_when_cuda_is_in_use(monkeypatch):
    """On a CPU machine through fakes: the CUDA streams are saved only once CUDA is initialised, and
    restored only when the state holds them and CUDA is there."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["cuda-state-0"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(states))
    state = ck.rng_state(None)
    assert state["cuda"] == ["cuda-state-0"]
    ck.restore_rng(state, None)
    assert calls == [["cuda-state-0"]]
    ck.restore_rng({k: v for k, v in state.items() if k != "cuda"}, None)
    assert calls == [["cuda-state-0"]]  # nothing saved, nothing set
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ck.restore_rng(state, None)  # a GPU checkpoint resumed on a CPU machine
    assert calls == [["cuda-state-0"]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert "cuda" not in ck.rng_state(None)  # CUDA present but never used: no state to save


@pytest.fixture
def sorted_walk(monkeypatch):
    """rglob in name order, so a test can say which sidecar resume=auto meets first."""
    from pathlib import Path

    walk = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: iter(sorted(walk(self, pattern))))


def test_find_latest_looks_past_every_run_it_skips(tmp_path, sorted_walk):
    for i, kind in enumerate(("ok", "diverged", "other-config")):
        _run(tmp_path, f"a{i}-{kind}", 50.0 + i, status="running" if kind == "other-config" else kind,
             config={**CONFIG, "seed": 7} if kind == "other-config" else CONFIG)
    _run(tmp_path, "b-recorded", 60.0, record="ok")
    wanted = _run(tmp_path, "c-wanted", 1.0)
    assert ck.find_latest(tmp_path, CONFIG) == wanted / "last.pt"


@pytest.mark.parametrize("first", ["undated", "dated"])
def test_a_sidecar_without_saved_at_counts_as_saved_at_time_zero(tmp_path, sorted_walk, first):
    """Sidecars of older STEP versions have no saved_at: they lose to any dated one, met first or last."""
    names = {"undated": "a", "dated": "b"} if first == "undated" else {"undated": "b", "dated": "a"}
    dated = _run(tmp_path, names["dated"], 0.5)
    undated = _run(tmp_path, names["undated"], 0.0)
    info = json.loads((undated / "last.json").read_text())
    del info["saved_at"]
    (undated / "last.json").write_text(json.dumps(info))
    assert ck.find_latest(tmp_path, CONFIG) == dated / "last.pt"
