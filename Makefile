# The two commands of the README:
#   make demo   installs what is needed, then trains an ANN teacher and an SNN student on the
#               embedded digits dataset and prints a table (a few minutes on 2 CPU cores)
#   make test   installs what is needed, then runs the whole test suite
PYTHON ?= python3
PIP_INSTALL = $(PYTHON) -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: install demo test bench-cpu

install:
	$(PIP_INSTALL) -e ".[dev]"

demo: install
	$(PYTHON) -m spikedistill demo

test: install
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

bench-cpu: install
	$(PYTHON) benchmarks/train_step.py
	$(PYTHON) benchmarks/lif_kernel.py
