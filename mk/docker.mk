# Docker: one compose file per protocol (compose/<proto>.yml). Targets are <action>-<proto>,
# e.g. `make up-mqtt`, `make shell-mqtt SERVICE=mqtt-pub`, `make down-mqtt`.
# Only demo-docker-% and check-compose need Python on the host; the rest need just Docker.

DOCKER_COMPOSE ?= docker compose
HOST_PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: check-compose docker-standins

# $(call compose,<proto>): the compose command for one protocol, after checking the name.
compose = $(if $(filter $(1),$(PROTOS)),$(DOCKER_COMPOSE) -f compose/$(1).yml,\
  $(error unknown protocol '$(1)': use one of $(PROTOS)))
# Default services: the client to open a shell in, the server to restart after an edit.
client_of = $(if $(filter mqtt,$(1)),mqtt-sub,$(1)-client)
server_of = $(if $(filter mqtt,$(1)),mqtt-broker,$(1)-server)

up-%: ## Docker: build and start a protocol, wait until healthy (up-rest, up-soap, up-mqtt, up-reqresp, up-upcall)
	$(call compose,$*) up -d --build --wait $(if $(SCALE),--scale $(SCALE))
	$(call compose,$*) ps

down-%: ## Docker: stop a protocol's containers and remove its network (down-rest, ...)
	$(call compose,$*) down

logs-%: ## Docker: follow a protocol's output, Ctrl+C to stop following (logs-rest, ...; SERVICE=...)
	$(call compose,$*) logs -f $(SERVICE)

ps-%: ## Docker: list a protocol's containers, health and ports (ps-rest, ...)
	$(call compose,$*) ps

shell-%: ## Docker: a shell in a protocol's client container (shell-rest, ...; SERVICE=mqtt-pub for another)
	$(call compose,$*) exec $(or $(SERVICE),$(call client_of,$*)) bash

restart-%: ## Docker: restart a protocol's server after editing it (restart-rest, ...; SERVICE=... for another)
	$(call compose,$*) restart $(or $(SERVICE),$(call server_of,$*))

demo-docker-%: ## Docker: start a protocol and run its scripted demo inside the containers (demo-docker-rest, ...)
	@$(if $(filter $*,$(PROTOS)),,$(error unknown protocol '$*': use one of $(PROTOS)))
	$(HOST_PY) -m labkit.compose demo $*

check-compose: setup-test ## Docker files checked without Docker: compose config, scripts, flags, variables
	$(PY) -m labkit.compose check
	.venv/bin/hadolint $(addsuffix /Dockerfile,$(PROTOS))

docker-standins: ## Docker: build local stand-ins for the base images where no registry answers (root; test fixtures)
	scripts/docker-standins.sh
