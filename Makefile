# CellGuard: `make demo` and `make test` work on a fresh machine with only Python 3.11 and pip.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

export CELLGUARD_HOME ?= $(CURDIR)/var
export AIRFLOW_HOME ?= $(CELLGUARD_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
export GX_ANALYTICS_ENABLED := False
export PYTHONPATH := $(CURDIR)/plugins$(if $(PYTHONPATH),:$(PYTHONPATH))

DEMO_VEHICLES ?= 50
DEMO_DAYS ?= 100

.PHONY: setup demo dag-test test lint bench lock clean airflow-db

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "CellGuard needs Python 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.txt
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $@

airflow-db: setup
	@mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -30 $(AIRFLOW_HOME)/db-migrate.log; exit 1)

demo: setup airflow-db
	$(BIN)/cellguard simulate --vehicles $(DEMO_VEHICLES) --days $(DEMO_DAYS) --fault-fraction 0.5 --format mixed --damaged
	$(BIN)/cellguard simulate --vehicles 3 --days 3 --shape wide_export --seed 7
	@CELLGUARD_INGEST_MAX_OBJECTS=100000 $(MAKE) --no-print-directory dag-test DAG=bms_ingest
	$(BIN)/cellguard status
	@$(MAKE) --no-print-directory dag-test DAG=bms_features
	@$(MAKE) --no-print-directory dag-test DAG=bms_training
	@echo "== champions (AP on the time-split test window, beside the reference recipe on the same split) =="
	$(BIN)/cellguard models
	@echo "Data Docs: file://$(CELLGUARD_HOME)/lake/reports/data_docs/index.html"
	@echo "Try:       $(BIN)/duckdb -readonly $(CELLGUARD_HOME)/catalog.duckdb \"select dt, count(*) filter (where alarm) from daily group by dt order by dt\""

# Run one DAG through Airflow (`airflow dags test`), its log in $(CELLGUARD_HOME)/<dag>.log.
dag-test: setup
	@echo "== running $(DAG) through Airflow (airflow dags test), log: $(CELLGUARD_HOME)/$(DAG).log =="
	@$(BIN)/airflow dags test $(DAG) > $(CELLGUARD_HOME)/$(DAG).log 2>&1 || (tail -60 $(CELLGUARD_HOME)/$(DAG).log; exit 1)
	@grep -E "Marking run|state=" $(CELLGUARD_HOME)/$(DAG).log | tail -2 || true

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/features.py

lock:
	$(BIN)/uv pip compile --python-version 3.11 requirements.in -o requirements.txt

clean:
	rm -rf var .pytest_cache
