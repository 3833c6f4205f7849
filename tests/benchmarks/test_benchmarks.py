"""The benchmark scripts run end to end on the CPU (tiny shapes) and write their JSON.

Speed is never asserted here (that is what the scripts report on a GPU); these tests check that
the one-command benchmarks stay runnable and that their correctness checks pass.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, *args, "--json", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_lif_kernel_benchmark_on_cpu(tmp_path):
    data, stdout = _run(["benchmarks/lif_kernel.py", "--T", "1", "4", "--dtype", "fp32",
                         "--impl", "torch_loop"], tmp_path)
    rows = [r for r in data["results"] if r.get("impl") == "torch_loop"]
    assert {r["T"] for r in rows} == {1, 4}
    assert all(r["check"].startswith("ok") for r in rows), rows


def test_train_step_benchmark_on_cpu(tmp_path, reference_step):
    data, stdout = _run(["benchmarks/train_step.py", "--T", "1", "--kind", "reference", "ours",
                         "--dtype", "fp32", "--steps", "2", "--warmup", "1"], tmp_path)
    kinds = {r["kind"]: r for r in data["results"]}
    assert set(kinds) == {"reference", "ours"}
    assert all(r["status"] == "ok" for r in kinds.values()), kinds
    assert all(r["images_per_s"] > 0 for r in kinds.values())
    assert "ours" in stdout and "reference" in stdout
