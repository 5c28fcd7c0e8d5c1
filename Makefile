# Two commands a newcomer needs: `make demo` and `make test`. Both are idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgeslim-installed

.PHONY: setup data demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(VENV)
	touch $(STAMP)

data:
	bash scripts/ensure-data.sh

demo: setup data
	$(VENV)/bin/edgeslim demo

test: setup data
	$(PY) -m pytest -q

bench: setup data
	$(PY) benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache
