# paymaster — every target works on a fresh clone; the first one that needs it creates .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
POLICY ?= policy/demo.yaml
PORT ?= 8787
# Providers served by the policy's own base_url instead of the fakes, e.g. REAL="ollama openai=env:OPENAI_API_KEY"
REAL ?=
# A deployment: deploy/$(ENV).yaml (account, region, policy file, API shape; see deploy/example.yaml).
# Without it, synth and deploy use the demo policy, env-agnostic, as before.
ENV ?=
DEPLOY_FILE := $(if $(ENV),deploy/$(ENV).yaml)
CDK_CONTEXT := $(if $(ENV),-c deployFile=$(DEPLOY_FILE))
# The report schedules' clock (forecast, digests, month closes) this many times the real one, e.g. 1440: a day a minute
CLOCK_SPEED ?= 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

# uv when it is there or can be installed with pip; plain pip from the exported lock otherwise.
UV := $(shell command -v uv 2>/dev/null || (python3 -m uv --version >/dev/null 2>&1 && echo "python3 -m uv"))

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock requirements-dev.lock
	@uv_cmd="$(UV)"; \
	if [ -z "$$uv_cmd" ] && python3 -m pip install --quiet uv >/dev/null 2>&1; then uv_cmd="python3 -m uv"; fi; \
	if [ -n "$$uv_cmd" ]; then \
		echo "installing with uv"; $$uv_cmd sync --frozen --extra dev --python python3; \
	else \
		echo "uv unavailable: installing with pip"; \
		python3 -m venv $(VENV) && $(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock \
			&& $(PY) -m pip install --quiet --no-deps -e .; \
	fi
	@touch $@

.PHONY: venv
venv: $(STAMP) ## create or update the environment

.PHONY: run
run: $(STAMP) ## start the local stack in the foreground (POLICY=file PORT=n REAL="name[=env:VAR|file:PATH] …" CLOCK_SPEED=n)
	$(VENV)/bin/paymaster local --policy $(POLICY) --port $(PORT) --clock-speed $(CLOCK_SPEED) $(patsubst %,--real-endpoint '%',$(REAL))

.PHONY: test
test: $(STAMP) lint ## lint, type-check, import contracts, then every test
	$(PY) -m pytest

.PHONY: lint
lint: $(STAMP) ## ruff, mypy strict on the core package, import-linter contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: fmt
fmt: $(STAMP) ## format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: demo
demo: $(STAMP) ## start a local stack and show the demo policy throttle, downgrade and refuse
	$(PY) -m paymaster_local.demo

.PHONY: bench
bench: $(STAMP) ## run the benchmarks (docs/BENCHMARKS.md records their output)
	$(PY) -m bench.requests_per_admission
	$(PY) -m bench.overhead
	$(PY) -m bench.concurrency
	$(PY) -m bench.http
	$(PY) -m bench.ledger_writes

.PHONY: bench-http
bench-http: $(STAMP) ## the gateway's CPU per request over real HTTP at c=8 (non-streamed and streamed)
	$(PY) -m bench.http

.PHONY: soak
soak: $(STAMP) ## 10,000 signed requests with provider faults through the local stack; every dollar checked
	$(PY) -m bench.soak

.PHONY: coldstart
coldstart: $(STAMP) ## cold start of the gateway process to its first answer, OpenAI and Bedrock
	$(PY) -m bench.coldstart

.PHONY: validate
validate: $(STAMP) ## validate the policy file (POLICY=file)
	$(VENV)/bin/paymaster policy validate $(POLICY)

.PHONY: layers
layers: $(STAMP) ## build the Lambda dependencies layer (arm64, Python 3.13) into build/
	$(PY) infra/build_layers.py

DEPLOY_GET = PYTHONPATH=infra $(PY) -m paymaster_infra.deploy_file get $(DEPLOY_FILE)
# Set to 1 to deploy although a provider's secret is missing or empty (its calls then fail over).
ALLOW_MISSING_SECRETS ?=

.PHONY: deploy-file
deploy-file: $(STAMP)
	@if [ -n "$(ENV)" ]; then PYTHONPATH=infra $(PY) -m paymaster_infra.deploy_file check $(DEPLOY_FILE); fi

.PHONY: smoke
smoke: $(STAMP) ## boot the shipped functions and layers on this machine (no AWS, no Docker): cold start, size
	$(PY) infra/smoke.py

.PHONY: synth
synth: deploy-file layers ## synthesise the CDK app into infra/cdk.out (ENV=name: deploy/name.yaml; no AWS credentials needed)
	cd infra && ../$(PY) app.py $(CDK_CONTEXT)

.PHONY: policy-diff
policy-diff: $(STAMP) ## what deploying POLICY=file changes in each stack, against today's policy (ENV=name: that deployment's; no credentials)
	@test -n "$(POLICY)" || { echo "usage: make policy-diff POLICY=policy/next.yaml [ENV=name]"; exit 2; }
	cd infra && ../$(PY) -m paymaster_infra.policy_change "$(POLICY)" $(DEPLOY_FILE)

.PHONY: deploy
deploy: deploy-file layers ## cdk deploy both stacks (ENV=name: deploy/name.yaml's account and region; checks the web adapter layer and the secrets first; needs credentials and npx)
	@if [ -n "$(ENV)" ]; then \
		PYTHONPATH=infra $(PY) -m paymaster_infra.web_adapter check "$$($(DEPLOY_GET) region)" || exit 1; \
		$(VENV)/bin/paymaster secrets check --policy "$$($(DEPLOY_GET) policy_file)" --region "$$($(DEPLOY_GET) region)" \
			|| [ -n "$(ALLOW_MISSING_SECRETS)" ] || { echo "make deploy: set the secrets above first (or ALLOW_MISSING_SECRETS=1)"; exit 1; }; \
		cd infra && npx --yes aws-cdk@2 deploy --all --app "../$(PY) app.py" $(CDK_CONTEXT) \
			--require-approval "$$(cd .. && $(DEPLOY_GET) require_approval)"; \
	else \
		cd infra && npx --yes aws-cdk@2 deploy --all --app "../$(PY) app.py"; \
	fi

.PHONY: lock
lock: ## re-resolve the dependencies after editing pyproject.toml
	$(UV) lock
	$(UV) export --frozen --extra dev --no-emit-project --format requirements-txt -o requirements-dev.lock >/dev/null

.PHONY: clean
clean: ## remove the environment and build output
	rm -rf $(VENV) build cdk.out infra/cdk.out .paymaster .pytest_cache .mypy_cache .ruff_cache
