# kvblade: `make` installs and builds everything on a fresh Debian 12 machine (as root);
# `make test` runs every test; `make run ADD="9 0 eth0 /path/to/disk.img"` runs the daemon.

SHELL := /bin/bash
export DEBIAN_FRONTEND := noninteractive

# What the daemon needs at run time, and what the tests and benchmarks add to it.
RUNTIME_DEBS := libfuse2 fuse bc iproute2 python3 make g++ liburing-dev
TEST_DEBS := aoetools vblade tshark qemu-system-x86 busybox-static ipxe e2fsprogs

NATIVE := native/build/Release/kvblade_native.node
# Build against the Node headers the machine has (Debian's nodejs ships them in /usr)
# rather than letting node-gyp download them: only the package registries are reachable.
NODEDIR ?= $(shell [ -f /usr/include/node/node_api.h ] && echo /usr)
STAMP := .cache/stamps

.PHONY: all build native deps test-deps run test torture clean distclean
all: build

# Install only the packages that are missing, so a warm machine does no apt work at all.
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(RUNTIME_DEBS))

test-deps: deps
	$(call apt_install,$(TEST_DEBS))

node_modules/.package-lock.json: package.json package-lock.json | deps
	npm ci --no-audit --no-fund
	@touch $@

$(NATIVE): node_modules/.package-lock.json native/binding.gyp $(wildcard native/src/*.cc native/src/*.h) | deps
	cd native && ../node_modules/.bin/node-gyp rebuild --silent $(if $(NODEDIR),--nodedir=$(NODEDIR))
	@test -f $@

native: $(NATIVE)

TS_SOURCES := $(shell find src fuse test bench -name '*.ts' 2>/dev/null) tsconfig.json

# From scratch each time, so a renamed or deleted source leaves no stale test behind.
dist/.built: node_modules/.package-lock.json $(TS_SOURCES)
	rm -rf dist
	node_modules/.bin/tsc -p tsconfig.json
	@touch $@

build: $(NATIVE) dist/.built

run: build
	./bin/kvblade start $(if $(ADD),--add "$(ADD)") $(ARGS)

# Unit tests first, then the network and FUSE tests, then the VM suite. (tap skips any
# folder named dist unless the files are named, hence the explicit list.)
TESTS ?= dist/test/unit/*.test.js dist/test/integration/*.test.js dist/test/e2e/*.test.js

test: build test-deps
	node_modules/.bin/tap $(TESTS)

# The torture suite against the real daemon over veth (as root; minutes): one row per
# check, non-zero exit if any failed. TORTURE_ARGS="--seed N" replays a run, "--only NAME"
# runs some rows, "--reduced" the counts `make test` uses (test/integration/torture.test.ts).
torture: build test-deps
	node dist/test/torture/main.js $(TORTURE_ARGS)

# promtool checks the metrics in the tests. It comes out of Debian's prometheus package
# unpacked, not installed: installing it would also start a Prometheus server (on a host
# with systemd) and pull in 100 MB of web UI. A failure here only makes that test skip.
PROMTOOL := .cache/tools/promtool
$(PROMTOOL):
	@mkdir -p $(@D)/deb
	@cd $(@D)/deb && { apt-get download -qq prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download -qq prometheus >/dev/null 2>&1; }; } \
	  && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool >../promtool.tmp \
	  && chmod 0755 ../promtool.tmp && mv ../promtool.tmp ../promtool \
	  || echo "warning: could not unpack promtool from Debian's prometheus package: the metrics test will skip"
	@rm -rf $(@D)/deb $(@D)/promtool.tmp

test: $(PROMTOOL)

-include bench/bench.mk
-include test/e2e/e2e.mk

# The bench tools are tested too (test/integration/bench-tools.test.ts).
test: $(BENCH_TOOLS)

clean:
	rm -rf dist native/build

distclean: clean
	rm -rf node_modules .cache
