#!/usr/bin/env bash
# test-unprivileged.sh — `make test` once more as an ordinary user (issue 24).
#
# CI runs the suite as root, where nothing checks what most contributors and
# users see: the suite run as themselves. Run as root, this script
#   - creates the unprivileged user $UNPRIV_USER (default ci-user) if missing,
#   - copies this tree (without .git, bin, dist) into its home, owned by it,
#   - gives it root's Go module cache (a copy), the npm fixture (hard links
#     to root's, read-only to the user) and the built versitygw, so its
#     `make test` neither downloads nor rebuilds them,
#   - runs `make test` there as that user, in a clean environment (HOME,
#     PATH, its own GOCACHE; no VRIFT_REQUIRE_ROOT).
# The root, FUSE and package tests skip in that run; any other skip fails it
# (TESTPROGRESS_ALLOW_SKIP): a skip there must say that the test needs root.
#
# Usage (as root): scripts/test-unprivileged.sh [MAKE-TARGET...]   (default: test)
#   env UNPRIV_USER        the user (default ci-user)
#   env VRIFT_FIXTURE_DIR  root's npm fixture (default ~/.cache/vrift/npm-fixture)
#   env UNPRIV_GOFLAGS     GOFLAGS for the user's run (e.g. -run=TestBadInputs)
set -euo pipefail

say() { echo "test-unprivileged: $*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
user=${UNPRIV_USER:-ci-user}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(test)

if [ "$(id -u)" != 0 ]; then
	say "run this as root: it creates a user and runs the tests as that user"
	say "(as an ordinary user already, run make test: that is the same pass)"
	exit 2
fi

t0=$SECONDS
if ! id -u "$user" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash "$user"
	say "created user $user"
fi
home=$(getent passwd "$user" | cut -d: -f6)
if [ -z "$home" ] || [ ! -d "$home" ]; then
	say "user $user has no home directory"
	exit 1
fi
[ "$(id -u "$user")" != 0 ] || { say "$user is root: the point is an ordinary user"; exit 1; }

# The tree as a fresh clone has it, plus uncommitted edits: everything but
# .git (a worktree's .git names a directory the user cannot read, and go
# build then fails to stamp the version) and build output.
dest=$home/vrift
rm -rf "$dest"
mkdir -p "$dest"
tar -C "$here" --exclude=./.git --exclude=./bin --exclude=./dist --exclude=./.cache -cf - . | tar -C "$dest" -xf -
chown -R "$user:" "$dest"

mkdir -p "$home/.cache/vrift/bin" "$home/go/pkg"
# Root's module cache: the user's build then needs no network.
gomod=$(go env GOMODCACHE)
[ ! -d "$gomod" ] || [ -d "$home/go/pkg/mod" ] || cp -a "$gomod" "$home/go/pkg/mod"
# versitygw, built once by root (scripts/versitygw.sh says where).
cp "$("$here/scripts/versitygw.sh")" "$home/.cache/vrift/bin/"
chown "$user:" "$home/.cache" "$home/.cache/vrift" "$home/go"
chown -R "$user:" "$home/go/pkg" "$home/.cache/vrift/bin"
# The npm fixture: hard links (seconds, no space; the files stay root's,
# read-only to the user, and the tests only copy from it), or a copy if the
# home is on another filesystem.
fixture=${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}
if [ -d "$fixture/base/node_modules" ]; then
	rm -rf "$home/.cache/vrift/npm-fixture"
	cp -al "$fixture" "$home/.cache/vrift/npm-fixture" 2>/dev/null ||
		cp -a "$fixture" "$home/.cache/vrift/npm-fixture"
fi
say "set up $user's copy in $((SECONDS - t0))s"

t1=$SECONDS
code=0
setpriv --reuid="$user" --regid="$user" --init-groups -- \
	env -i HOME="$home" USER="$user" LOGNAME="$user" \
	PATH="$(dirname "$(command -v go)"):/usr/local/bin:/usr/bin:/bin" \
	LANG=C.UTF-8 GOTOOLCHAIN=local GOFLAGS="${UNPRIV_GOFLAGS:-}" \
	TESTPROGRESS_ALLOW_SKIP='needs root' \
	make -C "$dest" "${targets[@]}" || code=$?
say "make ${targets[*]} as $user: exit $code in $((SECONDS - t1))s ($((SECONDS - t0))s with set-up)"
exit "$code"
