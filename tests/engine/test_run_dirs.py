"""Run directories users can trust (issue 12, part 3): a lock held for the run's life, resume
from the newest intact checkpoint, --overwrite, resume with changed optimiser/schedule settings,
temporary files, run names that stay inside run.out_dir, a full disk, and eval/analyze that
never read data or write caches where a (foreign) checkpoint's stored config says."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine_helpers import SimulatedCrash, crash_after, state_dicts_equal, tiny_config
from spikedistill import atomic
from spikedistill.cli import main
from spikedistill.config import build_config
from spikedistill.engine import checkpoint as ck
from spikedistill.engine import lock as lk
from spikedistill.engine import resume as rs
from spikedistill.engine.build import build_optimizer, build_scheduler
from spikedistill.engine.logging import read_metrics_csv
from spikedistill.engine.trainer import run_training
from spikedistill.errors import CheckpointError, ConfigError, SpikeDistillError

SRC = Path(__file__).resolve().parents[2] / "src"
QUICK = ["train.epochs=1", "train.max_steps_per_epoch=1"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------------------------
# resume: newest intact checkpoint, --overwrite
# --------------------------------------------------------------------------------------------

def test_run_killed_after_best_before_first_last_resumes_exactly(tmp_path, capsys):
    extra = ["run.save_every=10"]          # last.pt only at the end (epoch 3)
    full = run_training(tiny_config(tmp_path, "full", extra))
    with pytest.raises(SimulatedCrash):
        run_training(tiny_config(tmp_path, "k", extra), on_epoch_end=crash_after(1))
    run_dir = tmp_path / "k"
    assert not (run_dir / "last.pt").exists() and (run_dir / "best.pt").exists()
    capsys.readouterr()

    resumed = run_training(None, resume=run_dir)
    err = capsys.readouterr().err
    assert "from best.pt (epoch 1)" in err and "last.pt is missing" in err
    assert resumed.start_epoch == 1 and resumed.epochs == 3
    a, b = ck.load_checkpoint(tmp_path / "full" / "last.pt"), ck.load_checkpoint(run_dir)
    assert state_dicts_equal(a["model"], b["model"])
    assert [r["loss_ce"] for r in full.history] == [r["loss_ce"] for r in resumed.history]


def test_corrupt_last_falls_back_to_the_newest_intact_checkpoint(tmp_path, capsys):
    run_training(tiny_config(tmp_path, "c", ["train.epochs=2", "train.max_steps_per_epoch=1"]))
    run_dir = tmp_path / "c"
    best_epoch = ck.load_checkpoint(run_dir / "best.pt")["epoch"]
    data = (run_dir / "last.pt").read_bytes()
    (run_dir / "last.pt").write_bytes(data[: len(data) // 3])
    capsys.readouterr()
    chosen = rs.find_resume_checkpoint(run_dir)
    assert Path(chosen["path"]).name == "best.pt" and chosen["epoch"] == best_epoch
    err = capsys.readouterr().err
    assert "from best.pt" in err and "truncated or corrupt" in err
    # the CLI reads the config of the same checkpoint and trains on from there
    assert main(["train", "--resume", str(run_dir), "--train.epochs", "3"]) == 0
    assert ck.load_checkpoint(run_dir)["epoch"] == 3
    rows = read_metrics_csv(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, best_epoch + 1)) + list(
        range(best_epoch + 1, 4))

    # nothing intact left: one line naming the directory and --overwrite
    (run_dir / "last.pt").write_bytes(b"junk")
    (run_dir / "best.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"holds no intact training checkpoint.*--overwrite"):
        rs.find_resume_checkpoint(run_dir)


def test_newer_best_wins_over_an_older_last(tmp_path):
    """save_every=2 and a new best at epoch 3, then killed: best.pt (epoch 3) is the newest
    state, last.pt (epoch 2) the older one; a checkpoint without optimiser state is no
    training checkpoint."""
    from spikedistill.models import create_model

    model = create_model("spiking_resnet20", num_classes=10, in_channels=1, T=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = tiny_config(tmp_path, "n").to_dict()
    run_dir = tmp_path / "n"
    for name, epoch in (("last.pt", 2), ("best.pt", 3)):
        ck.save_checkpoint(ck.make_checkpoint(model=model, config=cfg, epoch=epoch,
                                              optimizer=opt), run_dir / name)
    ck.save_checkpoint(ck.make_checkpoint(model=model, config=cfg, epoch=9),
                       run_dir / "exported.pt")                 # weights only: skipped
    assert rs.find_resume_checkpoint(run_dir, announce=False)["epoch"] == 3
    ck.save_checkpoint(ck.make_checkpoint(model=model, config=cfg, epoch=3, optimizer=opt),
                       run_dir / "last.pt")
    chosen = rs.find_resume_checkpoint(run_dir, announce=False)
    assert Path(chosen["path"]).name == "last.pt"                # a tie goes to last.pt


def test_restart_needs_overwrite_which_starts_over(tmp_path):
    cfg = tiny_config(tmp_path, "o", ["train.epochs=2", "train.max_steps_per_epoch=1"])
    run_training(cfg)
    run_dir = tmp_path / "o"
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "teacher.json").write_text("{}")   # as if the earlier run had distilled
    with pytest.raises(ConfigError, match=r"already holds a checkpoint.*--resume .*--overwrite"):
        run_training(cfg)
    assert main(["train", "--overwrite", "--set", *QUICK, "train.device=cpu",
                 "data.train_subset=160", "data.test_subset=80", "train.batch_size=16",
                 "run.progress=false", "run.tensorboard=false", "run.plots=false",
                 f"run.out_dir={tmp_path}", "run.name=o"]) == 0
    assert ck.load_checkpoint(run_dir)["epoch"] == 1
    assert [int(r["epoch"]) for r in read_metrics_csv(run_dir / "metrics.csv")] == [1]
    assert (run_dir / "notes.txt").read_text() == "mine"      # not the run's: kept
    assert not (run_dir / "teacher.json").exists()            # the previous run's: removed
    with pytest.raises(ConfigError, match="give one of them"):
        run_training(None, resume=run_dir, overwrite=True)


# --------------------------------------------------------------------------------------------
# the lock
# --------------------------------------------------------------------------------------------

HOLDER = """
import sys
sys.path.insert(0, sys.argv[2])
from spikedistill.engine.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""


@pytest.fixture
def holder(tmp_path):
    """A live process of this host holding the lock of tmp_path/'busy'."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "busy"), str(SRC)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=30)


@pytest.mark.parametrize("use_flock", [True, False])
def test_second_run_on_a_locked_directory_stops_at_once(tmp_path, holder, monkeypatch, use_flock):
    if not use_flock:
        monkeypatch.setattr(lk, "fcntl", None)       # the O_EXCL lock file of other platforms
    t0 = time.perf_counter()
    with pytest.raises(SpikeDistillError) as info:
        run_training(tiny_config(tmp_path, "busy"))
    assert time.perf_counter() - t0 < 5.0
    msg = str(info.value)
    assert f"pid {holder.pid} on {socket.gethostname()}" in msg and "in use by another run" in msg
    assert "\n" not in msg
    # nothing was written by the refused run
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["run.lock"]


@pytest.mark.parametrize("use_flock", [True, False])
def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, monkeypatch, capsys, use_flock):
    if not use_flock:
        monkeypatch.setattr(lk, "fcntl", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    run_dir = tmp_path / "stale"
    run_dir.mkdir()
    (run_dir / "run.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                  "started": "2020-01-01T00:00:00"}))
    lock = lk.RunLock(run_dir).acquire()
    err = capsys.readouterr().err
    assert f"taking over the lock {run_dir / 'run.lock'} of pid {pid}" in err
    assert json.loads((run_dir / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run_dir / "run.lock").exists()


def test_exclusive_lock_of_another_host_is_not_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(lk, "fcntl", None)
    run_dir = tmp_path / "remote"
    run_dir.mkdir()
    (run_dir / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere-host"}))
    with pytest.raises(SpikeDistillError, match="pid 1 on elsewhere-host"):
        lk.RunLock(run_dir).acquire()


def test_lock_is_held_for_the_run_and_released_on_every_exit(tmp_path):
    cfg = tiny_config(tmp_path, "held", ["train.epochs=2", "train.max_steps_per_epoch=1"])
    inner = {}

    def hook(epoch, record):
        assert json.loads((tmp_path / "held" / "run.lock").read_text())["pid"] == os.getpid()
        with pytest.raises(SpikeDistillError, match="in use by another run") as info:
            run_training(cfg, overwrite=True)
        inner["msg"] = str(info.value)
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, on_epoch_end=hook)
    assert "msg" in inner
    assert not (tmp_path / "held" / "run.lock").exists()
    assert atomic.list_temp_files(tmp_path / "held") == []
    res = run_training(None, resume=tmp_path / "held")       # the lock was released
    assert res.epochs == 2 and not (tmp_path / "held" / "run.lock").exists()


def test_sigterm_releases_the_lock_and_leaves_no_temp_files(tmp_path):
    argv = [sys.executable, "-m", "spikedistill", "train", "--set", "data.train_subset=160",
            "data.test_subset=80", "train.epochs=200", "train.batch_size=16",
            "train.max_steps_per_epoch=2", "train.device=cpu", "train.threads=1",
            "run.progress=false", "run.tensorboard=false", "run.plots=false",
            f"run.out_dir={tmp_path}", "run.name=term"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    line = proc.stdout.readline()
    while line and not line.startswith("epoch 2/"):
        line = proc.stdout.readline()
    assert (tmp_path / "term" / "run.lock").exists()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert not (tmp_path / "term" / "run.lock").exists()
    assert atomic.list_temp_files(tmp_path / "term") == []
    assert ck.load_checkpoint(tmp_path / "term")["epoch"] >= 2


# --------------------------------------------------------------------------------------------
# resume with changed optimiser / schedule settings
# --------------------------------------------------------------------------------------------

def test_resume_applies_lr_momentum_and_weight_decay(tmp_path):
    cfg = tiny_config(tmp_path, "lr", ["train.epochs=1", "train.max_steps_per_epoch=1",
                                       "train.scheduler=constant"])
    run_training(cfg)
    resumed = run_training(build_config(
        ck.load_checkpoint(tmp_path / "lr")["config"],
        ["train.epochs=2", "train.lr=0.5", "train.momentum=0.5", "train.weight_decay=0.0"]),
        resume=tmp_path / "lr")
    assert resumed.history[0]["lr"] == pytest.approx(0.05)
    assert resumed.history[1]["lr"] == pytest.approx(0.5)          # the new lr trains
    groups = ck.load_checkpoint(tmp_path / "lr")["optimizer"]["param_groups"]
    assert all(g["momentum"] == 0.5 and g["weight_decay"] == 0.0 and g["lr"] == 0.5
               and g["initial_lr"] == 0.5 for g in groups)
    recorded = (tmp_path / "lr" / "config.yaml").read_text()
    assert "lr: 0.5\n" in recorded and "momentum: 0.5\n" in recorded


def test_apply_train_settings_follows_the_new_schedule_from_the_restored_step():
    model = torch.nn.Linear(2, 2)
    old = build_config({}, ["train.epochs=2", "train.lr=0.1"]).train
    opt = build_optimizer(list(model.parameters()), old)
    sched = build_scheduler(opt, old, 3)
    for _ in range(4):
        opt.step()
        sched.step()
    state_o, state_s = opt.state_dict(), sched.state_dict()
    new = build_config({}, ["train.epochs=4", "train.lr=1.0", "train.warmup_epochs=0"]).train
    opt2 = build_optimizer(list(model.parameters()), new)
    sched2 = build_scheduler(opt2, new, 3)
    opt2.load_state_dict(state_o)
    sched2.load_state_dict(state_s)
    rs.apply_train_settings(opt2, sched2, new)
    golden = 1.0 * 0.5 * (1.0 + math.cos(math.pi * 4 / 12))        # cosine over 4 x 3 steps
    assert opt2.param_groups[0]["lr"] == pytest.approx(golden, rel=1e-12)
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 12)))


@pytest.mark.parametrize("override, key", [("train.optimizer=adamw", "train.optimizer"),
                                           ("train.max_steps_per_epoch=2",
                                            "train.max_steps_per_epoch")])
def test_refused_resume_names_the_key_and_leaves_the_run_alone(tmp_path, override, key):
    cfg = tiny_config(tmp_path, "r", ["train.epochs=1", "train.max_steps_per_epoch=1"])
    run_training(cfg)
    run_dir = tmp_path / "r"
    before = {n: (run_dir / n).read_bytes() for n in ("config.yaml", "last.pt", "metrics.csv")}
    argv = ["train", "--resume", str(run_dir), "--set", "train.epochs=2", override]
    assert main(argv) == 2
    with pytest.raises(ConfigError, match=rf"cannot resume .*{key}: .*--overwrite"):
        run_training(build_config(ck.load_checkpoint(run_dir)["config"],
                                  ["train.epochs=2", override]), resume=run_dir)
    assert {n: (run_dir / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "config.yaml", "last.pt",
                                                         "metrics.csv"]


# --------------------------------------------------------------------------------------------
# temporary files, run names, out_dir, a full disk
# --------------------------------------------------------------------------------------------

def test_temp_files_of_killed_writers_are_swept_at_start(tmp_path, capsys):
    run_training(tiny_config(tmp_path, "t", QUICK))
    run_dir = tmp_path / "t"
    assert atomic.list_temp_files(run_dir) == []                     # a finished run
    (run_dir / ".last.pt.k1ll3d00.tmp").write_bytes(b"half a checkpoint")
    (run_dir / ".metrics.csv.a1b2c3d4.tmp").write_text("epoch")
    capsys.readouterr()
    run_training(None, resume=run_dir)
    assert atomic.list_temp_files(run_dir) == []
    assert "removed 2 temporary file(s)" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["..", "../escaped", "ABSOLUTE", "a/b", "a\\b", "."])
def test_run_name_cannot_leave_out_dir(tmp_path, name):
    out = tmp_path / "runs"
    if name == "ABSOLUTE":
        name = str(tmp_path / "absolute-run")
    with pytest.raises(ConfigError, match=r"config key 'run.name'"):
        run_training(tiny_config(out, name, QUICK))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_out_dir_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"config key 'run.out_dir': .*afile' is a file"):
        run_training(tiny_config(blocker, "x", QUICK))
    with pytest.raises(ConfigError, match=r"config key 'run.out_dir'"):
        run_training(tiny_config(blocker / "deeper", "x", QUICK))
    assert main(["train", "--set", *QUICK, "train.device=cpu", f"run.out_dir={blocker}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config key 'run.out_dir'") and err.count("\n") == 1


def test_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """Writes of more than 64 KiB (the checkpoints) fail with ENOSPC, like a disk that fills up
    during the run: the CLI prints one line naming the checkpoint, and leaves no temporary file
    and no lock behind."""
    real = os.fdopen

    class Full:
        def __init__(self, handle):
            self.h, self.n = handle, 0

        def write(self, data):
            self.n += len(memoryview(data))
            if self.n > 65536:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.h.write(data)

        def __getattr__(self, name):
            return getattr(self.h, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.h.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    rc = main(["train", "--set", *QUICK, "train.device=cpu", "train.threads=1",
               "data.train_subset=160", "data.test_subset=80", "train.batch_size=16",
               "run.progress=false", "run.tensorboard=false", "run.plots=false",
               "model.last_activation=lif", f"run.out_dir={tmp_path}", "run.name=full"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == (f"error: cannot write '{tmp_path / 'full' / 'best.pt'}': No space left on "
                   "device (ENOSPC)\n")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["config.yaml"]


# --------------------------------------------------------------------------------------------
# eval / analyze never read data or write caches where a stored config says
# --------------------------------------------------------------------------------------------

def _foreign_checkpoint(tmp_path, data):
    """A checkpoint (untrained spiking ResNet-20 for 3-channel 8x8 images) whose stored config
    names someone else's data root and cache."""
    from spikedistill.models import create_model, model_kwargs

    cfg = build_config({}, ["model.width_mult=1", "model.T=1", "train.device=cpu"])
    model = create_model(cfg.model.name, **model_kwargs(cfg.model, 10, 3))
    stored = cfg.to_dict()
    stored["data"].update(data)
    path = tmp_path / "foreign.pt"
    ck.save_checkpoint(ck.make_checkpoint(model=model, config=stored, epoch=1), path)
    return path


def _image_folder(root):
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for c in range(10):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), 20 * c, np.uint8)).save(d / "0.png")
    return root


def test_eval_of_a_foreign_checkpoint_asks_for_data_root(tmp_path, capsys):
    foreign_root = tmp_path / "their_cifar"
    path = _foreign_checkpoint(tmp_path, {"name": "cifar10", "root": str(foreign_root),
                                          "cache_dir": str(tmp_path / "their_cache")})
    assert main(["eval", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: dataset 'cifar10' needs a root")
    assert f"stored data.root ({foreign_root}) is not used: pass --data.root PATH" in err
    # analyze: the same one-line request, not the stored root
    assert main(["analyze", "--checkpoint", str(path), "--batches", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'cifar10' needs a root") and str(foreign_root) not in err


def test_eval_reads_the_given_root_and_caches_in_the_default_place(tmp_path, capsys,
                                                                   monkeypatch):
    root = _image_folder(tmp_path / "folder")
    their_cache, default_cache = tmp_path / "their_cache", tmp_path / "default_cache"
    monkeypatch.setenv("SPIKEDISTILL_CACHE", str(default_cache))
    path = _foreign_checkpoint(tmp_path, {"name": "imagefolder", "root": str(root),
                                          "cache_dir": str(their_cache)})
    assert main(["eval", "--checkpoint", str(path), "--json"]) == 2     # root not taken
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(path), "--json", "--data.root", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["test_images"] == 10
    assert not their_cache.exists() and any(default_cache.rglob("*.npz"))
    mine = tmp_path / "my_cache"
    assert main(["eval", "--checkpoint", str(path), "--data.root", str(root),
                 "--data.cache_dir", str(mine)]) == 0
    assert any(mine.rglob("*.npz")) and not their_cache.exists()


def test_run_config_drops_the_stored_location_unless_given():
    from spikedistill.analysis.loading import run_config

    meta = {"config": build_config({}, ["data.root=/theirs", "data.cache_dir=/their/cache"]
                                   ).to_dict(), "path": "x.pt"}
    cfg = run_config(meta)
    assert cfg.data.root is None and cfg.data.cache_dir is None
    cfg = run_config(meta, ["data.root=/mine", "data.cache_dir=/my/cache"])
    assert cfg.data.root == "/mine" and cfg.data.cache_dir == "/my/cache"
