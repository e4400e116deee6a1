# Comparison: `make compare` runs one workload of N operations (default 100) through all five protocols,
# captures each and puts them side by side: captures/compare/compare.md (table), .json, .png (chart),
# and captures/compare/<proto>.pcapng. N=10 for a quick run; RUNTIME=netns (root) for a bridge of namespaces.
# MQTT and REST also run over TLS (rows mqtt-tls and rest-tls, on 127.0.0.1 with a throwaway lab CA; their captures
# carry their TLS secrets: compare.md gives the tshark command that shows them decrypted): COMPARE_ARGS=--no-tls skips them.
# COMPARE_ARGS passes options on, e.g. COMPARE_ARGS="--free-ports" when a lab port is taken.

COMPARE_ARGS ?=
compare_flags = $(if $(N),--n $(N)) $(if $(RUNTIME),--runtime $(RUNTIME))

.PHONY: compare

compare: setup-capture ## the five protocols side by side, same N operations each, MQTT and REST with and without TLS (N=100)
	$(PY) -m labkit.compare $(compare_flags) $(COMPARE_ARGS)
