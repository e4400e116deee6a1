# Captures. Every capture and recording gets a file of its own, captures/<proto>-<UTC time>.pcapng, and
# captures/<proto>.pcapng is a copy of the latest: what `make analyze-<proto>` and `make wireshark-<proto>` open.
#   make capture-<proto>   runs the protocol's scripted demo while tcpdump records it
#   make record-<proto>    records your own session: run the demo by hand in other terminals, Ctrl+C stops
#                          (DURATION=<seconds> stops by itself; PORT=<port> another port, local runtime)
#                          With a TLS key log (SSLKEYLOGFILE=<file> in the environment, or KEYLOG=<file>) the secrets
#                          of the recorded TLS sessions go into the pcapng: Wireshark decrypts it with no settings.
# The runtime is chosen automatically (Docker, else network namespaces as root, else 127.0.0.1);
# RUNTIME=docker|netns|local chooses it. CAPTURES=<folder> writes and opens captures elsewhere.

RUNTIME ?=
DURATION ?=
CAPTURES ?= captures
WIRESHARK ?= wireshark
WIRESHARK_PROFILE := messaging-lab
# Wireshark's personal folders on Linux (Help > About Wireshark > Folders shows yours).
WIRESHARK_CONFIG ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/wireshark
WIRESHARK_PLUGINS ?= $(HOME)/.local/lib/wireshark/plugins
capture_args = $(if $(RUNTIME),--runtime $(RUNTIME)) --out "$(CAPTURES)"
check_proto = $(if $(filter $*,$(PROTOS)),,$(error unknown protocol '$*': use one of $(PROTOS)))
need_capture = test -f "$(CAPTURES)/$*.pcapng" || { echo "$(CAPTURES)/$*.pcapng does not exist yet: \
run \`make record-$*\` (your own session) or \`make capture-$*\` (the scripted demo) first" >&2; exit 1; }

.PHONY: capture setup-capture wireshark-profile

setup-capture: ## install what captures need: tcpdump, tshark (as root); Mosquitto only for RUNTIME=netns|local
	@RUNTIME="$(RUNTIME)" scripts/setup.sh capture

capture: setup-capture ## record all five scripted demos into captures/ (RUNTIME=docker|netns|local)
	$(PY) -m labkit.capture all $(capture_args)

capture-%: setup-capture ## record one scripted demo into captures/<proto>-<time>.pcapng (capture-rest, ...)
	@$(check_proto)
	$(PY) -m labkit.capture $* $(capture_args)

record-%: setup-capture ## record your own session on <proto>'s network until Ctrl+C (DURATION=n, RUNTIME=, KEYLOG=)
	@$(check_proto)
	$(PY) -m labkit.record $* $(capture_args) $(if $(DURATION),--duration $(DURATION)) \
	  $(if $(KEYLOG),--keylog "$(KEYLOG)") $(if $(PORT),--port $(PORT))

wireshark-profile: ## install the lab's Wireshark profile and Lua dissector into your personal Wireshark folders
	@mkdir -p "$(WIRESHARK_CONFIG)/profiles/$(WIRESHARK_PROFILE)" "$(WIRESHARK_PLUGINS)"
	@cp captures/profile/* "$(WIRESHARK_CONFIG)/profiles/$(WIRESHARK_PROFILE)/"
	@cp captures/lineproto.lua "$(WIRESHARK_PLUGINS)/"
	@echo "installed: profile $(WIRESHARK_PROFILE) in $(WIRESHARK_CONFIG)/profiles, lineproto.lua in $(WIRESHARK_PLUGINS)"

wireshark-%: ## open the latest capture, captures/<proto>.pcapng, in Wireshark with the lab profile (WIRESHARK=...)
	@$(check_proto)
	@$(need_capture)
	@command -v $(firstword $(WIRESHARK)) >/dev/null || { echo "$(WIRESHARK) is not installed: \`sudo apt-get install wireshark\`, or open $(CAPTURES)/$*.pcapng in VS Code (webshark)" >&2; exit 1; }
	@$(MAKE) --no-print-directory wireshark-profile
	$(WIRESHARK) -C $(WIRESHARK_PROFILE) -X lua_script:$(CURDIR)/captures/lineproto.lua "$(CAPTURES)/$*.pcapng"
