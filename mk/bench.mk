# Benchmark: every server under concurrent load on loopback, each figure next to a baseline measured in
# the same run (the original course repo's servers, a minimal asyncio server, Mosquitto's C clients).
# Results: bench-results/bench.md (the table), bench.json, bench.png; server logs in bench-results/logs/.
# `make bench` first runs the tests marked `bench` (pytest -m bench: timings that stay out of
# `make test`). BENCH_ARGS passes options on, e.g. BENCH_ARGS="--protocols rest soap --rounds 5".

BENCH_ARGS ?=

.PHONY: bench bench-quick

bench: setup-test ## the tests marked `bench` (left out of make test), then all five servers against their baselines
	$(PY) -m pytest -m bench
	$(PY) -m labkit.bench $(BENCH_ARGS)

bench-quick: setup-test ## the benchmark alone in about half a minute, one short round each (rough figures)
	$(PY) -m labkit.bench --quick $(BENCH_ARGS)
