# The two commands of the README:
#   make demo   installs what is needed, then trains an ANN teacher and CE / KD / CKD spiking
#               students over 3 seeds on the embedded digits dataset and prints mean +- std and
#               the paired differences against CE (under 5 minutes on 2 CPU cores)
#   make test   installs what is needed, then runs the whole test suite
#
# Everything installs into the project's own virtual environment $(VENV) (default .venv, created
# with $(PYTHON) on first use), never into the system Python; activate it with
# `. .venv/bin/activate` to run `spikedistill` yourself.
#
# CPU-only machine: `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` installs
# torch's CPU wheels first (a few hundred MB instead of several GB of CUDA libraries); without
# TORCH_INDEX, torch comes from the default index like everything else (docs/install.md).
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON = $(VENV)/bin/python
TORCH_INDEX ?=
PIP_INSTALL = $(VENV_PYTHON) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: install demo test bench-cpu gpu-check test-gpu-image

$(VENV_PYTHON):
	@echo "make: creating the project virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

# SpikingJelly 2.0's wheel requires torchaudio (no build for torch 2.14) but never imports it:
# it goes in without its requirements; what its modules import (loguru, h5py) is in the dev extra.
# The NIR peers (snntorch, norse, nirtorch) install with their own requirements from the dev extra.
install: $(VENV_PYTHON)
	@echo "make: installing spikedistill and its dev extra into $(VENV) (not the system Python)"
ifneq ($(TORCH_INDEX),)
	$(PIP_INSTALL) --index-url $(TORCH_INDEX) torch torchvision
endif
	$(PIP_INSTALL) -e ".[dev]"
	$(PIP_INSTALL) --no-deps spikingjelly==2.0.0

demo: install
	$(VENV_PYTHON) -m spikedistill demo

# One torch thread per test process: two xdist workers on two cores; more threads than cores
# makes oneDNN's OpenMP spin-waits 10-20x slower.
test: install
	OMP_NUM_THREADS=1 $(VENV_PYTHON) -m pytest -q -n 2 --dist loadfile --durations=10

bench-cpu: install
	$(VENV_PYTHON) benchmarks/train_step.py
	$(VENV_PYTHON) benchmarks/lif_kernel.py

# The checks that need one GPU, in one command (< 8 minutes): make gpu-check DATA=PATH/cifar10-jpeg.tar.gz
DATA ?= ../shared/data/cifar10-jpeg.tar.gz
gpu-check: install
	$(VENV_PYTHON) benchmarks/gpu_check.py --data $(DATA) --json gpu_check.json

# The suite under the GPU machine's versions (Python 3.12, torch 2.11, torchvision 0.26, Triton 3.6,
# NumPy < 2.4) in a venv of its own (~/.cache/spikedistill/venv-gpu-image); CI-optional, the first
# run downloads torch. Variables: PYTHON_GPU_IMAGE, GPU_IMAGE_VENV, TORCH_INDEX (tools/test_gpu_image.sh)
test-gpu-image:
	tools/test_gpu_image.sh
