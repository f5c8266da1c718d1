# Two commands for a new user: `make demo` and `make test`. Both set up .venv first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench ui dashboard clean

setup: $(STAMP)

# pip, not uv/poetry: pip takes the torch wheels from this machine's disk.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(PY) -m harness suite run experiments/demo.yaml
	$(PY) -m harness report --experiment demo
	@echo
	@echo "Report: reports/demo.md"
	@echo "Browse the runs:  $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db   (then open http://127.0.0.1:5000)"

# Two workers, one torch thread each; the PostgreSQL / SLURM tests stay in one (their xdist_group).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/pipeline.py

# Lean for local browsing: one worker process, no job execution or periodic tasks (a dozen processes otherwise).
# MLflow 3.17 opens experiments per its sidebar switch (GenAI by default): click "Model training" once.
ui: setup
	@echo "MLflow UI on http://127.0.0.1:5000 (click 'Model training' in the sidebar, then the experiment; Ctrl-C stops it)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS=false \
	  $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000 --workers 1

# The Optuna studies (and suite work queues) in optuna-dashboard, on 127.0.0.1 only (no authentication):
#   make dashboard [STORAGE=sqlite:///optuna.db] [DASHBOARD_PORT=8080]
# From another machine: ssh -L 8080:127.0.0.1:8080 SERVER, then http://127.0.0.1:8080.
STORAGE ?= sqlite:///optuna.db
DASHBOARD_PORT ?= 8080
dashboard: setup
	@echo "optuna-dashboard on http://127.0.0.1:$(DASHBOARD_PORT)  (Ctrl-C stops it)"
	$(VENV)/bin/optuna-dashboard "$(STORAGE)" --host 127.0.0.1 --port $(DASHBOARD_PORT)

clean:
	rm -rf .cache artifacts mlruns mlartifacts .pytest_cache
