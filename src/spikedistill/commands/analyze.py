"""``spikedistill analyze``: accuracy, firing rates, FLOPs/SOPs and energy of a checkpoint.

    spikedistill analyze --checkpoint RUN/best.pt [--data.root PATH] [--batches N]
                         [--teacher TEACHER/best.pt] [--timesteps 1,2,4] [--out DIR]

Writes ``report.md``, ``report.json`` and ``firing_rates.png`` to ``--out`` (default
``RUN/analysis``) and prints the Markdown report. Conventions: :mod:`spikedistill.analysis.counting`.
"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("analyze", help="firing rates, FLOPs/SOPs, energy and accuracy of a "
                                       "checkpoint (Markdown + JSON + PNG)")
    p.add_argument("--checkpoint", required=True, help="student (or ANN) checkpoint, e.g. RUN/best.pt")
    p.add_argument("--teacher", default=None,
                   help="teacher for the ANN energy column, built as training builds it: a "
                        "spikedistill checkpoint (RUN_DIR or best.pt), or the weights file of "
                        "the run's torchvision/timm/python teacher (default: none)")
    p.add_argument("--batches", type=int, default=None,
                   help="evaluate only N test batches, drawn in a fixed random order so that they are a "
                        "representative sample (default: the whole test set, in order)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="test batch size (default: the run's train.eval_batch_size)")
    p.add_argument("--timesteps", default=None,
                   help="also evaluate at these T, e.g. 1,2,4 (accuracy-vs-T table)")
    p.add_argument("--e-mac", type=float, default=4.6, help="energy per MAC in pJ (default 4.6)")
    p.add_argument("--e-ac", type=float, default=0.9, help="energy per AC in pJ (default 0.9)")
    p.add_argument("--energy-images", type=int, default=None, metavar="N",
                   help="also count the first N test images one by one: per-image SOPs / MACs "
                        "/ energy as distributions (mean, 95 %% interval, percentiles) per layer "
                        "and timestep, written to energy.json / energy.md")
    p.add_argument("--cost-model", default="45nm_fp32",
                   help="cost model of the per-image energy: 45nm_fp32 (4.6 / 0.9 pJ), "
                        "45nm_fp16, 45nm_int32, 45nm_int8 (Horowitz ISSCC 2014)")
    p.add_argument("--out", default=None, help="output directory (default: RUN/analysis)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.epilog = "Dataset keys of the run config can be changed with --data.root PATH etc."
    p.set_defaults(func=run)


def run(args) -> int:
    from spikedistill.analysis.loading import (eval_loader, input_affine_of, load_model,
                                               load_teacher, parse_int_list, run_config)
    from spikedistill.analysis.report import analyze, to_markdown, write_report
    from spikedistill.commands.common import overrides_from_args
    from spikedistill.engine.distributed import resolve_device
    from spikedistill.errors import ConfigError

    if args.energy_images is not None and args.energy_images < 1:
        raise ConfigError(f"--energy-images must be a positive integer, got {args.energy_images}")
    from spikedistill.analysis.energy import COST_MODELS
    if args.cost_model not in COST_MODELS:
        raise ConfigError(f"--cost-model: expected one of {', '.join(COST_MODELS)}, got "
                          f"{args.cost_model!r}")
    if args.batches is not None and args.batches < 1:
        raise ConfigError(f"--batches must be a positive integer, got {args.batches}")
    timesteps = parse_int_list(args.timesteps, "--timesteps")
    device = resolve_device(args.device, key="--device")
    model, meta = load_model(args.checkpoint, device)
    cfg = run_config(meta, overrides_from_args(args))
    loader, pipe = eval_loader(cfg, device, args.batch_size, sample=args.batches is not None)
    affine = input_affine_of(pipe)        # frames: event counts normalised by the loader
    teacher = load_teacher(cfg, pipe, device, args.teacher) if args.teacher else None
    result = analyze(model, loader, batches=args.batches, teacher=teacher, e_mac=args.e_mac,
                     e_ac=args.e_ac, timesteps=timesteps, input_affine=affine,
                     teacher_frames=cfg.teacher.frames)
    result["checkpoint"] = str(meta.get("path", args.checkpoint))
    out = Path(args.out) if args.out else Path(meta.get("path", args.checkpoint)).parent / "analysis"
    paths = write_report(result, out)
    print(to_markdown(result))
    if args.energy_images is not None:
        paths.update(_energy_report(model, loader, affine, args, out))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _energy_report(model, loader, affine, args, out: Path) -> dict:
    """Per-image energy distributions (:mod:`spikedistill.analysis.energy`) of the first
    ``--energy-images`` test images, written atomically to ``energy.json`` / ``energy.md``."""
    import json

    from spikedistill.analysis.energy import energy_distribution
    from spikedistill.analysis.energy import to_markdown as energy_markdown
    from spikedistill.atomic import atomic_write_text

    dev = next(model.parameters()).device
    batches = ((x.to(dev), y) for x, y in loader)
    res = energy_distribution(model, batches, cost=args.cost_model, input_affine=affine,
                              max_images=args.energy_images)
    md = energy_markdown(res)
    print(md)
    return {"energy_json": atomic_write_text(out / "energy.json", json.dumps(res, indent=1)),
            "energy_md": atomic_write_text(out / "energy.md", md)}
