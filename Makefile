GO ?= go
BIN := bin
# go-nvml's C header marks functions it never calls here as deprecated.
CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
export CGO_CFLAGS

.PHONY: build run test test-ui screenshots test-real bench-real test-cluster bench-cluster bench bench-go fuzz soak cross dist dist-test lint clean

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# hotswap-bench is the load generator (`hotswap bench` runs it): a program
# of its own, beside hotswap, so that its plotting stays out of the proxy.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/hotswap ./cmd/hotswap
	$(GO) build -o $(BIN)/hotswap-bench ./cmd/hotswap-bench
	$(GO) build -o $(BIN)/mockbackend ./cmd/mockbackend

# Serves the bundled config.yaml, whose models are mock backends.
run: build
	./$(BIN)/hotswap -config config.yaml

# The status page's browser tests (ui/) run when a Chromium or Chrome is
# found (HOTSWAP_BROWSER, or on PATH); otherwise they skip, and this says so.
BROWSER := $(or $(HOTSWAP_BROWSER),$(shell command -v chromium chromium-browser google-chrome google-chrome-stable 2>/dev/null | head -n1))

# Four packages at a time: most tests wait on backends starting, not on
# the CPU, so this halves the wall time on two cores.
test:
	@if [ -n "$(BROWSER)" ]; then echo "browser tests (ui/): with $(BROWSER)"; \
	else echo "browser tests (ui/) SKIPPED: no Chromium or Chrome found (apt-get install chromium, or set HOTSWAP_BROWSER)"; fi
	$(GO) test -race -count=1 -timeout 15m -p 4 ./...

# Only the status page's browser tests; without a browser this fails.
test-ui:
	HOTSWAP_REQUIRE_BROWSER=1 $(GO) test -race -count=1 -v -run 'TestStatusPage' ./ui

# Retakes the README's screenshots of the status page (docs/).
screenshots:
	HOTSWAP_REQUIRE_BROWSER=1 HOTSWAP_UI_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run 'TestStatusPage$$|TestStatusPageOnAPhone' ./ui

# hotswap in front of a real llama.cpp llama-server, on tiny models the
# test generates: HOTSWAP_LLAMA_SERVER=/path/to/llama-server make test-real
test-real:
	@test -n "$$HOTSWAP_LLAMA_SERVER" || { echo "set HOTSWAP_LLAMA_SERVER to a llama-server binary (see README)"; exit 2; }
	$(GO) test -race -count=1 -timeout 10m -run 'TestRealLlamaServer|TestLlamaServer' -v ./cmd/hotswap ./internal/gguf

# Issue 31's goals against a real llama-server, on models it generates
# (a 2 GiB one among them; nothing is downloaded): a cold start read ahead
# against a warm one, a swap's overhead beyond the incoming server's own
# start and answer, the footprint estimate against what is learned
# (BenchmarkRealLlamaServer, cmd/hotswap/llamabench_test.go). About 5
# minutes; HOTSWAP_BENCH_ROUNDS (default 5) sets the rounds of each case.
#   HOTSWAP_LLAMA_SERVER=/path/to/llama-server make bench-real
bench-real:
	@if [ -z "$$HOTSWAP_LLAMA_SERVER" ]; then echo "bench-real SKIPPED: set HOTSWAP_LLAMA_SERVER to a llama-server binary (see README)"; \
	else set -x; $(GO) test -run '^$$' -bench '^BenchmarkRealLlamaServer$$' -benchtime 1x -count 1 -timeout 60m -v ./cmd/hotswap; fi

# Two hotswap hosts behind llm-d's endpoint picker (EPP), built from its
# source: HOTSWAP_EPP_SRC, or ../shared/llm-d-router when present. The EPP
# binary is cached under the user's cache directory by the source's commit
# (the first build takes minutes, fetching its modules). See examples/llm-d/.
EPP_SRC ?= $(or $(HOTSWAP_EPP_SRC),$(wildcard $(CURDIR)/../shared/llm-d-router))
test-cluster:
	@test -n "$(EPP_SRC)" || { echo "set HOTSWAP_EPP_SRC to a checkout of github.com/llm-d/llm-d-router"; exit 2; }
	HOTSWAP_EPP_SRC=$(EPP_SRC) $(GO) test -race -count=1 -timeout 20m -run 'TestCluster$$' -v ./examples/llm-d/

# The benchmark of BENCHMARKS.md's "More than one machine": a workload
# cycling three models over two hosts (memory for one model each) through
# the endpoint picker, then through its random picker. A few minutes.
bench-cluster: build
	@test -n "$(EPP_SRC)" || { echo "set HOTSWAP_EPP_SRC to a checkout of github.com/llm-d/llm-d-router"; exit 2; }
	HOTSWAP_EPP_SRC=$(EPP_SRC) HOTSWAP_CLUSTER_BENCH=$(CURDIR)/$(BIN)/hotswap-bench $(GO) test -count=1 -timeout 30m -run 'TestClusterBench$$' -v ./examples/llm-d/

# The standard `hotswap bench` suite against config.yaml's hotswap and its
# chat model's backend directly; writes bench/results/ and regenerates the
# suite's section of BENCHMARKS.md. About 2 minutes.
bench: build
	$(GO) run ./bench/suite -hotswap $(BIN)/hotswap -config config.yaml -out bench/results -md BENCHMARKS.md

# The go test micro-benchmarks of hotswap in bench/ (warm path, switches,
# floods, the memory of 1000 streams), at the default benchtime: each runs
# b.N of its operations (a request, a switch, a whole scenario) for about a
# second; one whose single operation takes longer than that runs it once.
# A few minutes.
bench-go: build
	$(GO) test -run '^$$' -bench . -count 1 -timeout 20m ./bench/

# Each fuzzer for FUZZTIME (default 30s); `make test` replays their corpora
# (testdata/fuzz) as ordinary tests.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzJSONModel$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzFormModel$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzSSEPassThrough$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzShape$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzRename$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzConvert$$' -fuzztime $(FUZZTIME) ./llamaswap
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./ollama
	$(GO) test -run '^$$' -fuzz '^FuzzAnswerFeed$$' -fuzztime $(FUZZTIME) ./ollama
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzSplitArgs$$' -fuzztime $(FUZZTIME) ./config

# The chaos soak (soak/, RELIABILITY.md) for SOAK (default 60s; `make test`
# runs a 15s one): hotswap, built without the race detector here, under
# crashing, stubborn, hanging and slow backends, clients that hang up or do
# not read, and an operator switching modes and reloading, its invariants
# checked as it runs. SOAK=10m make soak for a long one.
soak:
	SOAK=$${SOAK:-60s} $(GO) test -count=1 -timeout 0 -run TestSoak -v ./soak

# The GPU memory probe (NVML) needs cgo: the native build has it, and the
# cross builds (no C cross compiler here) are CGO_ENABLED=0 binaries that
# plan with RAM only. darwin has no NVML anyway (unified memory).
cross:
	$(GO) build -o dist/$$($(GO) env GOOS)-$$($(GO) env GOARCH)/ ./cmd/...
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -o dist/linux-arm64/ ./cmd/...
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 $(GO) build -o dist/darwin-arm64/ ./cmd/...
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -o dist/linux-amd64-nocgo/ ./cmd/...

# Release archives in dist/: hotswap-VERSION-OS-ARCH.tar.gz for each of
# DIST_TARGETS (see packaging/dist.sh for what they hold) and SHA256SUMS.
# Linux builds have the NVIDIA probe (cgo): linux-arm64 through Debian's
# cross compiler (apt-get install gcc-aarch64-linux-gnu), whose absence
# stops this, unless ARM64_CGO=0 builds that one without the probe.
# darwin has no NVML (unified memory): CGO_ENABLED=0. Run on linux/amd64.
# The version is read once, so that a commit meanwhile cannot split it.
DIST_VERSION := $(VERSION)
DIST_COMMIT := $(COMMIT)
ARM64_CC ?= aarch64-linux-gnu-gcc
ARM64_CGO ?= 1
dist:
	@test "$$($(GO) env GOHOSTOS)/$$($(GO) env GOHOSTARCH)" = linux/amd64 || { echo "make dist: builds on linux/amd64 (its linux-amd64 archive uses the native C compiler)"; exit 2; }
	@if [ "$(ARM64_CGO)" = 1 ] && ! command -v $(ARM64_CC) >/dev/null; then \
		echo "make dist: linux-arm64 is built with the NVIDIA probe (cgo) and needs a C cross compiler, $(ARM64_CC):"; \
		echo "  apt-get install gcc-aarch64-linux-gnu"; \
		echo "or build that archive without the probe (it then plans with RAM only): make dist ARM64_CGO=0"; \
		exit 2; fi
	@[ "$(ARM64_CGO)" = 1 ] || echo "*** make dist: linux-arm64 WITHOUT the NVIDIA probe (ARM64_CGO=0): its hotswap cannot read GPU memory ***"
	rm -rf dist/.stage dist/hotswap-*.tar.gz dist/SHA256SUMS
	CGO_ENABLED=1 sh packaging/dist.sh dist $(DIST_VERSION) $(DIST_COMMIT) linux amd64
	CGO_ENABLED=$(ARM64_CGO) CC=$(ARM64_CC) sh packaging/dist.sh dist $(DIST_VERSION) $(DIST_COMMIT) linux arm64
	CGO_ENABLED=0 sh packaging/dist.sh dist $(DIST_VERSION) $(DIST_COMMIT) darwin amd64
	CGO_ENABLED=0 sh packaging/dist.sh dist $(DIST_VERSION) $(DIST_COMMIT) darwin arm64
	rm -rf dist/.stage
	cd dist && sha256sum hotswap-$(DIST_VERSION)-*.tar.gz > SHA256SUMS
	@cat dist/SHA256SUMS

# make dist, then checks what it made: SHA256SUMS, each Linux hotswap's
# `hotswap version` (linux-arm64's under qemu-user, if installed), the
# unit (systemd-analyze verify) and install.sh into a temporary root
# (packaging/'s tests, on the linux-amd64 archive). About 40s with Go's
# build cache warm; the first cross builds take a few minutes more.
dist-test: dist
	ARM64_CGO=$(ARM64_CGO) sh packaging/dist-test.sh dist $(DIST_VERSION)

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && false)
	$(GO) vet ./...

clean:
	rm -rf $(BIN) dist
