# The classroom (issue 17): the broker and the REST server on the lecturer's machine, reachable on the LAN,
# with TLS (a lab CA made here), per-student accounts from a roster and ACLs. docs/classroom-lecturer.md.
#   make classroom HOST=192.168.1.20 ROSTER=roster.csv      Docker (compose/classroom.yml), on every interface
#   make classroom RUNTIME=netns                            no Docker: lecturer + two students in namespaces (root)
#   make classroom-cards [STUDENT=<id>]                     each student's connection card
# Generated files (keys, accounts) go to classroom/generated/, git-ignored.

CLASSROOM_PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
CLASSROOM_DIR ?= classroom/generated
ROSTER ?= classroom/roster.csv
RUNTIME ?= docker
PLAINTEXT ?= 1
# Where Docker publishes the classroom's ports on the lecturer's machine (0.0.0.0: every interface, the LAN).
CLASSROOM_BIND ?= 0.0.0.0
CLASSROOM_COMPOSE = $(DOCKER_COMPOSE) -f compose/classroom.yml
classroom_cli = $(CLASSROOM_PY) -m labkit.classroom --dir "$(CLASSROOM_DIR)"
# The netns runtime's lecturer address: the default HOST there (students are namespaces on this machine).
CLASSROOM_NETNS_HOST = 10.151.17.10
classroom_host = $(or $(HOST),$(if $(filter netns,$(RUNTIME)),$(CLASSROOM_NETNS_HOST)))
need_host = test -n "$(classroom_host)" || { echo "usage: make $@ HOST=<the lecturer's LAN address or name> \
ROSTER=<csv>  (ip -4 addr shows the address)" >&2; exit 2; }

.PHONY: classroom classroom-certs classroom-accounts classroom-cards classroom-down

classroom: ## classroom on the LAN: TLS broker + HTTPS REST, accounts (HOST=<address> ROSTER=<csv>; RUNTIME=netns; PLAINTEXT=0)
	@$(need_host)
	$(classroom_cli) prepare --host "$(classroom_host)" --roster "$(ROSTER)" $(if $(ROTATE),--rotate "$(ROTATE)") \
	  $(if $(filter 0,$(PLAINTEXT)),--no-plaintext)
ifeq ($(RUNTIME),netns)
	$(classroom_cli) netns
else
	CLASSROOM_BIND=$(CLASSROOM_BIND) $(CLASSROOM_COMPOSE) up -d --build --wait mqtt-broker rest-server
	$(CLASSROOM_COMPOSE) ps
	@echo "classroom: up on $(classroom_host): MQTT 8883 (TLS)$(if $(filter 0,$(PLAINTEXT)),, and 1883 (plaintext lesson)), \
HTTPS 443. Cards: make classroom-cards; stop: make classroom-down"
endif

classroom-certs: ## classroom: the lab CA and a server certificate for HOST (openssl, scripts/lab-ca.sh)
	@$(need_host)
	$(classroom_cli) certs --host "$(classroom_host)"

classroom-accounts: ## classroom: accounts from ROSTER=<csv>; passwords kept unless ROTATE=<id,id>|all
	$(classroom_cli) accounts --roster "$(ROSTER)" $(if $(ROTATE),--rotate "$(ROTATE)") \
	  $(if $(filter 0,$(PLAINTEXT)),--no-plaintext)
	@echo "classroom: a running broker reads the new accounts after: make classroom-reload"

classroom-reload: ## classroom (Docker): the broker and the REST server re-read accounts (SIGHUP)
	$(CLASSROOM_COMPOSE) kill -s HUP mqtt-broker rest-server

classroom-cards: ## classroom: print each student's connection card (STUDENT=<id> for one)
	@$(classroom_cli) cards $(if $(STUDENT),--student "$(STUDENT)")

classroom-down: ## classroom (Docker): stop the broker and the REST server, remove their network
	$(CLASSROOM_COMPOSE) --profile students down
