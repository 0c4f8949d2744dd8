# Two commands for a fresh clone on Debian + Python 3.11:
#   make run    set up .venv and run the default workflow
#   make test   set up .venv and run the test suite
# and, for development (.ci/run calls them before `make test`):
#   make lint   ruff check and format --check; snakemake --lint and snakefmt --check
#   make docs   the generated pages checked current, then the site (mkdocs build --strict) into site/
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup run test report clean lint docs

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

# The docs and lint extras, only for those who build the site or lint.
$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test,docs,lint]"
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES)

report: run
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

test: setup
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

docs: $(VENV)/.dev-installed
	$(BIN)/python docs/gen.py --check
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf results .snakemake site
