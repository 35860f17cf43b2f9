# Continuity: `make run` starts a local two-zone cluster (routers on 127.0.0.1:8080 and :8090),
# `make test` installs everything and runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_PY := $(VENV)/.installed
STAMP_NPM := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: install browser postgres cluster-up-pg run-pg chaos-short test lint run run-standalone clean unit cluster-up cluster-status cluster-kill cluster-start cluster-down \
	bench bench-profile chaos examples sim image conformance

install: $(STAMP_PY) $(STAMP_NPM) browser postgres

# The browser tests drive Debian's chromium (never a downloaded browser). Installed from apt when
# absent and we may (root with apt-get); otherwise tests/browser skip with a loud reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "chromium is absent and cannot be installed here: tests/browser will be skipped"; }

# Persisted channels on PostgreSQL (tests/integration/test_persisted.py, make cluster-up-pg) use
# Debian's server binaries, run from a temp dir by the tests. Installed from apt when absent and we
# may (root with apt-get); otherwise those tests skip with a loud reason.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
		[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
		|| echo "postgresql is absent and cannot be installed here: the PostgreSQL history tests will be skipped"; }

$(STAMP_PY): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $@

$(STAMP_NPM): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check frontend kernel continuity gossip router tests bench deploy
	$(BIN)/mypy frontend kernel continuity gossip router

# deploy/*.example.toml from the config dataclasses (tests/unit/kernel/test_config.py fails on drift).
examples: $(STAMP_PY)
	$(BIN)/python -c "from frontend.config import example; open('deploy/frontend.example.toml', 'w').write(example())"
	$(BIN)/python -c "from router.config import example; open('deploy/router.example.toml', 'w').write(example())"

# The container image (deploy/container/Containerfile, ably-js vendored from npm at build time) with
# docker or podman, whichever is installed.
IMAGE ?= continuity:0.1.0
ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
image:
	@test -n "$(ENGINE)" || { echo "make image: neither docker nor podman is installed here; install one" \
		"(or build deploy/container/Containerfile with any OCI builder, e.g. buildah)" >&2; exit 1; }
	@$(ENGINE) info >/dev/null 2>&1 || { echo "make image: $(ENGINE) is installed but cannot reach its" \
		"engine (daemon not running, or no permission): start it and retry" >&2; exit 1; }
	$(ENGINE) build -f deploy/container/Containerfile -t $(IMAGE) .

# The chaos run (bench/chaos): a seeded fault schedule against a local cluster, judged by a checker.
FAULTS ?= 100
chaos-short: install
	$(BIN)/python -m pytest tests/chaos -m chaos $(PYTEST_ARGS)

chaos: install
	$(BIN)/python -m bench.chaos --faults $(FAULTS) $(if $(SEED),--seed $(SEED)) \
		$(if $(CLIENTS),--clients $(CLIENTS)) $(if $(ONLY),--only $(ONLY)) $(if $(CLASSIC),--classic) \
		$(if $(PIPELINE),--pipeline $(PIPELINE))

# The deterministic simulation of a frontend cluster (frontend/sim.py): SEEDS seeded fault schedules
# in virtual time, each judged by the chaos checker; prints a JSON summary (a failing seed comes with
# its shrunk schedule and the command that replays it).
SEEDS ?= 1000
SIM_PROCS ?= 2
sim: install
	$(BIN)/python -m frontend.sim --seeds $(SEEDS) --procs $(SIM_PROCS) $(if $(START),--start $(START))

# Every benchmark in bench/ (JSON on stdout, saved to bench/results/latest.json); see bench/README.md.
BENCH_NPM := bench/peers/socketio/node_modules/.installed

$(BENCH_NPM): bench/peers/socketio/package.json bench/peers/socketio/package-lock.json
	cd bench/peers/socketio && npm ci --no-audit --no-fund --loglevel=error
	touch $@

bench: $(STAMP_PY) $(BENCH_NPM)
	@$(BIN)/python bench/run_all.py

# py-spy profile of the 200-subscriber fan-out (paced and max rate) of one frontend.
bench-profile: $(STAMP_PY) $(BENCH_NPM)
	@$(BIN)/python bench/fanout_compare.py --subscribers 200 --targets continuity --seconds 10 \
		--profile bench/results/profile

# ably-js's own test suite against a local cluster through a router, file by file, on the WebSocket and
# Comet lanes; prints a JSON summary. Needs a prepared ably-js checkout (README); fetches nothing.
# CONFORMANCE_ARGS e.g. --files test/realtime/channel.test.js --lanes comet
conformance: $(STAMP_PY)
	@test -n "$(ABLYJS)" || { echo "usage: make conformance ABLYJS=<path to a prepared ably-js checkout>" >&2; exit 2; }
	@$(BIN)/python bench/conformance/run.py --ablyjs "$(ABLYJS)" $(CONFORMANCE_ARGS)

CLUSTER := $(BIN)/python deploy/localcluster.py
SIG ?= TERM

run: install
	$(CLUSTER) run

# One development frontend; channels matching PERSIST keep their history in SQLite under
# .standalone/ (kept across restarts; PERSIST= turns it off).
run-standalone: install
	$(BIN)/python -m frontend --dev --host 127.0.0.1 --port 8080 \
		$(if $(strip $(PERSIST)),--history-store sqlite:.standalone/history.sqlite3 $(foreach p,$(PERSIST),--persist '$(p)'))

cluster-up: install
	$(CLUSTER) up

cluster-status:
	@$(CLUSTER) status

cluster-kill:
	@test -n "$(NODE)" || { echo "usage: make cluster-kill NODE=fe-a1 [SIG=KILL|TERM]" >&2; exit 2; }
	$(CLUSTER) kill $(NODE) --signal $(SIG)

cluster-start: install
	@test -n "$(NODE)" || { echo "usage: make cluster-start NODE=fe-a1" >&2; exit 2; }
	$(CLUSTER) start $(NODE)

cluster-down:
	$(CLUSTER) down
	@if [ -d .cluster-pg ]; then $(BIN)/python deploy/localpg.py down; fi

# The local cluster with persisted channels on one PostgreSQL shared by the four frontends
# (deploy/localpg.py: Debian's postgresql, data in .cluster-pg/, kept across cluster-down).
PERSIST ?= chat:*=24h demo:*=24h
PG_DSN = $$($(BIN)/python deploy/localpg.py dsn)
PERSIST_ARGS = --history-store "$(PG_DSN)" $(foreach p,$(PERSIST),--persist '$(p)')

cluster-up-pg: install
	@$(BIN)/python deploy/localpg.py up
	$(CLUSTER) up $(PERSIST_ARGS)

run-pg: install
	@$(BIN)/python deploy/localpg.py up
	$(CLUSTER) run $(PERSIST_ARGS)

clean:
	rm -rf $(VENV) node_modules bench/peers/socketio/node_modules .pytest_cache .mypy_cache .ruff_cache
