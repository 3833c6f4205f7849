"""Worker for test_distributed.py, launched as ``torchrun --nproc_per_node=2 ddp_worker.py OUT``.

Runs on CPU with gloo: (1) an uninterrupted 2-epoch DDP run, (2) the same run crashing after
epoch 1 and resumed. Each rank writes ``OUT/rank{r}.json`` with what the test checks.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_helpers import tiny_config  # noqa: E402

from spikedistill.engine import checkpoint as ck  # noqa: E402
from spikedistill.data.pipeline import open_pipeline  # noqa: E402
from spikedistill.engine.trainer import evaluate, run_training  # noqa: E402


class Crash(RuntimeError):
    pass


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    extra = ["train.epochs=2", "train.batch_size=16", "train.batch_size_is=global",
             "data.test_subset=75", "train.eval_batch_size=8"]
    report = {"rank": rank, "world": world}

    full = run_training(tiny_config(out, "full", extra))
    report.update(best_acc=full.best_acc, last_acc=full.last_acc, global_batch=full.global_batch,
                  world_size=full.world_size, run_dir=full.run_dir)

    # replicas hold identical parameters and buffers
    flat = torch.cat([t.detach().flatten().double() for t in full.model.state_dict().values()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    report["replicas_identical"] = all(torch.equal(gathered[0], g) for g in gathered)

    # the all-reduced accuracy equals a single-process evaluation of the same weights
    pipe = open_pipeline(tiny_config(out, "x", extra).data)
    single = evaluate(full.model, pipe.eval_loader(8, torch.device("cpu")), "cpu", "fp32",
                      reduce=False)
    report["single_process_acc"] = single
    report["test_size"] = len(pipe.splits.test)

    # crash after epoch 1 (on every rank), then resume the distributed run
    def hook(epoch, record):
        lock = json.loads((out / "crashed" / "run.lock").read_text())
        report.update(lock_pid=lock["pid"], pid=os.getpid())
        if epoch >= 1:
            raise Crash("simulated")

    try:
        run_training(tiny_config(out, "crashed", extra), on_epoch_end=hook)
        report["crashed"] = False
    except Crash:
        report["crashed"] = True
    resumed = run_training(None, resume=out / "crashed")
    report.update(resumed_start=resumed.start_epoch, resumed_last_acc=resumed.last_acc)
    dist.barrier()
    report["lock_left"] = (out / "crashed" / "run.lock").exists()
    if rank == 0:
        a = ck.load_checkpoint(out / "full" / "last.pt")
        b = ck.load_checkpoint(out / "crashed" / "last.pt")
        report["resume_equal"] = a["model"].keys() == b["model"].keys() and all(
            torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        report["rng_entries"] = len(b["rng"])
        rf = torch.cat([t.flatten().double() for t in a["model"].values()])
        report["checkpoint_matches_replica"] = torch.equal(rf, flat)
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
