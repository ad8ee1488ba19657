GO ?= go
BIN := bin
# go-nvml's C header marks functions it never calls here as deprecated.
CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
export CGO_CFLAGS

.PHONY: build run test bench cross lint clean

build:
	$(GO) build -o $(BIN)/hotswap ./cmd/hotswap
	$(GO) build -o $(BIN)/mockbackend ./cmd/mockbackend

# Serves the bundled config.yaml, whose models are mock backends.
run: build
	./$(BIN)/hotswap -config config.yaml

test:
	$(GO) test -race -count=1 -timeout 15m ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 15m ./bench/

# The GPU memory probe (NVML) needs cgo: the native build has it, and the
# cross builds (no C cross compiler here) are CGO_ENABLED=0 binaries that
# plan with RAM only. darwin has no NVML anyway (unified memory).
cross:
	$(GO) build -o dist/$$($(GO) env GOOS)-$$($(GO) env GOARCH)/ ./cmd/...
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -o dist/linux-arm64/ ./cmd/...
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 $(GO) build -o dist/darwin-arm64/ ./cmd/...
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -o dist/linux-amd64-nocgo/ ./cmd/...

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && false)
	$(GO) vet ./...

clean:
	rm -rf $(BIN) dist
