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

RUN_DIR := $(CELLGUARD_HOME)/run
API_PORT ?= $(or $(CELLGUARD_API_PORT),8000)
MODEL_PORT ?= $(or $(CELLGUARD_MODEL_SERVER_PORT),8081)

DEMO_VEHICLES ?= 50
DEMO_DAYS ?= 100

.PHONY: setup demo dag-test serve up down stop-servers test chromium lint bench lock clean airflow-db superset superset-down

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
	@$(MAKE) --no-print-directory dag-test DAG=bms_batch_inference DAG_CONF="$$($(BIN)/python -c 'import json; \
		from pipelines.serving.tour import recent_as_of_dates; from pipelines.storage.lake import Lake; \
		print(json.dumps({"dates": [d.isoformat() for d in recent_as_of_dates(Lake.from_settings())]}))')"
	@echo "== champions (AP on the time-split test window, beside the reference recipe on the same split) =="
	$(BIN)/cellguard models
	@$(MAKE) --no-print-directory serve
	@echo "== the API, asked in the reference's exact format and by VIN =="
	$(BIN)/cellguard try-api
	@echo "== vehicles most at risk =="
	$(BIN)/cellguard at-risk
	@echo "Data Docs:    file://$(CELLGUARD_HOME)/lake/reports/data_docs/index.html"
	@echo "SQL:          $(BIN)/duckdb -readonly $(CELLGUARD_HOME)/catalog.duckdb \"select vin, as_of, probability, suspect_cell from predictions order by probability desc limit 10\""
	@echo "Dashboard:    http://127.0.0.1:$(API_PORT)/   (sign in with the token below)"
	@echo "API:          http://127.0.0.1:$(API_PORT)/docs   token: $$(cat $(CELLGUARD_HOME)/api-token)"
	@echo "              curl -H \"Authorization: Bearer \$$(cat $(CELLGUARD_HOME)/api-token)\" http://127.0.0.1:$(API_PORT)/v1/model"
	@echo "Model server: http://127.0.0.1:$(MODEL_PORT)/ping   (SageMaker container contract; make down stops both)"

# The model server and the API in the background (logs and pids in $(RUN_DIR)); `make down` stops them.
serve: setup
	@mkdir -p $(RUN_DIR)
	@$(MAKE) --no-print-directory stop-servers
	@setsid nohup $(BIN)/cellguard serve-model --port $(MODEL_PORT) > $(RUN_DIR)/model-server.log 2>&1 < /dev/null & echo $$! > $(RUN_DIR)/model-server.pid
	@setsid nohup $(BIN)/cellguard serve-api --port $(API_PORT) > $(RUN_DIR)/api.log 2>&1 < /dev/null & echo $$! > $(RUN_DIR)/api.pid
	@$(BIN)/python -c 'from pipelines.serving.tour import wait_for; wait_for(["http://127.0.0.1:$(MODEL_PORT)/ping", "http://127.0.0.1:$(API_PORT)/healthz"])' \
		|| (tail -20 $(RUN_DIR)/model-server.log $(RUN_DIR)/api.log; exit 1)
	@echo "model server on :$(MODEL_PORT), API on :$(API_PORT) (logs in $(RUN_DIR))"

# Airflow (UI on :8080, `airflow standalone`), the model server and the API, for interactive use.
up: serve airflow-db
	@PATH="$(CURDIR)/$(BIN):$$PATH" setsid nohup $(BIN)/airflow standalone > $(RUN_DIR)/airflow.log 2>&1 < /dev/null & echo $$! > $(RUN_DIR)/airflow.pid
	@echo "Airflow on http://127.0.0.1:8080 (login in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated once it has started)"

down: stop-servers

# Each was started with setsid, so its session holds every process it spawned (Airflow's task workers too):
# ask them to stop, give them 20 s to finish what they are doing, then kill what is left.
stop-servers:
	@for name in airflow model-server api superset; do \
		pid_file=$(RUN_DIR)/$$name.pid; \
		if [ -f $$pid_file ]; then \
			sid=$$(cat $$pid_file); pkill -TERM -s $$sid 2>/dev/null && echo "stopping $$name" || true; \
			for i in $$(seq 40); do pgrep -s $$sid > /dev/null || break; sleep 0.5; done; \
			pkill -KILL -s $$sid 2>/dev/null && echo "  $$name did not stop within 20 s: killed" || true; \
			rm -f $$pid_file; \
		fi; \
	done

# Run one DAG through Airflow (`airflow dags test`, params from DAG_CONF's JSON if given), its log in
# $(CELLGUARD_HOME)/<dag>.log.
dag-test: setup
	@echo "== running $(DAG) through Airflow (airflow dags test), log: $(CELLGUARD_HOME)/$(DAG).log =="
	@$(BIN)/airflow dags test $(DAG) $(if $(DAG_CONF),--conf '$(DAG_CONF)') > $(CELLGUARD_HOME)/$(DAG).log 2>&1 || (tail -60 $(CELLGUARD_HOME)/$(DAG).log; exit 1)
	@grep -E "Marking run|state=" $(CELLGUARD_HOME)/$(DAG).log | tail -2 || true

test: setup chromium
	$(BIN)/python -m pytest -q

# The dashboard's browser test drives Debian's Chromium through playwright (never `playwright install`).
chromium:
	@command -v chromium > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    echo "installing Chromium for the dashboard's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation; \
	  else echo "Chromium is missing: sudo apt-get install chromium (the dashboard's browser test fails without it)"; fi; }

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/serving.py

lock:
	$(BIN)/uv pip compile --python-version 3.11 requirements.in -o requirements.txt
	$(BIN)/uv pip compile --python-version 3.11 superset/requirements.in -o superset/requirements.txt

clean: stop-servers
	rm -rf var .pytest_cache

# Superset on 127.0.0.1, port CELLGUARD_SUPERSET_PORT (8088), in its own virtualenv (.venv-superset: its pins clash with
# Airflow's), reading the catalog read-only, with superset/bundle imported; state in $(CELLGUARD_HOME)/superset,
# pid and log in $(RUN_DIR). `make superset-down` stops it.
superset: setup
	@$(BIN)/python superset/launch.py start

superset-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python superset/launch.py stop; fi
