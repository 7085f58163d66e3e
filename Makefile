# Two commands a newcomer needs (see README.md):
#   make demo   -- set up a virtual env and run the default experiment (VQ-VAE on Fashion-MNIST)
#   make test   -- run the test suite
PY ?= python3
VENV ?= .venv

.PHONY: setup demo test lint
setup:
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[test]"

demo: setup
	$(VENV)/bin/python -m latticejax.main --config=configs/vqvae.py --workdir=runs/demo

test:
	python -m ruff check .
	XLA_FLAGS="--xla_force_host_platform_device_count=8" python -m pytest -n 2 tests
