# vrift — see README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FIXTURE   ?= $(HOME)/.cache/vrift/npm-fixture
STATICCHECK_VERSION ?= 2025.1.1
export VRIFT_FIXTURE_DIR := $(FIXTURE)

.PHONY: all build demo test test-go fixture lint bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/vrift ./cmd/vrift
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/vrift-daemon ./cmd/vrift-daemon

## demo: ingest, link and show status on the embedded sample (direct mode)
demo: build
	VRIFT=$(CURDIR)/bin/vrift scripts/demo.sh

## fixture: install the pinned npm fixture (real node_modules) into $(FIXTURE)
fixture:
	scripts/npm-fixture.sh

## test: everything, on the real npm fixture
test: build fixture
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) vet ./cas ./rpc
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## bench: ratios against cp on the npm fixture, plus hash micro-benchmarks
bench: build fixture
	$(GO) test -run '^$$' -bench Hash -benchtime 1s ./cas
	scripts/bench.sh
	scripts/bench-fuse.sh

clean:
	rm -rf bin dist
