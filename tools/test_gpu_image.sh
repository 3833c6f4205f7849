#!/usr/bin/env bash
# make test-gpu-image: the test suite under the GPU machine's versions -- Python 3.12, torch 2.11,
# torchvision 0.26, Triton 3.6, and NumPy < 2.4 (Triton 3.6's CPU interpreter breaks with NumPy
# 2.4: the TRITON_INTERPRET=1 tests need 2.3) -- in a venv of its own, built once and reused.
# Everything else is pinned as in constraints.txt. CI-optional: the first run downloads torch.
#
#   PYTHON_GPU_IMAGE   the Python 3.12 to build the venv with (default: the first python3.12
#                      that runs: on PATH, then pyenv's)
#   GPU_IMAGE_VENV     where the venv lives (default: ~/.cache/spikedistill/venv-gpu-image)
#   TORCH_INDEX        a wheel index for torch / torchvision (default: none, i.e. PyPI, whose
#                      Linux x86_64 torch 2.11.0 is the CUDA 13 build the GPU machine has; it
#                      runs the whole suite without a GPU too). E.g. https://download.pytorch.org/whl/cpu
#                      for the small CPU wheels where that host is reachable
#   extra arguments    go to pytest (default: the whole suite, -n 2 --dist loadfile)
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH=2.11.0 TORCHVISION=0.26.0 TRITON=3.6.0 NUMPY_BELOW=2.4
PY=${PYTHON_GPU_IMAGE:-}
if [ -z "$PY" ]; then
    for cand in python3.12 "$(pyenv root 2>/dev/null)/versions/3.12"*/bin/python3.12; do
        if "$cand" --version >/dev/null 2>&1; then PY=$cand; break; fi
    done
fi
PY=${PY:-python3.12}
VENV=${GPU_IMAGE_VENV:-$HOME/.cache/spikedistill/venv-gpu-image}
TORCH_INDEX=${TORCH_INDEX:-}

if ! "$PY" --version >/dev/null 2>&1; then
    echo "test-gpu-image: $PY not found; set PYTHON_GPU_IMAGE to a Python 3.12 interpreter" >&2
    exit 2
fi
mkdir -p "$(dirname "$VENV")"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"

# constraints.txt with the GPU machine's torch / torchvision / Triton / NumPy
CONSTRAINTS="$VENV/constraints-gpu-image.txt"
sed -e "s/^torch==.*/torch==$TORCH/" -e "s/^torchvision==.*/torchvision==$TORCHVISION/" \
    -e "s/^triton==.*/triton==$TRITON/" -e "s/^numpy==.*/numpy<$NUMPY_BELOW/" \
    constraints.txt > "$CONSTRAINTS"
PIP=("$VPY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS")
INDEX=()
[ -z "$TORCH_INDEX" ] || INDEX=(--index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple)
"${PIP[@]}" "${INDEX[@]}" torch torchvision
"${PIP[@]}" triton numpy
"${PIP[@]}" -e ".[dev]"
"${PIP[@]}" --no-deps spikingjelly==2.0.0

"$VPY" - "$TORCH" "$TORCHVISION" "$TRITON" "$NUMPY_BELOW" <<'PYEOF'
import sys
import numpy, torch, torchvision, triton
want_torch, want_tv, want_triton, numpy_below = sys.argv[1:]
got = {"python": sys.version.split()[0], "torch": torch.__version__,
       "torchvision": torchvision.__version__, "triton": triton.__version__,
       "numpy": numpy.__version__, "cuda build": torch.version.cuda}
print("test-gpu-image: " + ", ".join(f"{k} {v}" for k, v in got.items()), flush=True)
ok = (sys.version_info[:2] == (3, 12) and torch.__version__.split("+")[0] == want_torch
      and torchvision.__version__.split("+")[0] == want_tv and triton.__version__ == want_triton
      and tuple(map(int, numpy.__version__.split(".")[:2])) < tuple(map(int, numpy_below.split("."))))
sys.exit(0 if ok else "test-gpu-image: the venv does not hold the GPU machine's versions")
PYEOF

if [ $# -eq 0 ]; then set -- -q -n 2 --dist loadfile --durations=10; fi
OMP_NUM_THREADS=1 exec "$VPY" -m pytest "$@"
