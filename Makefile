GO ?= go
BIN := bin
PLATFORMS := linux/amd64 linux/arm64 darwin/arm64

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

cross:
	@for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "building $$os/$$arch"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -o dist/$$os-$$arch/ ./cmd/... || exit 1; \
	done

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l . && false)
	$(GO) vet ./...

clean:
	rm -rf $(BIN) dist
