"""``spikedistill export``: write a spiking student as a NIR graph, or any trained model's
weights as a plain state dict.

    spikedistill export --checkpoint RUN/best.pt --format nir OUT.nir [--allow-relu]
                        [--input-shape C,H,W] [--T N]
    spikedistill export --checkpoint RUN/best.pt --format state_dict OUT.pth|OUT.safetensors

``state_dict`` writes the network's own keys (a tapped network's ``net.`` prefix stripped), the
layout of its library: a torchvision ResNet trained with ``train-teacher`` then loads as
``teacher.source=torchvision teacher.weights=OUT.pth``.

BatchNorm is folded into the convs, the LIF neurons become ``nir.LIF`` for dt = 1e-4 s
(tau = dt/(1-decay), r = 1, v_threshold = (1-decay) threshold, strict), residual additions are
edges into a shared neuron node, pools are sum pools, the head is 1x1 convs, and the logits are
the mean over T of the graph's per-step output (dt, T, the threshold rule and the readout are in
the graph metadata). snnTorch's and SpikingJelly's ``import_from_nir`` and Norse's node map with
``nirtorch.nir_to_torch`` load it as it is. A ReLU last activation is refused unless
``--allow-relu``, which writes a marked identity placeholder that only spikedistill's
``run_nir`` evaluates as a ReLU (the peers refuse the graph). See
:mod:`spikedistill.analysis.nir_export`.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a spiking student (NIR graph) or a model's weights "
                                      "(state dict)")
    p.add_argument("out", metavar="OUT", help="output file, e.g. student.nir")
    p.add_argument("--checkpoint", required=True, help="student checkpoint, e.g. RUN/best.pt")
    p.add_argument("--format", default="nir", choices=["nir", "state_dict"],
                   help="nir (spiking student graph) | state_dict (.pth / .safetensors weights)")
    p.add_argument("--allow-relu", action="store_true",
                   help="export a ReLU last activation as a marked identity placeholder "
                        "(not a faithful NIR graph: only spikedistill's run_nir applies the "
                        "ReLU; snnTorch, SpikingJelly and Norse refuse it)")
    p.add_argument("--input-shape", default=None,
                   help="C,H,W of one image (default: from the run's dataset)")
    p.add_argument("--T", type=int, default=None,
                   help="timesteps of the readout (default: the checkpoint's T)")
    p.set_defaults(func=run)


def check_target(out, fmt: str = "nir") -> None:
    """ConfigError unless ``out`` can become a file: it is not a directory and no existing
    folder on its way is a file (``fmt`` only picks the example name of the message)."""
    from pathlib import Path

    from spikedistill.errors import ConfigError

    path = Path(out)
    suffix = ".nir" if fmt == "nir" else ".pth"
    if path.is_dir():
        raise ConfigError(f"export target '{out}' is a directory; expected a file path such as "
                          f"'{path / ('student' + suffix)}'")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"export target '{out}': '{parent}' is a file, not a folder; "
                                  "expected a path in a folder")
            break


def run(args) -> int:
    import warnings

    from spikedistill.analysis.loading import input_shape, load_model, run_config
    from spikedistill.analysis.nir_export import export_nir
    from spikedistill.commands.common import overrides_from_args
    from spikedistill.errors import ConfigError

    check_target(args.out, args.format)
    if args.format == "state_dict":
        from spikedistill.models import export_state_dict
        path = export_state_dict(args.checkpoint, args.out)
        print(f"wrote {path} (state dict of {args.checkpoint})")
        return 0
    overrides = {} if args.T is None else {"T": args.T}
    if args.T is not None and args.T < 1:
        raise ConfigError(f"--T must be a positive integer, got {args.T}")
    model, meta = load_model(args.checkpoint, "cpu", **overrides)
    cfg = run_config(meta, overrides_from_args(args))
    shape = input_shape(model, cfg, args.input_shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_nir(model, args.out, shape, allow_relu=args.allow_relu)
    for w in caught:
        print(f"warning: {w.message}")
    print(f"wrote {path} (NIR graph of {meta.get('model_name')}, input {shape}, "
          f"T = {model.T})")
    return 0
