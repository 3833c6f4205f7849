"""One rule finds a run's checkpoint (``spikedistill.run_files.run_checkpoint``): a run
directory stands for its ``best.pt``, else its ``last.pt``; ``distill --teacher RUN_DIR``,
``compare --teacher RUN_DIR``, ``eval``/``analyze``/``export`` and ``export_state_dict`` all use it."""

from __future__ import annotations

import pytest

from spikedistill.errors import CheckpointError
from spikedistill.run_files import BEST_NAME, LAST_NAME, run_checkpoint


def test_a_run_directory_means_best_else_last(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match=r"^run directory '.*run' has neither best.pt nor last.pt$"):
        run_checkpoint(run)
    (run / LAST_NAME).write_bytes(b"")
    assert run_checkpoint(run) == run / "last.pt"
    (run / BEST_NAME).mkdir()                       # not a file: still last.pt
    assert run_checkpoint(str(run)) == run / "last.pt"
    (run / BEST_NAME).rmdir()
    (run / BEST_NAME).write_bytes(b"")
    assert run_checkpoint(run) == run / "best.pt"
    assert run_checkpoint(run, (LAST_NAME,)) == run / "last.pt"
    assert run_checkpoint(tmp_path / "missing.pt") == tmp_path / "missing.pt"   # the loader's question
    assert run_checkpoint(run / "best.pt") == run / "best.pt"
    with pytest.raises(CheckpointError, match=r"has no last.pt$"):
        run_checkpoint(tmp_path, (LAST_NAME,))


def _teacher_seen_by(command: str, teacher, tmp_path, monkeypatch, capsys):
    """What ``distill`` / ``compare`` pass on as the teacher checkpoint for ``--teacher
    teacher`` (training replaced by a stub that records it), or the error line they print."""
    import spikedistill.analysis.study as C
    import spikedistill.engine.trainer as T
    from spikedistill.cli import main
    from spikedistill.errors import SpikeDistillError

    seen = []

    def stop(*args, **kwargs):
        seen.append(str(args[0].teacher.checkpoint) if command == "distill" else str(args[2]))
        raise SpikeDistillError("stub")

    monkeypatch.setattr(T, "run_training", stop)
    monkeypatch.setattr(C, "run_all", stop)
    common = ["data.name=digits", "model.T=1", f"run.out_dir={tmp_path / 'out'}"]
    if command == "distill":
        argv = ["distill", "--teacher", str(teacher), "--set", *common, "distill.method=kd"]
    else:
        argv = ["compare", "--methods", "kd", "--seeds", "0", "--baseline", "kd", "--teacher",
                str(teacher), "--out", str(tmp_path / "cmp"), "--set", *common]
    assert main(argv) == 2
    err = capsys.readouterr().err
    return seen[0] if seen else err.strip().splitlines()[-1]


def test_distill_and_compare_resolve_a_teacher_run_alike(tmp_path, monkeypatch, capsys):
    run = tmp_path / "teacher"
    run.mkdir()
    args = (tmp_path, monkeypatch, capsys)
    none = [_teacher_seen_by(c, run, *args) for c in ("distill", "compare")]
    assert none[0] == none[1] and none[0].endswith("--teacher: run directory "
                                                   f"'{run}' has neither best.pt nor last.pt")
    (run / "last.pt").write_bytes(b"")               # a run stopped before any best.pt
    assert [_teacher_seen_by(c, run, *args) for c in ("distill", "compare")] == [str(run / "last.pt")] * 2
    (run / "best.pt").write_bytes(b"")
    assert [_teacher_seen_by(c, run, *args) for c in ("distill", "compare")] == [str(run / "best.pt")] * 2
    missing = [_teacher_seen_by(c, tmp_path / "no.pt", *args) for c in ("distill", "compare")]
    assert missing[0] == missing[1] and "--teacher: checkpoint" in missing[0] \
        and "no.pt' does not exist" in missing[0]
