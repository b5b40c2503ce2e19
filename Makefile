# Two commands matter on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-fast check ui clean soak soak-s3 soak-faults soak-prod

setup: $(VENV)/.installed

# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel (a looser pin pulls a CUDA build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,cpu]'
	touch $@

## Ingest the bundled real sample as two batches, materialise every asset, export predictions.
## Offline: photos come from the bundled mirror only (PRICING_IMAGES_OFFLINE=0 downloads the rest).
demo: export PRICING_IMAGES_OFFLINE ?= 1
demo: setup
	$(BIN)/pricing ingest data/sample/amazon_pricing_sample.csv --batch sample_labeled
	$(BIN)/pricing ingest data/sample/amazon_pricing_unlabeled.csv --batch sample_unlabeled
	$(BIN)/pricing materialize
	$(BIN)/pricing predictions --out artifacts/predictions.csv

test: setup
	$(BIN)/pytest -q

## The tests that do not materialise the graph (no `slow` marker: see pricing_tests/conftest.py).
test-fast: setup
	$(BIN)/pytest -q -m "not slow"

## The web UI on http://127.0.0.1:3000 (same instance as the CLI).
ui: setup
	$(BIN)/dg dev -h 127.0.0.1 -p 3000

## Load the code location the way `dg dev` does and validate every definition (also run by CI).
check: setup
	$(BIN)/dg check defs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf .dagster_home artifacts

## Browser check: dagster dev on 127.0.0.1 + headless Chromium; every asset/check listed, screenshot in docs/.
## Needs `apt-get install -y chromium`; exits 77 (skip) without it. Not part of `make test`.
.PHONY: ui-check
ui-check: setup
	$(BIN)/python scripts/ui_check.py --out docs/ui-graph.png

## Soak test of unattended operation: dagster-daemon with every sensor on, catalog drops over ~10 min
## (a broken file, a labeled batch with bad rows, unlabeled batches, one delivered twice); prints counts.
soak: setup
	$(BIN)/python scripts/soak.py --json artifacts/soak.json

## The same with the inbox on a local S3 server (moto) whose endpoint is down for 60 s mid-run.
soak-s3: setup
	$(BIN)/python scripts/soak.py --s3 --json artifacts/soak-s3.json

## Faults under the daemon: a run worker SIGKILLed while it holds the gpu slot (local instance), then
## the PostgreSQL instance stopped for 60 s mid-delivery; each asserts every good row priced, every
## failed run retried, no run left STARTED and no pool slot held at the end.
soak-faults: setup
	$(BIN)/python scripts/soak.py --short --kill-worker --json artifacts/soak-kill.json
	$(BIN)/python scripts/soak.py --short --db-outage-s 60 --json artifacts/soak-db-outage.json

## The production topology on this machine: PostgreSQL, the inbox on a local S3 server, dagster-daemon
## and dagster-webserver as separate processes on workspace.yaml; then the same with the code location
## as its own gRPC server. Checks the webserver's GraphQL API and the UI in headless Chromium
## (`apt-get install -y chromium`); screenshots in artifacts/.
soak-prod: setup
	$(BIN)/python scripts/soak.py --prod --short --json artifacts/soak-prod.json
	$(BIN)/python scripts/soak.py --prod --code-server --short --json artifacts/soak-code-server.json
