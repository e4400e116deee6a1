# Capture analysis: `make analyze PCAP=<file>` explains any pcap/pcapng (hosts, conversations, handshakes,
# TCP flags, ARP, messages, latency, bytes) and writes <name>.md (Mermaid), <name>.png (ladder) and <name>.json
# beside it. `make analyze-<proto>` explains the latest capture of a protocol, captures/<proto>.pcapng.
# Reading a file needs only the .venv (setup.sh analyze: no apt, no Mosquitto).

.PHONY: analyze setup-analyze bench-analyze

setup-analyze: ## build .venv with the analysis tools (no root, no apt)
	@scripts/setup.sh analyze

analyze: setup-analyze ## analyse a capture: make analyze PCAP=<file.pcap|file.pcapng>
	@test -n "$(PCAP)" || { echo "usage: make analyze PCAP=<file.pcap|file.pcapng> (or make analyze-<proto>)" >&2; exit 2; }
	$(PY) -m labkit.analyze "$(PCAP)"

analyze-%: setup-analyze ## analyse the latest capture of a protocol, captures/<proto>.pcapng (analyze-mqtt, ...)
	@$(check_proto)
	@$(need_capture)
	$(PY) -m labkit.analyze "$(CAPTURES)/$*.pcapng"

bench-analyze: setup-test ## time (wall and CPU seconds) and peak memory of the analyzer against tshark -z conv,tcp, 200,000 and 2,000,000 packets (captures cached in .cache/)
	$(PY) -m labkit.analyze.bench
