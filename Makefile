# KPNS: `make run` starts the platform, `make test` runs the whole suite.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run prod test test-deps lint migrate clean soak bench bench-quick

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

# One Daphne process and the scheduler, on SQLite and the in-process channel
# layer unless DATABASE_URL / REDIS_URL say otherwise. Ctrl-C stops all.
run: migrate
	$(PY) manage.py kpns_demo
	HOST=$(HOST) PORT=$(PORT) $(VENV)/bin/honcho -f Procfile.dev start

# The production layout on this machine (docs/operations.md): K Daphne
# processes (ports KPNS_BASE_PORT..), the scheduler and nginx under
# supervisord, which restarts what dies. Needs DATABASE_URL, REDIS_URL (or
# REDIS_SENTINELS), SECRET_KEY and ALLOWED_HOSTS in the environment.
# deploy/kpnsctl status | roll | stop all.
prod: install
	KPNS_SERVERS=$${KPNS_SERVERS:-$(K)} bash deploy/prod.sh

lint: install
	$(VENV)/bin/ruff check .

# What the SDK and browser tests need beyond Python: the JS SDK's test
# dependency (`npm ci` from sdk/js/package-lock.json) and Debian's Chromium.
# Each is installed only when missing; a failure is reported and the tests
# that need it skip, saying why.
CHROMIUM ?= /usr/bin/chromium
test-deps: install
	@test -d sdk/js/node_modules/ws || (cd sdk/js && npm ci --no-audit --no-fund) \
	  || echo "npm ci in sdk/js failed: the JavaScript SDK tests will retry it"
	@test -x $(CHROMIUM) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium) \
	  || echo "could not install Chromium: the browser tests will be skipped"

test: lint test-deps
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) var

# Load harness (docs/benchmarks.md): PostgreSQL and Redis must be running.
BENCH_STAMP := $(VENV)/.bench-stamp
SCENARIO ?= idle broadcast naive acks storm targeted batch
N ?= 20000
K ?= 2
RUNS ?= 3
# Extra flags, e.g. BENCH_ARGS="--offline 980000" for the offline scenario.
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.run $(foreach s,$(SCENARIO),--scenario $(s)) --devices $(N) --servers $(K) --runs $(RUNS) --label bench $(BENCH_ARGS)

# 2,000 devices, every scenario once: a correctness smoke test (0 lost, 0 twice).
bench-quick: $(BENCH_STAMP)
	$(PY) -m bench.run --scenario idle --scenario broadcast --scenario naive \
	  --scenario acks --scenario storm --scenario targeted --scenario batch \
	  --scenario offline --devices 2000 --servers 2 --runs 1 --label quick \
	  --rate 100 --seconds 5 --batches 4 --campaigns 3 --offline 20000

# Reliability soak tier (docs/guarantees.md): KPNS_SOAK_DEVICES (3000) devices
# for KPNS_SOAK_MINUTES (5), a campaign every KPNS_SOAK_CAMPAIGN_SECONDS (60),
# 10% reconnecting per minute. `make test` excludes it (-m "not soak").
soak: install
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	  $(VENV)/bin/pytest -m soak tests/reliability -s -p no:cacheprovider
