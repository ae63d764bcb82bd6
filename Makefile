# Two commands for a newcomer: `make demo` and `make test`. Both install what is missing first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Two workers (most tests wait on windows, not on the CPU); a file's tests stay on one worker,
# so module fixtures (a demo stack, a browser, a NATS cluster) start once. Tests marked `serial`
# compare latency or CPU with their own baseline: they run afterwards, alone.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial

demo: $(STAMP)
	$(BIN)/mantis-py demo

bench: $(STAMP)
	$(BIN)/python bench/query_bench.py
	$(BIN)/python bench/agent_bench.py
	$(BIN)/python bench/churn_bench.py
	$(BIN)/python bench/parse_bench.py
	$(BIN)/python bench/e2e_bench.py
	$(BIN)/python bench/cluster_bench.py
	$(BIN)/python bench/integrations_bench.py

lint: $(STAMP)
	$(BIN)/ruff check mantis_py tests bench
	$(BIN)/mypy mantis_py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
