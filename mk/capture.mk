# Captures: `make capture-<proto>` runs a protocol's scripted demo while tcpdump records it into
# captures/<proto>.pcapng; `make wireshark-<proto>` opens it with the lab's profile and Lua dissector.
# The runtime is chosen automatically (Docker, else network namespaces as root, else 127.0.0.1);
# RUNTIME=docker|netns|local chooses it.

RUNTIME ?=
WIRESHARK ?= wireshark
WIRESHARK_PROFILE := messaging-lab
# Wireshark's personal folders on Linux (Help > About Wireshark > Folders shows yours).
WIRESHARK_CONFIG ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/wireshark
WIRESHARK_PLUGINS ?= $(HOME)/.local/lib/wireshark/plugins
capture_args = $(if $(RUNTIME),--runtime $(RUNTIME))

.PHONY: capture setup-capture wireshark-profile

setup-capture: ## install what captures need (tcpdump, tshark, Mosquitto: as root) and build .venv
	@scripts/setup.sh capture

capture: setup-capture ## record all five demos into captures/<proto>.pcapng (RUNTIME=docker|netns|local)
	$(PY) -m labkit.capture all $(capture_args)

capture-%: setup-capture ## record one demo into captures/<proto>.pcapng (capture-rest, capture-mqtt, ...)
	@$(if $(filter $*,$(PROTOS)),,$(error unknown protocol '$*': use one of $(PROTOS)))
	$(PY) -m labkit.capture $* $(capture_args)

wireshark-profile: ## install the lab's Wireshark profile and Lua dissector into your personal Wireshark folders
	@mkdir -p "$(WIRESHARK_CONFIG)/profiles/$(WIRESHARK_PROFILE)" "$(WIRESHARK_PLUGINS)"
	@cp captures/profile/* "$(WIRESHARK_CONFIG)/profiles/$(WIRESHARK_PROFILE)/"
	@cp captures/lineproto.lua "$(WIRESHARK_PLUGINS)/"
	@echo "installed: profile $(WIRESHARK_PROFILE) in $(WIRESHARK_CONFIG)/profiles, lineproto.lua in $(WIRESHARK_PLUGINS)"

wireshark-%: ## open captures/<proto>.pcapng in Wireshark with the lab profile and Lua dissector (wireshark-rest, ...)
	@$(if $(filter $*,$(PROTOS)),,$(error unknown protocol '$*': use one of $(PROTOS)))
	@test -f captures/$*.pcapng || { echo "captures/$*.pcapng does not exist yet: run \`make capture-$*\` first" >&2; exit 1; }
	@command -v $(WIRESHARK) >/dev/null || { echo "$(WIRESHARK) is not installed: \`sudo apt-get install wireshark\`, or open captures/$*.pcapng in VS Code (webshark)" >&2; exit 1; }
	@$(MAKE) --no-print-directory wireshark-profile
	$(WIRESHARK) -C $(WIRESHARK_PROFILE) -X lua_script:$(CURDIR)/captures/lineproto.lua captures/$*.pcapng
