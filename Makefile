# quotagate — build, run and test. `make run` and `make test` are all a fresh
# machine needs; everything a test uses is installed by the test-deps target.
GO        ?= go
BIN       ?= bin/quotagate
GRPC_ADDR ?= 127.0.0.1:9191
HTTP_ADDR ?= 127.0.0.1:8080
DATA_DIR  ?= data
PKGS      := ./...

.PHONY: all build run test test-deps vet fmtcheck fuzz bench clean image

all: build

build:
	$(GO) build -o $(BIN) ./cmd/quotagate

## run: build and start quotagate on the embedded default config (single
## node, state and ledger in SQLite under $(DATA_DIR), no external services).
run: build
	./$(BIN) serve --grpc-addr $(GRPC_ADDR) --http-addr $(HTTP_ADDR) --data-dir $(DATA_DIR)

## test: every test, the e2e suite included, under the race detector, then
## each fuzz target for a bounded $(FUZZTIME) past its committed corpus.
test: test-deps vet fmtcheck
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	cd deploy && $(GO) test -count=1 -timeout 10m ./...
	$(MAKE) --no-print-directory fuzz

## fuzz: run every native fuzz target in FUZZ_TARGETS (package:Name) for
## FUZZTIME each. `make fuzz FUZZTIME=10m` is the longer run; a failing input
## lands in the package's testdata/fuzz/<Name>/ and becomes part of the corpus.
FUZZTIME ?= 15s
FUZZ_TARGETS := \
	./admin:FuzzAdminChange \
	./cmd/quotagate:FuzzCheckComponents \
	./config:FuzzParse \
	./config:FuzzRedisTarget \
	./engine:FuzzMemoryStore \
	./engine:FuzzSettle \
	./extauthz:FuzzCountWords \
	./extauthz:FuzzDecodeALS \
	./extauthz:FuzzCheck \
	./extauthz:FuzzRouteSpellings \
	./extauthz:FuzzSkimCheck \
	./extauthz/pathnorm:FuzzPath \
	./ledger:FuzzUnpackLines \
	./store/sqlite:FuzzDecodeLogRow \
	./store/sqlite:FuzzDecodePending \
	./store/sqlite:FuzzDecodePendingLog \
	./telemetry:FuzzExporterTarget
fuzz:
	GO=$(GO) bash .ci/fuzz $(FUZZTIME) $(FUZZ_TARGETS)

## test-deps: install what the tests need, skipping what is already there.
test-deps:
	@for f in .ci/deps/*.sh; do [ -f "$$f" ] || continue; bash "$$f" || exit 1; done

## image: the container image (deploy/Containerfile), FROM scratch with a
## static binary, built with buildah or podman; IMAGE names it.
IMAGE ?= quotagate:dev
image:
	GO=$(GO) deploy/build-image.sh $(IMAGE)

vet:
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...

fmtcheck:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## bench: micro-benchmarks of the hot paths, then the end-to-end load
## benchmark (server CPU per Check against a no-op server, same run).
BENCHTIME ?= 1s
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./engine ./extauthz
	GO=$(GO) bash .ci/bench-load

clean:
	rm -rf bin
