# The two front-door commands: `make demo` and `make test`.
# Each creates .venv and installs the project (with its dev tools) first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/iop demo --reset

lint: $(STAMP)
	$(BIN)/ruff check src projections tests scripts
	$(BIN)/ruff format --check src projections tests scripts
	$(BIN)/mypy src projections
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -n 2 -rP --durations=10
