# Two commands: `make run` (the all-in-one stack) and `make test` (ruff and the whole suite).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
JS_DIR := tests/e2e/js
JS_INSTALLED := $(JS_DIR)/node_modules/.installed
MEETING_DIR := vw/meeting
MEETING_INSTALLED := $(MEETING_DIR)/node_modules/.installed
# Debian packages the tests and benchmarks use as peers and anchors, and the C compiler for
# vw-turn's compiled relay.
OS_PACKAGES := prosody openssl chromium coturn libnss3-tools postgresql wrk haproxy gcc libc6-dev

.PHONY: run test lint unit os-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(INSTALLED): setup.cfg setup.py pyproject.toml vw/turn/_channelrelay.c | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

$(JS_INSTALLED): $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	npm ci --prefix $(JS_DIR) --no-audit --no-fund --loglevel=error
	touch $@

$(MEETING_INSTALLED): $(MEETING_DIR)/package.json $(MEETING_DIR)/package-lock.json
	npm ci --prefix $(MEETING_DIR) --no-audit --no-fund --loglevel=error
	touch $@

os-deps:
	@missing=""; \
	for p in $(OS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing OS packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

run: $(INSTALLED) $(MEETING_INSTALLED)
	@echo "vw: starting the all-in-one stack (state under ./var)."
	@echo "  portal            http://localhost:8000 (API: /api/v1, OpenAPI: /api/v1/openapi.json)"
	@echo "  meeting page      http://localhost:5280/ROOM"
	@echo "  XMPP c2s          localhost:5222 (STARTTLS, CA in var/tls/ca.pem)"
	@echo "  XMPP WebSocket    ws://localhost:5280/xmpp-websocket"
	@echo "  XMPP BOSH         http://localhost:5280/http-bind"
	@echo "  health, metrics   http://localhost:5280/about/health  /metrics"
	@echo "  bridge            UDP 10000, http://localhost:9090/colibri/stats"
	@echo "  TURN              UDP and TCP 3478, TLS 5349 (health, metrics on 127.0.0.1:8478)"
	$(BIN)/twistd --nodaemon --pidfile= vw

lint: $(INSTALLED)
	$(BIN)/ruff check .

unit: $(INSTALLED)
	$(BIN)/python -m pytest -q tests --ignore=tests/e2e

test: os-deps $(INSTALLED) $(JS_INSTALLED) $(MEETING_INSTALLED) lint
	$(BIN)/python -m pytest

bench: os-deps $(INSTALLED)
	$(BIN)/python bench/xmpp.py
	$(BIN)/python bench/bridge.py
	$(BIN)/python bench/join.py
	$(BIN)/python bench/turn.py
	$(BIN)/python bench/portal.py
	$(BIN)/python bench/balancer.py

clean:
	rm -rf $(VENV) var $(JS_DIR)/node_modules $(MEETING_DIR)/node_modules
