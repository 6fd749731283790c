# vrift — see README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Package versions must start with a digit: a tag vX.Y.Z gives X.Y.Z, an
# untagged tree 0.0.0~git<commit>.
PKG_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && echo $${v\#v} | tr - '~' || echo 0.0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
LDFLAGS   := -X main.version=$(VERSION)
FIXTURE   ?= $(HOME)/.cache/vrift/npm-fixture
# v0.6.1 is staticcheck 2025.1.1 under its semver tag (the proxy serves
# only that name here).
STATICCHECK_VERSION ?= v0.6.1
export VRIFT_FIXTURE_DIR := $(FIXTURE)

.PHONY: all build demo deps man test test-quick test-unprivileged test-go fixture versitygw lint darwin-check bench bench-scale package systemd-test clean fuzz soak

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

## versitygw: build the pinned S3 server the team-cache tests run (once, into ~/.cache/vrift/bin)
versitygw:
	scripts/versitygw.sh >/dev/null

## deps: install the system packages the tests need (Debian/Ubuntu, apt), as
## root; as non-root, say the one sudo command that does, if any is missing
deps:
	@scripts/deps.sh

# go test -json through a filter that shows each package as it starts, slow
# tests, skip reasons and every failure in full, keeps go test's "ok"/"FAIL"
# lines, closes with "tests: N passed, N failed, N skipped" and exits as go
# test did.
GOTEST = $(GO) run ./scripts/testprogress $(GO) test -json

## test: every test, on the real npm fixture (installs the missing system
## packages first, as root; CI then runs make systemd-test too). Root, FUSE
## and package tests skip without root; CI (VRIFT_REQUIRE_ROOT=1) fails them.
test: deps build fixture versitygw
	$(GO) vet ./...
	VRIFT_REQUIRE_FIXTURE=1 $(GOTEST) -p 1 -count=1 -timeout 60m ./...

## test-unprivileged: as root (CI runs it after make test), make test once
## more as an ordinary user (UNPRIV_USER, default ci-user, created if
## missing) on a copy of this tree in its home, with the fixture and
## versitygw handed over: only a skip that says the test needs root may pass.
## UNPRIV_SKIP= runs every test, as an ordinary user's make test does.
test-unprivileged: fixture versitygw
	UNPRIV_GOFLAGS='-skip=$(UNPRIV_SKIP)' scripts/test-unprivileged.sh

# Left out of CI's unprivileged pass for time, not privilege: the tests that
# copy and ingest the whole 586 MB npm fixture several times, and the macOS
# cross-build check (it runs no vrift code). As an ordinary user on a 2-core
# machine under 3-6x load from other jobs they took 331 s, 180 s, 128 s,
# 366 s and over 9 min (TestTeamCacheNpm, its clean-up included); the
# darwin check took 12 min for two packages under the same load. The root
# pass runs them, and so does an ordinary user's own make test (and
# UNPRIV_SKIP= here). Likewise the watcher's real npm install (its user
# has no npm cache: the whole install would come from the registry) and its
# kill -9 round; TestWatchFixture keeps the watcher's unprivileged path.
UNPRIV_SKIP ?= ^(TestKillMidIngest|TestGCDuringIngest|TestNpmFixture|TestNodeSuite|TestTeamCacheNpm|TestDarwinBuild|TestWatchNpmInstall|TestWatchKill9)$$

## test-quick: the edit-test loop: -short skips the root, FUSE, package and
## npm-fixture tests (even as root, even with VRIFT_REQUIRE_* set); no set-up
test-quick:
	VRIFT_REQUIRE_ROOT= VRIFT_REQUIRE_FIXTURE= $(GOTEST) -short ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOBIN=$(CURDIR)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	bin/staticcheck ./...
	STATICCHECK=$(CURDIR)/bin/staticcheck scripts/darwin-check.sh

## darwin-check: go vet every package for darwin/arm64 and darwin/amd64, cgo
## included (needs clang); also run by make test (packaging.TestDarwinBuild)
darwin-check:
	scripts/darwin-check.sh

## bench: ratios against cp on the npm fixture, plus hash micro-benchmarks
bench: build fixture
	$(GO) test -run '^$$' -bench Hash -benchtime 1s ./cas
	scripts/bench.sh
	scripts/bench-fuse.sh
	scripts/bench-remote.sh
	scripts/bench-watch.sh

## bench-scale: a synthetic tree of SCALE_N tiny files (100000 quick, 1000000
## the reference): every store-wide operation's time and max RSS, direct and
## daemon mode (not in make test; the daemon part needs root)
SCALE_N ?= 100000
bench-scale: build
	SCALE_N=$(SCALE_N) scripts/bench-scale.sh

## package: dist/vrift_<version>_amd64.deb and dist/vrift-<version>.x86_64.rpm (nfpm)
package: build
	rm -rf dist && mkdir -p dist/completions
	bin/vrift completion bash >dist/completions/vrift.bash
	bin/vrift completion zsh >dist/completions/vrift.zsh
	bin/vrift completion fish >dist/completions/vrift.fish
	$(MAKE) man
	VERSION=$(PKG_VERSION) $(GO) tool nfpm package --config packaging/nfpm.yaml --packager deb --target dist/vrift_$(PKG_VERSION)_amd64.deb
	VERSION=$(PKG_VERSION) $(GO) tool nfpm package --config packaging/nfpm.yaml --packager rpm --target dist/vrift-$(PKG_VERSION).x86_64.rpm
	ls -l dist

## man: dist/man/*.gz: vrift(1) and a page per command (from the cobra
## commands), vrift-daemon(8) (from its flags), vrift.toml(5) (from the admin
## guide's configuration reference); HOME=~ keeps the builder's home out of
## the flags' defaults; gen-man is only in a build with the genman tag
## (cobra/doc's initialisers would slow every start of the shipped vrift)
man: build
	rm -rf dist/man && mkdir -p dist/man
	$(GO) build -tags genman -ldflags '$(LDFLAGS)' -o bin/vrift-genman ./cmd/vrift
	env -u XDG_CONFIG_HOME HOME='~' bin/vrift-genman gen-man dist/man
	$(GO) run ./internal/tools/mangen daemon bin/vrift-daemon $(PKG_VERSION) dist/man/vrift-daemon.8
	$(GO) run ./internal/tools/mangen config docs/admin-guide.md $(PKG_VERSION) dist/man/vrift.toml.5
	gzip -9n dist/man/*

## systemd-test: boot real systemd in a container with the installed .deb
systemd-test:
	VRIFT_SYSTEMD_TEST=1 $(GO) test -count=1 -run TestSystemdBoot -v ./packaging

## fuzz: every fuzz target for FUZZTIME each (go test fuzzes one target per run)
FUZZTIME ?= 20s
FUZZ_TARGETS := rpc:FuzzStreamRead rpc:FuzzDecodeParams service:FuzzServiceParams \
	manifest:FuzzDecodeEntry manifest:FuzzEntryRoundTrip cas:FuzzParseName cas:FuzzKeyName \
	cmd/vrift-daemon:FuzzConfig treefile:FuzzSignatureSplit pack:FuzzDecodeIndex pack:FuzzFrame
fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME) $(FUZZ_TARGETS)

## soak: 1,000 rounds of concurrent ingest/link/delete/gc/verify, direct and daemon mode (root),
## each bounded to 5 minutes (make test runs 50 rounds of each)
soak:
	VRIFT_SOAK_ROUNDS=1000 VRIFT_SOAK_TIME=5m $(GO) test -count=1 -timeout 15m -run '^(TestSoak|TestDaemonSoak)$$' -v ./cmd/vrift

clean:
	rm -rf bin dist
