#!/bin/sh
# darwin-check: build-check every package of vrift for macOS (darwin/arm64 and
# darwin/amd64) from Linux, cgo included: `go vet ./...` with GOOS=darwin and
# CGO_ENABLED=1, the C compiled by Debian's clang for the Mach-O target
# against scripts/darwin-sysroot, a stub of the few macOS SDK headers that
# runtime/cgo and LMDB include (nothing is linked). Every Go file that builds
# on macOS, vrift's and its dependencies', is compiled by the real Go
# compiler for darwin and checked by vet; cgo's types for LMDB come from
# clang's debug info for the real target. See docs/macos.md.
#
# Extra arguments go to `go vet` (e.g. -overlay FILE); PKGS overrides ./...
# With STATICCHECK=/path/to/staticcheck (a binary built for this machine),
# staticcheck runs for darwin as well (make lint does that).
set -eu
cd "$(dirname "$0")/.."
CLANG=${CLANG:-clang}
if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "darwin-check: needs clang (Debian: apt-get install clang)" >&2
	exit 1
fi
sysroot=$PWD/scripts/darwin-sysroot
pkgs=${PKGS:-./...}

# No package may drop out of the check: every package that builds on Linux
# must build on darwin too (./... silently leaves out a package whose files
# all carry other build constraints).
# shellcheck disable=SC2086 # PKGS is a list of patterns
linux=$(GOOS=linux go list $pkgs)
for arch in arm64 amd64; do
	case $arch in
	amd64) target=x86_64-apple-macos11 ;;
	*) target=arm64-apple-macos11 ;;
	esac
	# shellcheck disable=SC2086
	darwin=$(GOOS=darwin GOARCH=$arch CGO_ENABLED=1 go list $pkgs)
	if [ "$linux" != "$darwin" ]; then
		echo "darwin-check: packages differ between linux and darwin/$arch:" >&2
		printf '%s\n' "$linux" >/tmp/darwin-check.$$.linux
		printf '%s\n' "$darwin" | diff /tmp/darwin-check.$$.linux - >&2 || true
		rm -f /tmp/darwin-check.$$.linux
		exit 1
	fi
	echo "darwin-check: go vet $pkgs for darwin/$arch (cgo: $CLANG --target=$target)"
	# shellcheck disable=SC2086
	GOOS=darwin GOARCH=$arch CGO_ENABLED=1 \
		CC="$CLANG --target=$target -isysroot '$sysroot'" \
		go vet "$@" $pkgs
	if [ -n "${STATICCHECK:-}" ]; then
		echo "darwin-check: staticcheck $pkgs for darwin/$arch"
		# shellcheck disable=SC2086
		GOOS=darwin GOARCH=$arch CGO_ENABLED=1 \
			CC="$CLANG --target=$target -isysroot '$sysroot'" \
			"$STATICCHECK" $pkgs
	fi
done
echo "darwin-check: ok"
