"""``spikedistill eval``: top-1 accuracy of a checkpoint on its dataset's test split.

    spikedistill eval --checkpoint RUN_DIR/best.pt [--data.root PATH] [--set model.T=4]
                      [--every-timestep [--plot acc_by_T.png]]

The dataset and model settings come from the config stored in the checkpoint; ``--config``,
``--set`` and dotted flags override them (``model.T``, neuron settings and ``last_activation``
can change at evaluation; anything that changes the weights' shapes is a CheckpointError).
Where data is read and cached is never taken from the checkpoint: ``data.root`` and
``data.cache_dir`` are the defaults unless given (``--data.root PATH``, ``--data.cache_dir``).
"""

from __future__ import annotations

import json

from spikedistill.commands.common import overrides_from_args
from spikedistill.config import build_config, deep_merge, read_yaml
from spikedistill.errors import CheckpointError, DataError


def register(sub) -> None:
    p = sub.add_parser("eval", help="top-1 test accuracy of a checkpoint",
                       description="top-1 test accuracy of a checkpoint on its dataset's test split",
                       epilog="config keys: --set section.key=value or --section.key value")
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="RUN_DIR/best.pt, RUN_DIR/last.pt, or a run directory (best.pt, else last.pt)")
    p.add_argument("--config", default=None,
                   help="YAML merged over the checkpoint's config (e.g. another data.root)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="dotted overrides, e.g. --set model.T=4")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.add_argument("--every-timestep", action="store_true",
                   help="also the top-1 at every T' <= T of a spiking model, from the same run's "
                        "per-timestep outputs (a table; 'top1_by_timestep' in --json)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write the accuracy-versus-T' plot here (implies --every-timestep)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import torch

    from spikedistill.analysis.loading import without_data_location
    from spikedistill.engine.checkpoint import (checkpoint_meta, load_checkpoint,
                                                load_model_from_checkpoint)
    from spikedistill.engine.distributed import resolve_device
    from spikedistill.data.pipeline import open_pipeline
    from spikedistill.engine.loop import evaluate
    from spikedistill.models import input_frames, model_kwargs
    from spikedistill.run_files import run_checkpoint

    path = run_checkpoint(args.checkpoint)
    ckpt = load_checkpoint(path)
    saved = dict(ckpt["config"] or {})
    base, dropped = without_data_location(saved)
    saved = dict(base)
    if args.config:
        deep_merge(base, read_yaml(args.config))
    cfg_saved = build_config(saved)
    cfg = build_config(base, overrides_from_args(args))
    meta = checkpoint_meta(ckpt)
    del ckpt

    try:
        pipe = open_pipeline(cfg.data, T=input_frames(cfg.model))
    except DataError as exc:
        if cfg.data.root in (None, "") and "root" in dropped:
            raise DataError(f"{exc}; the checkpoint's stored data.root ({dropped['root']}) is "
                            "not used: pass --data.root PATH") from None
        raise
    splits = pipe.splits
    K = int(meta["model_kwargs"].get("num_classes", pipe.num_classes))
    if K != pipe.num_classes:
        raise CheckpointError(f"checkpoint '{path}' predicts {K} classes but dataset "
                              f"'{cfg.data.name}' has {pipe.num_classes}")
    C = meta["model_kwargs"].get("in_channels")
    if isinstance(C, int) and C not in (pipe.in_channels, pipe.ann_in_channels(cfg.teacher.frames)):
        raise CheckpointError(f"checkpoint '{path}' takes {C}-channel images but dataset "
                              f"'{cfg.data.name}' has {pipe.in_channels} channels")
    # constructor arguments the overrides changed (T, neuron, last activation, ...)
    before = model_kwargs(cfg_saved.model, K, pipe.in_channels) if saved else {}
    after = model_kwargs(cfg.model, K, pipe.in_channels) if saved else {}
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    device = resolve_device(cfg.train.device)
    model, _ = load_model_from_checkpoint(path, device, **changed)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    loader = pipe.eval_loader(cfg.train.eval_batch_size, device,
                              channels_last=cfg.train.channels_last)
    acc = evaluate(model, loader, device, cfg.train.amp, reduce=False, frames=cfg.teacher.frames)
    T = getattr(model, "T", None) if getattr(model, "is_spiking", False) else None
    info = {"checkpoint": str(path), "model": meta["model_name"], "T": T,
            "dataset": cfg.data.name, "test_images": len(splits.test), "top1": acc,
            "epoch": meta.get("epoch")}
    if args.every_timestep or args.plot:
        from spikedistill.analysis.timesteps import (accuracy_by_timestep,
                                                     plot_accuracy_by_timestep)
        info["top1_by_timestep"] = accuracy_by_timestep(model, loader, device)
        if args.plot:
            plot_accuracy_by_timestep(info["top1_by_timestep"], args.plot, title=meta["model_name"])
    if args.json:
        print(json.dumps(info))
    else:
        t_txt = f", T={T}" if T is not None else ""
        print(f"{Path(path)}: {meta['model_name']}{t_txt} (epoch {meta.get('epoch')}) on "
              f"{cfg.data.name} test ({len(splits.test)} images): top-1 {100.0 * acc:.2f} %")
        if "top1_by_timestep" in info:
            from spikedistill.analysis.timesteps import timestep_table
            print(timestep_table(info["top1_by_timestep"]))
    return 0
