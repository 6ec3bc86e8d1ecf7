# KPNS: `make run` starts the platform, `make test` runs the whole suite.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-prod run prod test test-deps lint migrate clean soak bench \
	bench-quick lock upgrade

# Installing never resolves: every target installs one lock file of
# requirements/ (exact versions with hashes, written by `make lock`), then
# KPNS itself without its dependencies. The lock files:
#   runtime.txt  KPNS alone (what a built wheel needs, tests/packaging)
#   prod.txt     + [ops] (supervisor): `make prod`
#   dev.txt      + [run] (honcho), [ops] and [dev] (pytest, ruff, build, uv):
#                `make run`, `make test`
#   bench.txt    + [bench]: `make bench`, `make bench-quick`
# Each has a stamp $(VENV)/.installed-NAME, so that a changed lock file (or
# pyproject.toml) is installed again on the next make.
$(PY):
	$(PYTHON) -m venv $(VENV)

.PRECIOUS: $(VENV)/.installed-%
# --no-deps: the lock already names every dependency, pinned and hashed;
# letting pip resolve again made it fetch a newer python-socks for
# picows's python-socks[asyncio] and refuse it as unpinned.
$(VENV)/.installed-%: requirements/%.txt pyproject.toml | $(PY)
	$(PIP) install --quiet --require-hashes --no-deps -r $<
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

STAMP := $(VENV)/.installed-dev

install: $(STAMP)

# A production machine: KPNS and [ops] only (what `make prod` runs).
install-prod: $(VENV)/.installed-prod

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
# deploy/kpnsctl status | roll | shutdown.
prod: $(VENV)/.installed-prod
	KPNS_SERVERS=$${KPNS_SERVERS:-$(K)} bash deploy/prod.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

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
BENCH_STAMP := $(VENV)/.installed-bench
SCENARIO ?= idle broadcast naive acks storm targeted batch
N ?= 20000
K ?= 2
RUNS ?= 3
# Extra flags, e.g. BENCH_ARGS="--offline 980000" for the offline scenario.
BENCH_ARGS ?=

bench: $(BENCH_STAMP)
	$(PY) -m bench.run $(foreach s,$(SCENARIO),--scenario $(s)) --devices $(N) --servers $(K) --runs $(RUNS) --label bench $(BENCH_ARGS)

# 2,000 devices, every scenario once: a correctness smoke test (0 lost, 0
# twice), and retention on 200,000 seeded rows (what goes, what stays).
bench-quick: $(BENCH_STAMP)
	$(PY) -m bench.run --scenario idle --scenario broadcast --scenario naive \
	  --scenario acks --scenario storm --scenario targeted --scenario batch \
	  --scenario offline --scenario retention --devices 2000 --servers 2 \
	  --runs 1 --label quick --rate 100 --seconds 5 --batches 4 --campaigns 3 \
	  --offline 20000 --retention-rows 200000

# Reliability soak tier (docs/guarantees.md): KPNS_SOAK_DEVICES (3000) devices
# for KPNS_SOAK_MINUTES (5), a campaign every KPNS_SOAK_CAMPAIGN_SECONDS (60),
# 10% reconnecting per minute. `make test` excludes it (-m "not soak").
soak: install
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	  $(VENV)/bin/pytest -m soak tests/reliability -s -p no:cacheprovider

# Lock files (requirements/*.txt) from pyproject.toml's ranges, for Python 3.11
# on Linux x86_64, with the hash of every file of each release. uv, not
# pip-tools: it resolves in seconds for a named Python and platform (not the
# one it runs on), and it comes pinned in dev.txt. Versions already locked are
# kept unless pyproject.toml rules them out: after editing pyproject.toml,
# `make lock` changes only what it must. bench.txt (every extra) is resolved
# first and constrains the others, so all four agree. The build backend
# ([build-system] requires) is locked too: editable installs use it without
# build isolation.
LOCK_PY := 3.11
LOCK_PLATFORM := x86_64-unknown-linux-gnu
UPGRADE_FLAGS = $(if $(PACKAGES),$(foreach p,$(PACKAGES),--upgrade-package $(p)),--upgrade)
UV := $(VENV)/bin/uv
# Extras stay in the lock (python-socks[asyncio]): pip's hash-checking
# mode refuses a dependency named with extras that the lock pins without.
LOCK = $(UV) pip compile --quiet --generate-hashes --no-strip-extras \
	--python-version $(LOCK_PY) --python-platform $(LOCK_PLATFORM) \
	--custom-compile-command "make lock" $(if $(LOCK_UPGRADE),$(UPGRADE_FLAGS))
BUILD_REQUIRES := $(VENV)/build-requires.in

lock: $(STAMP)
	@$(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' > $(BUILD_REQUIRES)
	$(LOCK) pyproject.toml $(BUILD_REQUIRES) --all-extras -o requirements/bench.txt
	$(LOCK) pyproject.toml $(BUILD_REQUIRES) --extra dev -c requirements/bench.txt -o requirements/dev.txt
	$(LOCK) pyproject.toml $(BUILD_REQUIRES) --extra ops -c requirements/bench.txt -o requirements/prod.txt
	$(LOCK) pyproject.toml -c requirements/bench.txt -o requirements/runtime.txt

# The one upgrade command: every dependency to the newest release that
# pyproject.toml allows (PACKAGES="django twisted": only those), then the
# whole suite on the new lock (make test reinstalls it). Review
# `git diff requirements/` and commit it with the code it needed.
upgrade:
	$(MAKE) lock LOCK_UPGRADE=1
	$(MAKE) test
	git diff --stat -- requirements/
