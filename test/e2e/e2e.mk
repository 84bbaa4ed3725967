# Kernel-initiator end-to-end tests (included by the top Makefile).
#   make e2e-multipath   only the multipath test (two hosts, one shared file, one SIGKILLed mid-write)
#   make e2e-assets   download Debian's kernel .deb once, build the guest initramfs base (.cache/e2e)
#   make e2e          run only the e2e tests, against ./bin/kvblade (needs root, qemu, tap)
#   make e2e E2E_TARGET=vblade    the same suite against Debian's vblade, for comparison
#   make e2e E2E_ENV="KVE_MTUS=1500 KVE_VERBOSE=1"   any other knob (see test/e2e/README.md)
# `make test` runs the same test files; they call test/e2e/prepare-assets.sh themselves.

E2E_TARGET ?= kvblade
E2E_ENV ?=

.PHONY: e2e-assets e2e e2e-multipath

e2e-assets:
	bash test/e2e/prepare-assets.sh

e2e: build test-deps e2e-assets
	KVE_TARGET=$(E2E_TARGET) $(E2E_ENV) node_modules/.bin/tap dist/test/e2e/*.test.js

e2e-multipath: build test-deps e2e-assets
	$(E2E_ENV) node_modules/.bin/tap dist/test/e2e/multipath.test.js
