# Capture analysis: `make analyze PCAP=<file>` explains any pcap/pcapng (hosts, conversations, handshakes,
# messages, latency, bytes) and writes <name>.md (Mermaid), <name>.png (ladder) and <name>.json beside it.

.PHONY: analyze bench-analyze

analyze: setup ## analyse a capture: make analyze PCAP=<file.pcap|file.pcapng>
	@test -n "$(PCAP)" || { echo "usage: make analyze PCAP=<file.pcap|file.pcapng> (or make analyze-<proto>)" >&2; exit 2; }
	$(PY) -m labkit.analyze "$(PCAP)"

analyze-%: setup ## analyse captures/<proto>.pcapng (analyze-rest, analyze-soap, analyze-mqtt, ...)
	@$(if $(filter $*,$(PROTOS)),,$(error unknown protocol '$*': use one of $(PROTOS)))
	@test -f captures/$*.pcapng || { echo "captures/$*.pcapng does not exist yet: run \`make capture-$*\` first" >&2; exit 1; }
	$(PY) -m labkit.analyze captures/$*.pcapng

bench-analyze: setup-test ## time the analyzer against tshark -z conv,tcp on a 200,000-packet capture
	$(PY) -m labkit.analyze.bench
