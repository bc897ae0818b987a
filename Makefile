# Every target makes its own virtual environment, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test promtool lint bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m node demo

# tests/deploy runs promtool (Debian package prometheus): installed here when missing, if we can
test: $(STAMP) promtool
	$(BIN)/python -m pytest -q

promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (apt-get install prometheus)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || \
	      { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }; \
	  else \
	    echo "promtool is missing and cannot be installed here (needs root and apt-get):"; \
	    echo "install the package prometheus; the tests in tests/deploy fail without it"; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# One long fuzzing campaign over every decoder (not part of `make test`).
fuzz: $(STAMP)
	$(BIN)/python -m tests.protocol.fuzz --runs $${RUNS:-1000000}

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
