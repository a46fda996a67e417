# `make check` runs the linters and the type checker, as CI does (.ci/run).
BIN ?= .venv/bin

check:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test:
	$(BIN)/pytest

bench:
	$(BIN)/python bench/run.py

.PHONY: check test bench
