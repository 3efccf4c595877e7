# Tincture build. `make` builds the BPF object and the release agent.
# Quiet by default; `make V=1` shows every command.

SHELL        := /bin/bash
.DELETE_ON_ERROR:
.DEFAULT_GOAL := build

ifeq ($(V),1)
Q :=
else
Q := @
endif

SWIFT        ?= swift
CLANG        ?= $(shell command -v /opt/swift/usr/bin/clang 2>/dev/null || command -v clang)
BPFTOOL      ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
LLVM_OBJCOPY ?= $(shell command -v /opt/swift/usr/bin/llvm-objcopy 2>/dev/null || command -v llvm-objcopy 2>/dev/null)
ARCH         := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
PREFIX       ?= /usr/local
UNITDIR      ?= /etc/systemd/system

OUT          := .build/bpf
GEN          := Sources/CTinctureBPF/generated
BPF_SRCS     := $(wildcard bpf/*.bpf.c)
BPF_OBJS     := $(patsubst bpf/%.bpf.c,$(OUT)/%.bpf.o,$(BPF_SRCS))
BPF_HDRS     := $(wildcard bpf/*.h)
VMLINUX_H    := $(OUT)/vmlinux.h
SKEL         := $(GEN)/tincture.skel.h
AGENT        := .build/release/tincture

# Debian packages the build and the tests need (command or file that proves each).
BUILD_PKGS   := libbpf-dev:/usr/include/bpf/libbpf.h libelf-dev:/usr/include/libelf.h \
                zlib1g-dev:/usr/include/zlib.h bpftool:$(BPFTOOL) pkg-config:/usr/bin/pkg-config
# Network namespaces, for the tests and the benchmarks alike.
NETNS_PKG    := iproute2:/usr/sbin/ip
TEST_PKGS    := nftables:/usr/sbin/nft $(NETNS_PKG) curl:/usr/bin/curl \
                prometheus:/usr/bin/promtool
DEB_PKGS     := $(BUILD_PKGS) $(TEST_PKGS)

RELEASE_FLAGS := -c release --static-swift-stdlib
# What `make bench` needs beyond the build (its load generators, namespaces). The peers it
# compares with (bpftrace, libbpf-tools) are installed by bench.py during the footprint
# soak, which does not measure throughput, so their download costs no extra time.
BENCH_PKGS   := gcc:/usr/bin/gcc $(NETNS_PKG)
BENCH_ARGS   ?=

.PHONY: all build bpf deps run test test-unit test-integration test-vm bench install uninstall clean

all: build

## deps: install the Debian packages the build and tests need (only the missing ones)
deps:
	$(Q)missing=""; for p in $(DEB_PKGS); do \
		[ -e "$${p#*:}" ] || missing="$$missing $${p%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "  DEPS   installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install$$missing" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	fi

$(OUT):
	$(Q)mkdir -p $@

$(VMLINUX_H): | $(OUT)
	@echo "  BTF    $@"
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(OUT)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(VMLINUX_H) | $(OUT)
	@echo "  BPF    $@"
	$(Q)$(CLANG) -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$(ARCH) \
		-I$(OUT) -Ibpf -c $< -o $@.full
	$(Q)$(LLVM_OBJCOPY) --strip-debug $@.full $@ && rm -f $@.full

# All families linked into one object so they share the ring buffer and counters.
$(OUT)/tincture.bpf.o: $(BPF_OBJS)
	@echo "  LINK   $@"
	$(Q)$(BPFTOOL) gen object $@ $^

$(SKEL): $(OUT)/tincture.bpf.o
	@echo "  SKEL   $@"
	$(Q)mkdir -p $(GEN)
	$(Q)$(BPFTOOL) gen skeleton $< name tincture_bpf > $@

## bpf: compile the BPF programs and generate the embedded skeleton
bpf: deps $(SKEL)

## build: release agent at .build/release/tincture (BPF object embedded)
build: bpf
	@echo "  SWIFT  $(AGENT)"
	$(Q)$(SWIFT) build $(RELEASE_FLAGS) --product tincture $(if $(V),,--quiet)

## run: start the agent in the foreground with built-in defaults (needs root)
run: DEB_PKGS := $(BUILD_PKGS)
run: build
	$(AGENT) agent

## test: every test layer (unit, host-kernel integration, end to end, stock-kernel VM)
test: build test-unit test-integration test-vm

test-unit: bpf
	$(SWIFT) test

test-integration: build
	Tests/integration/run.sh

test-vm: build
	Tests/vm/run-in-vm.sh --timeout 1800 -- Tests/vm/guest-tests.sh

## bench: overhead next to bpftrace and libbpf-tools, consumer throughput, footprint
##        (not part of test; about 15 minutes from a fresh clone, 10 of them the footprint soak;
##        BENCH_ARGS="--soak 60" shortens it)
bench: DEB_PKGS := $(BUILD_PKGS) $(BENCH_PKGS)
bench: build
	Tests/bench/bench.py --json .build/bench/results.json $(BENCH_ARGS)

## install: agent to $(PREFIX)/bin, unit to $(UNITDIR)
install: build
	install -D -m 0755 $(AGENT) $(DESTDIR)$(PREFIX)/bin/tincture
	install -D -m 0644 systemd/tincture.service $(DESTDIR)$(UNITDIR)/tincture.service
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload; echo "installed; start with: systemctl enable --now tincture"; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tincture $(DESTDIR)$(UNITDIR)/tincture.service

clean:
	rm -rf $(OUT) $(GEN)
	$(SWIFT) package clean
