# swarm — one command, one purpose. `make help` lists them.

GO          ?= go
BIN         := bin/swarm
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# What `make test` runs: every package with the race detector. The slow,
# large cases live behind `make test-long` and the benchmarks. The longest
# package, bench, takes about 5 min on 2 cores; the timeout catches a hang.
TESTFLAGS   ?= -race -count=1 -timeout 15m
# How long `make fuzz` runs each fuzz target.
FUZZTIME    ?= 30s

.PHONY: help build test test-long test-faults fuzz lint bench bench-full bench-size bench-go demo tidy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/swarm
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/swarm

test: ## run all tests with the race detector (what CI runs)
	$(GO) test $(TESTFLAGS) ./...

test-long: ## run the slow, large cases too
	SWARM_TEST_LONG=1 $(GO) test $(TESTFLAGS) -timeout 60m ./...

test-faults: build ## the fault suite: seeder and agents in network namespaces, one line per scenario (root; FAULTS.md)
	bash scripts/faults.sh $(BIN)

fuzz: ## run every fuzz target for FUZZTIME each (default 30s), one at a time
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench: build ## a quick sweep (a few minutes): rewrites the quick tables in BENCHMARKS.md and docs/bench/quick
	bash scripts/bench.sh $(BIN) quick

bench-full: build ## the full sweeps BENCHMARKS.md reports (about an hour)
	bash scripts/bench.sh $(BIN) full

bench-size: build ## release size sweep, agents as separate processes, aria2c beside N=1 (.bench/size/)
	bash scripts/bench-size.sh $(BIN)

bench-go: ## the Go micro-benchmarks (go test -bench)
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: build ## a seeder and 6 agents on 127.0.0.1: publish v1, then v2, watch them converge
	bash scripts/demo.sh $(BIN)

tidy: ## go mod tidy; fails if go.mod or go.sum change
	$(GO) mod tidy
	@git diff --exit-code -- go.mod go.sum || (echo "go.mod/go.sum were not tidy: commit the result"; exit 1)

clean: ## remove build output
	rm -rf bin
