# Client Manager — build, run, test.
# Only Go is assumed installed; every tool below is fetched through the Go toolchain.

GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BUF         := github.com/bufbuild/buf/cmd/buf@v1.75.0
BINARIES    := runtime client-manager agent
TEST_TIMEOUT ?= 9m
# The version the binaries report (--version, health checks): from git when
# there is a repository, else the Go toolchain's build info (internal/version).
VERSION_PKG := github.com/home-console/client-manager/internal/version
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT      ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS     := -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).commit=$(COMMIT)
# Fuzz targets as package-dir:FuzzName; their seed corpora are in
# <package>/testdata/fuzz/<FuzzName>/.
FUZZ_TARGETS := internal/strictjson:FuzzDecode internal/manifest:FuzzLoad internal/hub:FuzzDecodeFrame internal/api:FuzzDecodeBody
FUZZTIME     ?= 30s

.PHONY: all build run test fuzz bench bench-sessions load lint proto clean

all: build

build:
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do \
		if [ -d cmd/$$b ]; then $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/$$b ./cmd/$$b || exit 1; fi; \
	done

# Starts the runtime on 127.0.0.1:8000; it launches the client manager on :10000.
run: build
	RUNTIME_PLUGINS_DIR=$${RUNTIME_PLUGINS_DIR:-plugins} ./$(BIN)/runtime

# Unit and e2e tests, then every fuzz target for a short fixed time.
test: build
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# Runs each fuzz target for FUZZTIME, one after another; a failing input
# is written to the target's testdata/fuzz directory and fails the run.
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_TARGETS)

# Benchmarks of the store, the agent hub and the strict JSON decoder
# (figures in docs/performance.md).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/sqlite/ ./internal/hub/ ./internal/strictjson/

# Terminal and file-transfer figures with the real binaries, at full size
# (1 GiB transfers and resume, 100 sessions; docs/performance.md), without
# the race detector.
bench-sessions: build
	CM_PERF=1 CM_RESUME_BYTES=1073741824 $(GO) test -count=1 -timeout 30m -v \
		-run 'TestTerminalPerf|TestFileTransferPerf|TestManySessions|TestUploadResumesAfterServerKill' ./e2e/

# AGENTS simulated agents against one client manager: RSS per agent and
# connect rate; STORM=1 also measures a reconnect storm (docs/performance.md).
AGENTS       ?= 10000
CONNECT_RATE ?= 500
load: build
	scripts/load-agents.sh $(AGENTS) $(CONNECT_RATE)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

proto:
	cd pkg/pluginproto && $(GO) run $(BUF) generate

clean:
	rm -rf $(BIN)
