#!/usr/bin/env bash
# deps.sh — install the system packages vrift's tests need (Debian/Ubuntu, apt).
#
# Each need is checked by the command or file it provides, so the script is
# idempotent and says nothing when nothing is missing. `make test` runs it
# first.
#   As root:      installs what is missing (apt-get update first, only then)
#                 and says which packages it installs and why.
#   As non-root:  installs nothing; if something is missing it prints the one
#                 sudo command to run and exits 1, so `make test` stops at once
#                 instead of failing a root test many minutes later.
#
# Usage: scripts/deps.sh [--check]
#   --check   only report what is missing (exit 1 if anything is), even as root
#
# Not installed here: Go (1.26, from go.dev; Debian's is older) and make.
set -euo pipefail

say() { echo "deps: $*" >&2; }

check_only=0
case "${1:-}" in
--check) check_only=1 ;;
"") ;;
-h | --help)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit 0
	;;
*)
	say "unknown argument '$1' (expected --check)"
	exit 2
	;;
esac

# package  what it provides (a command on PATH, or an absolute path)  who needs it
needs=(
	"ca-certificates /etc/ssl/certs/ca-certificates.crt  TLS roots: Go modules, npm registry"
	"gcc              gcc                                 cgo (LMDB)"
	"libc6-dev        /usr/include/stdio.h                cgo (LMDB)"
	"nodejs           node                                npm fixture, node suite"
	"npm              npm                                 npm fixture"
	"util-linux       setpriv                             tests run as alice, bob, vrift"
	"passwd           useradd                             tests create alice, bob, vrift"
	"diffutils        diff                                tree comparisons"
	"fuse3            fusermount3                         FUSE mount tests"
	"rpm              rpm                                 .rpm package test"
	"systemd          systemd-analyze                     unit verification"
	"systemd-container systemd-nspawn                     make systemd-test"
	"python3          python3                             launchd plist test"
	"prometheus       promtool                            metrics tests (promtool, server)"
	"prometheus       prometheus                          metrics tests (promtool, server)"
	"zstd             zstd                                compressed blob tests"
	"shellcheck       shellcheck                          script lint tests"
	"e2fsprogs        mkfs.ext4                           loop-mounted test filesystems"
	"mount            losetup                             loop-mounted test filesystems"
)

# have THING: THING is an existing absolute path, or a command on PATH or in
# the sbin directories (a non-root user's PATH often lacks them).
have() {
	case "$1" in
	/*) [ -e "$1" ] ;;
	*) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
	esac
}

missing_pkgs=()
missing_what=()
for line in "${needs[@]}"; do
	read -r pkg what why <<<"$line"
	have "$what" && continue
	missing_what+=("$what ($pkg: $why)")
	case " ${missing_pkgs[*]-} " in
	*" $pkg "*) ;;
	*) missing_pkgs+=("$pkg") ;;
	esac
done

[ ${#missing_pkgs[@]} -eq 0 ] && exit 0

apt_cmd="apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
if [ "$check_only" = 1 ] || [ "$(id -u)" != 0 ]; then
	say "the tests need what is not installed here:"
	printf '  %s\n' "${missing_what[@]}" >&2
	if command -v apt-get >/dev/null 2>&1; then
		say "install it with:  sudo scripts/deps.sh"
		say "          (or:    sudo $apt_cmd)"
	else
		say "no apt-get here: install the packages above with your package manager"
	fi
	say "(make test-quick runs the tests that need none of this, no root, no npm)"
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	say "missing, and no apt-get to install it with:"
	printf '  %s\n' "${missing_what[@]}" >&2
	exit 1
fi

say "installing ${missing_pkgs[*]}"
printf '  for %s\n' "${missing_what[@]}" >&2
log=$(mktemp "${TMPDIR:-/tmp}/vrift-deps.XXXXXX")
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
t0=$SECONDS
# Update only now that something must be installed: a fresh machine has no
# package lists, and stale ones name versions the mirror no longer has.
if ! { apt-get update -q && $apt_cmd; } >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	say "apt-get failed (its output above)"
	exit 1
fi
# Whatever apt says, what counts is that the commands are there now.
still=()
for line in "${needs[@]}"; do
	read -r pkg what _ <<<"$line"
	have "$what" || still+=("$what ($pkg)")
done
if [ ${#still[@]} -gt 0 ]; then
	say "installed, but still missing: ${still[*]}"
	exit 1
fi
say "installed ${missing_pkgs[*]} in $((SECONDS - t0))s"
