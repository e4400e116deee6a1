# The messaging-protocols lab. `make help` lists every target.
SHELL := /bin/bash
PY := .venv/bin/python
PROTOS := rest soap mqtt reqresp upcall

.DEFAULT_GOAL := help
.PHONY: help setup setup-test test lint demo

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sort -u | \
	  awk 'BEGIN {FS = ":.*## "}; {t = $$1; sub(/%/, "<proto>", t); printf "  make %-22s %s\n", t, $$2}'

setup: ## what the demos need: Mosquitto (apt, as root) and .venv (PYTHON=python3.X picks 3.10-3.13)
	@scripts/setup.sh demo

setup-test: ## what the tests need: every Debian package (apt, as root) and .venv with the test tools
	@scripts/setup.sh test

lint: setup-test ## ruff over the whole repo
	$(PY) -m ruff check .

test: setup-test ## install what is needed, lint, run the test suite (benchmarks: make bench)
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not bench" $(PYTEST_ARGS)

demo: setup ## run all five demos locally, no Docker
	$(PY) -m labkit.demo $(PROTOS)

demo-%: setup ## run one demo locally (demo-rest, demo-soap, demo-mqtt, demo-reqresp, demo-upcall)
	$(PY) -m labkit.demo $*

-include mk/*.mk
