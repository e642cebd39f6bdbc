# palaver — the two commands:
#   make run    build (release) and start the server on embedded defaults (./data)
#   make test   everything CI runs: prerequisites, fmt, clippy, Rust tests, SDK compatibility
#
# Prerequisites are installed only when missing (apt-get; sudo when not root).
# Respects CARGO_TARGET_DIR. Other test stages hook in by adding to TEST_STAGES.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO      ?= cargo
PYTHON     ?= python3
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
VENV       := $(CURDIR)/.venv
VENV_PY    := $(VENV)/bin/python
SDK_REQS   := tests/sdk/requirements.txt
DEBUG_BIN  := $(TARGET_DIR)/debug/palaver
RELEASE_BIN := $(TARGET_DIR)/release/palaver
RUN_ARGS   ?=

# Debian packages needed, as "command-or-check:package" pairs (see prereqs).
APT_NEEDS := cc:build-essential cmake:cmake pkg-config:pkg-config
# promtool validates the Prometheus config, rules and dashboard queries (test-deploy) and a
# live /metrics scrape (telemetry crate test).
APT_NEEDS += promtool:prometheus
# Reference web client E2E (test-browser): headless Debian Chromium driven by playwright-core.
APT_NEEDS += chromium:chromium node:nodejs npm:npm
# SIPp plays the carrier in the SIP trunk e2e tests (tests/tests/e2e/sip.rs, tests/sipp/).
APT_NEEDS += sipp:sip-tester
# baresip, a real SIP user agent, calls a meeting through the trunk (tests/tests/e2e/sip_baresip.rs).
APT_NEEDS += baresip:baresip-core
# Call Automation text-to-speech (text/ssml play sources): the espeak-ng CLI.
APT_NEEDS += espeak-ng:espeak-ng
# Cluster mode (#17): the stores' tests start a private PostgreSQL and Redis (crates/cluster testing).
APT_NEEDS += pg_ctlcluster:postgresql redis-server:redis-server

# Test stages run by `make test`, in order. Append with `TEST_STAGES += test-x` below.
TEST_STAGES := fmt-check clippy test-rust test-sdk
TEST_STAGES += test-deploy
TEST_STAGES += test-browser
# test-fuzz: fmt of fuzz/; the targets' bodies run over their seeds in test-rust (docs/fuzzing.md, "make test").
TEST_STAGES += test-fuzz
# test-postgres: the identity, rooms and chat SDK tests on a private PostgreSQL, then two nodes
# sharing one PostgreSQL and one Redis (docs/cluster.md).
TEST_STAGES += test-postgres
# test-pg-outage: PostgreSQL stopped ~10 s during a call with a real palaver in cluster mode;
# usage is spooled on the node's disk and replayed once (docs/cluster.md).
TEST_STAGES += test-pg-outage
# test-cluster-proof: three nodes + PostgreSQL + Redis; kill -9 of a home with QUIC and WebRTC
# participants (5 trials), SIGSTOP/SIGCONT of a home, Redis killed mid-meeting, PostgreSQL
# stopped 10 s with live media, the billing oracle after each (~70 s; docs/cluster.md).
TEST_STAGES += test-cluster-proof

.PHONY: test-deploy test-browser
.PHONY: load
.PHONY: fuzz test-fuzz fuzz-prereqs
.PHONY: test-crash soak flood trials-build trials-venv
.PHONY: help run build build-release prereqs prereqs-python venv fmt fmt-check clippy test test-rust test-sdk clean-data

help:
	@echo "make run          build (release) and start palaver on embedded defaults (data in ./data), development sign-in on"
	@echo "make test         prerequisites, fmt check, clippy -D warnings, all Rust tests, SDK compatibility tests"
	@echo "make prereqs      install missing build/test prerequisites (apt-get)"
	@echo "make fmt          format the workspace"
	@echo "make clean-data   remove ./data (database, keys, certificates)"
	@echo "make load         palaver-load against the server 'make run' started (LOAD_ARGS=\"--preset town-hall\")"
	@echo "make fuzz         every fuzz target for FUZZ_SECONDS (default 60) each; FUZZ_TARGETS to pick (docs/fuzzing.md)"
	@echo "make test-crash   CRASH_TRIALS (default 100) kill -9 trials under load, checked after each restart (tests/trials)"
	@echo "make soak         SOAK_MINUTES (default 30) of mixed load; RSS/fd/CPU CSV + plot in docs/ (docs/soak.md)"
	@echo "make test-postgres  the SDK compatibility tests (identity, rooms, chat) on a private PostgreSQL, two nodes on PostgreSQL + Redis, three nodes with placement (docs/cluster.md)"
	@echo "make test-cluster failover.py's FAILOVER_TRIALS (5) + CLUSTER_TRIALS (100) kill -9 trials with a random victim and the billing oracle (docs/cluster.md)"
	@echo "make cluster      three palaver nodes + PostgreSQL + Redis on loopback, placement on, until Ctrl-C (docs/cluster.md)"
	@echo "make flood        junk UDP/STUN/DTLS/QUIC/TCP at 10x the legitimate rate on every port; legitimate loss"

# ---------------------------------------------------------------- prerequisites
# Install only what is missing; do nothing when everything is present.
prereqs:
	@missing=(); \
	for pair in $(APT_NEEDS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v "$$cmd" >/dev/null 2>&1 || missing+=("$$pkg"); \
	done; \
	if ! command -v $(CARGO) >/dev/null 2>&1; then \
	  echo "cargo not found: install Rust from https://rustup.rs (rust-version in Cargo.toml)"; exit 1; \
	fi; \
	if [ $${#missing[@]} -gt 0 ]; then $(MAKE) --no-print-directory apt-install PKGS="$${missing[*]}"; fi

prereqs-python:
	@if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then \
	  ver=$$($(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo 3); \
	  $(MAKE) --no-print-directory apt-install PKGS="python3-venv python$$ver-venv"; \
	fi

.PHONY: apt-install
apt-install:
	@command -v apt-get >/dev/null 2>&1 || { echo "missing packages ($(PKGS)) and no apt-get: install them by hand"; exit 1; }
	@sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	echo "installing: $(PKGS)"; \
	$$sudo apt-get update -qq; \
	for p in $(PKGS); do $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$$p" || echo "note: package $$p not available"; done

# The SDK test venv: created when missing, requirements installed when they changed.
venv: $(VENV)/.requirements-installed

$(VENV)/.requirements-installed: $(SDK_REQS) | prereqs-python
	@[ -x $(VENV_PY) ] || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r $(SDK_REQS)
	@touch $@

# ---------------------------------------------------------------- build & run
build: prereqs
	$(CARGO) build -p palaver

build-release: prereqs
	$(CARGO) build --release -p palaver

# `make run` is local development: it turns on the web client's development sign-in
# (tokens without a credential; a warning in the log and a banner on the page).
run: build-release
	$(RELEASE_BIN) --dev-sign-in $(RUN_ARGS) run

clean-data:
	rm -rf data

# palaver-load against the server `make run` started in another shell (same ./data: its CA and
# access key). Default: the short smoke scenario; e.g. make load LOAD_ARGS="--preset town-hall --duration 60".
LOAD_BIN  := $(TARGET_DIR)/release/palaver-load
LOAD_ARGS ?= --preset smoke
load: prereqs
	$(CARGO) build --release -p palaver -p palaver-load
	$(LOAD_BIN) --connection-string "$$($(RELEASE_BIN) $(RUN_ARGS) connection-string)" --ca data/tls/ca.pem $(LOAD_ARGS)

# ---------------------------------------------------------------- checks & tests
fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all --check

clippy: prereqs
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# e2e tests start the debug binary found next to the test executables.
test-rust: build
	$(CARGO) test --workspace

test-sdk: build venv
	$(CARGO) build -p palaver-e2e --bin palaver-quic-caller
	@for t in tests/sdk/*_compat.py; do \
	  echo "== $$t"; PALAVER_BIN=$(DEBUG_BIN) $(VENV_PY) "$$t" --binary $(DEBUG_BIN); \
	done

# Monitoring assets: Prometheus config, alert rules + their unit tests, dashboard queries.
# The Kubernetes schema check's venv (kubernetes-validate, pinned in deploy/requirements.txt);
# PALAVER_BIN lets palaver parse the rendered palaver.toml when a debug build exists.
DEPLOY_VENV := $(CURDIR)/.venv-deploy
$(DEPLOY_VENV)/.requirements-installed: deploy/requirements.txt | prereqs-python
	@[ -x $(DEPLOY_VENV)/bin/python ] || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
	@touch $@

test-deploy: prereqs $(DEPLOY_VENV)/.requirements-installed
	DEPLOY_PY=$(DEPLOY_VENV)/bin/python PALAVER_BIN=$(DEBUG_BIN) deploy/check.sh

# Reference web client E2E (tests/browser). Screenshots land in tests/artifacts/browser/.
# Set PALAVER_REQUIRE_MEDIA=1 to make a missing media plane a failure instead of a skip.
test-browser: build
	@[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund)
	cd tests/browser && PALAVER_BIN=$(DEBUG_BIN) npm test

# ---------------------------------------------------------------- cluster mode (docs/cluster.md)
# The official SDK compatibility tests against palaver on a private PostgreSQL ([cluster]
# postgres_url). The stores' own tests on PostgreSQL run in test-rust (crates/cluster).
.PHONY: test-postgres
test-postgres: build venv
	cd tests/cluster && $(VENV_PY) sdk_on_postgres.py --binary $(DEBUG_BIN) --python $(VENV_PY) $(PG_SDK_SCRIPTS)
	cd tests/cluster && $(VENV_PY) two_nodes.py --binary $(DEBUG_BIN)
	$(CARGO) build -p palaver-load
	cd tests/cluster && $(VENV_PY) three_nodes.py --binary $(DEBUG_BIN)

# test-cluster: kill -9 failover trials and a SIGSTOP fencing trial on three nodes (failover.py),
# then CLUSTER_TRIALS kill -9 trials of a random node (home, relay or bystander) with QUIC and
# WebRTC participants and the billing oracle after each (trials.py; docs/cluster.md).
FAILOVER_TRIALS ?= 5
CLUSTER_TRIALS ?= 100
.PHONY: test-cluster test-cluster-proof
test-cluster: build venv
	$(CARGO) build -p palaver-cluster --example cluster_probe
	cd tests/cluster && $(VENV_PY) failover.py --binary $(abspath $(DEBUG_BIN)) --trials $(FAILOVER_TRIALS)
	cd tests/cluster && $(VENV_PY) trials.py --binary $(abspath $(DEBUG_BIN)) --kill-trials $(CLUSTER_TRIALS) --random-victim \
	  --stop-trials 0 --no-redis-outage --pg-outage 0 --json $(abspath $(TARGET_DIR))/cluster-trials.json

# The bounded proof in `make test` (see TEST_STAGES), then cross-node rings and presence, then
# the media of calls whose ring crossed nodes (a QUIC callee redirected, a WebRTC one forwarded),
# then the web client in Chromium through a kill -9 of its meeting's home: roles, lobby, the
# recording notice, audio again and billing (standing.py driving tests/browser/cluster_rejoin.mjs).
test-cluster-proof: build venv
	$(CARGO) build -p palaver-cluster --example cluster_probe --example call_probe
	cd tests/cluster && $(VENV_PY) trials.py --binary $(abspath $(DEBUG_BIN)) --kill-trials 5 --stop-trials 1 --pg-outage 10
	cd tests/cluster && $(VENV_PY) rings.py --binary $(abspath $(DEBUG_BIN))
	cd tests/cluster && $(VENV_PY) calls.py --binary $(abspath $(DEBUG_BIN))
	@[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund)
	cd tests/cluster && $(VENV_PY) standing.py --binary $(abspath $(DEBUG_BIN))

# cluster: three nodes + PostgreSQL + Redis on loopback, placement on, until Ctrl-C (docs/cluster.md).
.PHONY: cluster
cluster: build venv
	cd tests/cluster && $(VENV_PY) run_cluster.py --binary $(abspath $(DEBUG_BIN))

.PHONY: test-pg-outage
test-pg-outage: build
	$(PYTHON) tests/billing/pg_outage.py --binary $(DEBUG_BIN)

# ---------------------------------------------------------------- trials (not part of `make test`)
# Crash, soak and flood trials of the release binaries (tests/trials/README.md). Each starts its
# own server on free loopback ports with a private data dir and stops everything it started.
CRASH_TRIALS ?= 100
CRASH_ARGS   ?=
SOAK_MINUTES ?= 30
SOAK_ARGS    ?=
FLOOD_ARGS   ?=
TRIALS_REQS  := tests/trials/requirements.txt

trials-build: prereqs
	$(CARGO) build --release -p palaver -p palaver-load

trials-venv: $(VENV)/.trials-requirements-installed

$(VENV)/.trials-requirements-installed: $(TRIALS_REQS) | venv
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r $(TRIALS_REQS)
	@touch $@

test-crash: trials-build
	cd tests/trials && CARGO_TARGET_DIR=$(TARGET_DIR) $(PYTHON) crash_trials.py --trials $(CRASH_TRIALS) $(CRASH_ARGS)

soak: trials-build trials-venv
	cd tests/trials && CARGO_TARGET_DIR=$(TARGET_DIR) $(VENV_PY) soak.py --minutes $(SOAK_MINUTES) --out-dir $(CURDIR)/docs $(SOAK_ARGS)

flood: trials-build
	cd tests/trials && CARGO_TARGET_DIR=$(TARGET_DIR) $(PYTHON) flood.py $(FLOOD_ARGS)

# ---------------------------------------------------------------- fuzzing
# cargo-fuzz (libFuzzer) targets in fuzz/ (its own workspace; the bodies live in
# crates/fuzz-targets); see docs/fuzzing.md. `make fuzz` runs each target FUZZ_SECONDS.
FUZZ_SECONDS       ?= 60
FUZZ_TARGETS       ?=
# The instrumented builds live beside the main build, so they are kept between runs.
FUZZ_TARGET_DIR    ?= $(TARGET_DIR)/fuzz

fuzz-prereqs: prereqs
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz: fuzz-prereqs
	FUZZ_TARGET_DIR=$(FUZZ_TARGET_DIR) fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The `make test` stage. Every target's body runs over its committed seeds and a bounded number
# of mutations of them in test-rust (crates/fuzz-targets/tests/seeds.rs, in the main debug
# build; the same test checks that each libFuzzer binary is the one-line wrapper of its body),
# so this stage only checks the fuzz crate's formatting: no instrumented build, no cargo-fuzz.
test-fuzz:
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml --check

test: prereqs
	@for stage in $(TEST_STAGES); do \
	  echo "==== $$stage"; $(MAKE) --no-print-directory $$stage; \
	done
	@echo "==== all test stages passed: $(TEST_STAGES)"
