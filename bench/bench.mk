# `make bench`: vblade vs kvblade (vs nullblade, the load generator's ceiling)
# over a private veth pair; see bench/README.md.  Quick run:
#   make bench BENCH_SECONDS=2 BENCH_RUNS=1
# Other knobs (environment): BENCH_TARGETS, BENCH_MTUS, BENCH_WORKLOADS,
# BENCH_SKIP=verify,slow,memory, BENCH_DEPTH, BENCH_KVBLADE_ARGS, BENCH_KVBLADE_SLOW_ARGS.

BENCH_BIN := .cache/bench
BENCH_CC ?= cc
BENCH_CFLAGS ?= -O2 -g -Wall -Wextra
BENCH_TOOLS := $(BENCH_BIN)/aoeload $(BENCH_BIN)/nullblade

$(BENCH_BIN)/%: bench/%.c
	@mkdir -p $(@D)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $<

.PHONY: bench bench-tools
bench-tools: $(BENCH_TOOLS)

bench: build test-deps $(BENCH_TOOLS)
	BENCH_TOOLS=$(BENCH_BIN) node dist/bench/bench.js
