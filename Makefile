# kvblade: `make` installs and builds everything on a fresh Debian 12 machine (as root);
# `make test` runs every test; `make run ADD="9 0 eth0 /path/to/disk.img"` runs the daemon;
# `make install` installs it with its systemd unit (PREFIX=/usr/local, DESTDIR for staging).

SHELL := /bin/bash
export DEBIAN_FRONTEND := noninteractive

# What the daemon needs at run time, and what the tests and benchmarks add to it.
RUNTIME_DEBS := libfuse2 fuse bc iproute2 python3 make g++ liburing-dev
TEST_DEBS := aoetools vblade tshark qemu-system-x86 busybox-static ipxe e2fsprogs systemd

NATIVE := native/build/Release/kvblade_native.node
# Build against the Node headers the machine has (Debian's nodejs ships them in /usr)
# rather than letting node-gyp download them: only the package registries are reachable.
NODEDIR ?= $(shell [ -f /usr/include/node/node_api.h ] && echo /usr)
STAMP := .cache/stamps

.PHONY: all build native deps test-deps run test torture install uninstall clean distclean
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

# Where `make install` puts things. The program is the built tree under LIBDIR (bin/kvblade
# finds dist/, the addon and node_modules relative to itself), linked from BINDIR; the unit
# goes where systemd looks for packaged units (/usr/local/lib/systemd/system is on its path
# too), leaving /etc/systemd/system to the admin. The exports file is never overwritten.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/kvblade
DOCDIR ?= $(PREFIX)/share/doc/kvblade
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
SCRIPTS := scripts/kvadd scripts/kvdel scripts/kvstat

install: build
	rm -rf $(DESTDIR)$(LIBDIR)
	install -d $(DESTDIR)$(LIBDIR)/bin $(DESTDIR)$(LIBDIR)/dist $(DESTDIR)$(LIBDIR)/native/build/Release $(DESTDIR)$(BINDIR)
	install -m 0755 bin/kvblade $(DESTDIR)$(LIBDIR)/bin/kvblade
	cp -R dist/src dist/fuse $(DESTDIR)$(LIBDIR)/dist/
	find $(DESTDIR)$(LIBDIR)/dist -name '*.map' -delete
	install -m 0644 $(NATIVE) $(DESTDIR)$(LIBDIR)/native/build/Release/
	install -m 0644 package.json $(DESTDIR)$(LIBDIR)/package.json
	@# The production dependencies only, as npm resolved them (no tap, typescript, node-gyp).
	@set -eo pipefail; npm ls --omit=dev --all --parseable | tail -n +2 | while read -r dir; do \
	  rel=$${dir#$(CURDIR)/}; install -d $(DESTDIR)$(LIBDIR)/$$rel; cp -R $$dir/. $(DESTDIR)$(LIBDIR)/$$rel/; \
	done
	ln -sfr $(DESTDIR)$(LIBDIR)/bin/kvblade $(DESTDIR)$(BINDIR)/kvblade
	install -m 0755 $(SCRIPTS) $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
	  systemd/kvblade.service.in >$(DESTDIR)$(UNITDIR)/kvblade.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kvblade.service
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -D -m 0644 fuse/README.md $(DESTDIR)$(DOCDIR)/fuse/README.md
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/kvblade/exports ]; then \
	  echo "keeping $(DESTDIR)$(SYSCONFDIR)/kvblade/exports (the default is systemd/exports)"; \
	else \
	  install -D -m 0644 systemd/exports $(DESTDIR)$(SYSCONFDIR)/kvblade/exports; \
	fi
	@echo "installed; then: systemctl daemon-reload && systemctl enable --now kvblade"

# Leaves the exports file and /var/lib/kvblade, as a package removal (not purge) would.
uninstall:
	rm -rf $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(BINDIR)/kvblade $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(SCRIPTS))) $(DESTDIR)$(UNITDIR)/kvblade.service

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
