# Tuition: `make demo` runs it, `make test` checks it. Both build .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint fmt unit bench bench-ledger bench-hordak bench-scaleout clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Tuition needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tuition demo

test: lint
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# Load and throughput (see docs/performance.md); never part of make test.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-ledger: $(STAMP)
	$(BIN)/python -m bench.ledger

bench-hordak: $(STAMP)
	$(BIN)/python -m bench.hordak

bench-scaleout: $(STAMP)
	$(BIN)/python -m bench.scaleout

clean:
	rm -rf $(VENV) tuition.db tuition.db-wal tuition.db-shm .pytest_cache .mypy_cache .ruff_cache
