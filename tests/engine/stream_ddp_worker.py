"""Worker for test_stream_ddp.py: ``torchrun --standalone --nproc_per_node=2
stream_ddp_worker.py TREE OUT``.

On CPU with gloo: (1) the streaming loader of each rank over a fake ImageNet tree whose labels
are replaced by the sample indices (so a batch's ``y`` says which samples it holds), for two
epochs; (2) a streamed 2-rank training run. Each rank writes ``OUT/rank{r}.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from spikedistill.config import build_config
from spikedistill.data.sets.imagenet import index_imagenet
from spikedistill.data.stream import FileList, StreamLoader
from spikedistill.engine.trainer import run_training


def main() -> None:
    tree, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    report = {"rank": rank, "world": world}

    files = index_imagenet(tree).train
    ident = FileList(files.paths, files.offsets, files.sizes, np.arange(len(files)))
    loader = StreamLoader(ident, 3, shuffle=True, image_size=16, seed=7, rank=rank,
                          world_size=world, workers=1, persistent_workers=True)
    report["steps"] = len(loader)
    report["epochs"] = {}
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        report["epochs"][epoch] = [int(v) for _, y in loader for v in y.tolist()]
    report["n"] = len(files)

    cfg = build_config({}, [
        "data.name=imagenet", f"data.root={tree}", "data.pipeline=stream", "data.image_size=32",
        "data.workers=0", "data.augment.autoaugment=false", "data.augment.random_erasing=0",
        "model.name=spiking_resnet20", "model.width_mult=1", "model.T=1", "train.epochs=1",
        "train.batch_size=6", "train.batch_size_is=global", "train.eval_batch_size=4",
        "train.device=cpu", "train.threads=1", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", f"run.out_dir={out}", "run.name=ddp"])
    res = run_training(cfg)
    report.update(global_batch=res.global_batch, world_size=res.world_size, last_acc=res.last_acc)
    flat = torch.cat([t.detach().flatten().double() for t in res.model.state_dict().values()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    report["replicas_identical"] = all(torch.equal(gathered[0], g) for g in gathered)
    report["trained"] = not torch.equal(flat, flat * 0)
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
