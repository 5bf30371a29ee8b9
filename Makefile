# The two commands of the README: `make demo` and `make test`.
# Both bootstrap .venv when it is missing or when pyproject.toml changed (a stamp file).
# `make test` also provisions what the suite needs outside the venv (.ci/provision.sh: apt packages,
# a throwaway PostgreSQL) and runs every test; CI runs exactly this through .ci/run.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kit-stamp
DEMO_DIR ?= runs/demo
PORT ?= 3000
# Extra pytest arguments for `make test`, e.g. PYTEST_ARGS="tests/test_tune.py -x".
PYTEST_ARGS ?=

.PHONY: demo test lint venv notebooks bench report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned exactly: resolves to the CPU wheel, never a multi-GB CUDA build.
	$(BIN)/pip install -q "torch==2.13.*"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/kit demo --out $(DEMO_DIR) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check kit tests bench bentos
	$(BIN)/mypy kit

test: lint
	bash .ci/test.sh $(PYTEST_ARGS)

# Sync each notebooks/NN_name.py (py:percent, the file to edit) with its paired NN_name.ipynb, whichever
# was edited last (pairing: notebooks/jupytext.toml). Commit both; the .ipynb stays without outputs.
notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/[0-9]*.py

# Each script prints a ratio against a baseline measured in the same run (about 35 minutes in all).
bench: $(STAMP)
	$(BIN)/python bench/train.py
	$(BIN)/python bench/quantize.py
	$(BIN)/python bench/compress.py
	$(BIN)/python bench/explain.py
	$(BIN)/python bench/tune.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/serve_layers.py 2>/dev/null
	$(BIN)/python bench/notebooks.py
	$(BIN)/python bench/reliability.py
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/release.py
	$(BIN)/python bench/release_loop.py
	$(BIN)/python bench/images.py
	$(BIN)/python bench/images_folder.py

report: $(STAMP)
	$(BIN)/kit run --smoke

clean:
	rm -rf runs reports .pytest_cache .mypy_cache .ruff_cache
