# Two commands a newcomer needs (see README.md):
#   make demo   -- set up a virtual env and run the default experiment (VQ-VAE on Fashion-MNIST)
#   make test   -- set up the same env and run the test suite
PY ?= python3
VENV ?= .venv
VPY = $(VENV)/bin/python

.PHONY: setup demo test check
setup:
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e ".[test]"

demo: setup
	$(VPY) -m latticejax.data.fetch fashion_mnist
	$(VPY) -m latticejax.main --config=configs/vqvae.py --workdir=runs/demo

test: setup check

# The test command proper (CI runs it inside its own fresh venv; `make test` sets one up first).
check:
	$(VPY) -m ruff check .
	XLA_FLAGS="--xla_force_host_platform_device_count=8" $(VPY) -m pytest -n 2 tests
