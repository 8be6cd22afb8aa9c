# devicefit developer tasks. `make setup` provisions .venv (CPython 3.11) and .lite (the Paddle Lite
# interpreter); it keeps stamps of its inputs, so it is cheap to rerun and every other target depends on it.
# Knobs: PYTEST_ARGS="-k lite -x" for `make test`; PYTHON, DEVICEFIT_LITE_BASE_PYTHON, DEVICEFIT_LITE_ROUTE for
# `make setup` (see scripts/setup.sh).

PYTEST_ARGS ?=
VENV := .venv

.PHONY: setup test-deps test demo clean

setup:
	@bash scripts/setup.sh

test-deps:
	@bash scripts/test-deps.sh

test: setup test-deps
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/devicefit fit --example digits-vit --device host-x86 --out runs/demo

clean:
	rm -rf .venv .lite runs build .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
