# Two commands for a fresh clone on Debian + Python 3.11:
#   make run    set up .venv and run the default workflow
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup run test lint report clean

setup: $(VENV)/.installed

# torch first, pinned to the CPU build that pip finds locally (a plain
# `pip install torch` may pull a multi-GB CUDA build); then the project,
# whose torch range that build satisfies.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES)

report: run
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

test: setup
	$(BIN)/python -m pytest -q

# The workflow's own checks (CI runs them too); neither writes under results/.
lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

clean:
	rm -rf results .snakemake
