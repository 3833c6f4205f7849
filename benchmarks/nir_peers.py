"""Per-peer table for the closing note: the default NIR export of a digits student, loaded with
snnTorch's and SpikingJelly's import_from_nir and with Norse's node map through
nirtorch.nir_to_torch, run on the 450 test digits in batches; max |logit difference| against the
student, per-layer spike-count agreement, predictions agreeing. Also spikedistill's run_nir.

    python benchmarks/nir_peers.py RUN_DIR [BATCH]

RUN_DIR: a spiking ResNet student trained on the digits, e.g. from
``spikedistill train --set data.name=digits model.last_activation=lif model.T=2 train.epochs=2``.
Needs the dev extras (snntorch, norse, nirtorch, spikingjelly).
"""
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path
from functools import partial

import nir
import torch

from spikedistill.analysis.loading import eval_loader, load_model, run_config
from spikedistill.analysis.nir_export import export_nir, simulate_nir
from spikedistill.neurons import LIF

run_dir, bs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 150
model, meta = load_model(run_dir, "cpu")
cfg = run_config(meta)
loader, _ = eval_loader(cfg, "cpu", bs)
path = export_nir(model, Path(tempfile.mkdtemp()) / "student.nir", (1, 8, 8))
graph = nir.read(str(path))
T = int(graph.metadata["T"])


def student(x):
    counts = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: counts.__setitem__(n.replace(".", "_"), int(o.sum())))
             for n, m in model.named_modules() if isinstance(m, LIF)]
    with torch.no_grad():
        y = model(x)
    for h in hooks:
        h.remove()
    return y, counts


def stepped(make, kinds):
    def run(x):
        net = make()
        counts = {}
        def hook(m, i, o, n):
            z = o[0] if isinstance(o, tuple) else o
            counts[n] = counts.get(n, 0) + int(z.sum())
        for n, m in net.named_children():
            if isinstance(m, kinds):
                m.register_forward_hook(partial(hook, n=n))
        outs, state = [], None
        with torch.no_grad():
            for _ in range(T):
                out, state = net(x, state)
                outs.append(out)
        return torch.stack(outs).mean(0).flatten(1), counts
    return run


def snntorch_peer():
    import snntorch
    from snntorch.import_nir import import_from_nir
    def make():
        with contextlib.redirect_stdout(io.StringIO()):
            return import_from_nir(nir.read(str(path)))
    return stepped(make, snntorch.Leaky)


def sj_peer():
    from spikingjelly.activation_based.nir_exchange import from_nir as sj
    return stepped(lambda: sj.import_from_nir(str(path)), sj._NIRStatefulModule)


def norse_peer():
    import nirtorch
    from norse.torch.module.lif_box import LIFBoxCell
    from norse.torch.utils.import_nir import _import_norse_module
    f = partial(_import_norse_module, dt=float(graph.metadata["dt"]))
    kinds = {type(n) for n in graph.nodes.values()} - {nir.Input, nir.Output}
    return stepped(lambda: nirtorch.nir_to_torch(nir.read(str(path)), {k: f for k in kinds}), LIFBoxCell)


def ours(x):
    r = simulate_nir(graph, x)
    return r.logits, {k.replace(".", "_"): v for k, v in r.spike_counts.items()}


peers = {"snnTorch 1.0.0 import_from_nir": snntorch_peer(),
         "SpikingJelly 2.0.0 import_from_nir": sj_peer(),
         "Norse 1.1.0 node map + nirtorch 2.6 nir_to_torch": norse_peer(),
         "spikedistill run_nir (float32)": ours}
ref_counts, ref_logits, labels, xs = {}, [], [], []
for x, y in loader:
    logits, c = student(x)
    ref_logits.append(logits)
    labels.append(y)
    xs.append(x)
    for k, v in c.items():
        ref_counts[k] = ref_counts.get(k, 0) + v
ref = torch.cat(ref_logits)
n = ref.shape[0]
print(f"student {meta.get('model_name')} T={T}, {n} test digits, batch {bs}, "
      f"student accuracy {(ref.argmax(1) == torch.cat(labels)).float().mean() * 100:.2f} %, "
      f"{len(ref_counts)} spiking layers, {sum(ref_counts.values())} spikes")
print("| peer | batch | max abs logit diff | layers with identical spike counts | same prediction | s |")
print("|---|---|---|---|---|---|")
for name, peer in peers.items():
    t0 = time.time()
    counts, outs = {}, []
    for x in xs:
        o, c = peer(x)
        outs.append(o)
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
    out = torch.cat(outs)
    same = sum(counts.get(k) == v for k, v in ref_counts.items())
    print(f"| {name} | {bs} | {(out - ref).abs().max().item():.2e} | {same}/{len(ref_counts)} | "
          f"{int((out.argmax(1) == ref.argmax(1)).sum())}/{n} | {time.time() - t0:.1f} |")
print("per-layer student spike counts:", ref_counts)
