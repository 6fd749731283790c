#!/usr/bin/env bash
# npm-fixture.sh — install vrift's pinned npm fixture (testdata/npm/{base,bumped}).
#
# Result:
#   ${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}/base/{package.json,node_modules}
#   ${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}/bumped/{package.json,node_modules}
#
# "bumped" is the same dependency list as "base" with a few versions changed,
# so a second project can be deduplicated against the first.
#
# Idempotent: each finished tree carries a stamp (sha256 of its package.json,
# the node and npm versions, and this script's install recipe). A tree whose
# stamp matches is left alone. Otherwise it is installed into a temp dir next
# to the target and renamed into place only once complete, so an interrupted
# run never leaves a half tree that looks done.
#
# No lock file is written (npm install --no-package-lock): a lock file would
# record the registry host, and none belongs in the repo or the fixture.
# Transitive dependencies are therefore resolved at install time.
#
# Usage: scripts/npm-fixture.sh [--force] [base|bumped ...]
#   --force   reinstall even if the stamp matches
#   env VRIFT_FIXTURE_DIR   where to install (default ~/.cache/vrift/npm-fixture)
set -euo pipefail

# Bump when the install recipe below changes, so old trees are rebuilt.
RECIPE_VERSION=1
STAMP_NAME=.vrift-fixture-stamp

die() { echo "npm-fixture: error: $*" >&2; exit 1; }
log() { echo "npm-fixture: $*" >&2; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
src_root="$repo_root/testdata/npm"
fixture_dir=${VRIFT_FIXTURE_DIR:-${HOME:?HOME is not set}/.cache/vrift/npm-fixture}

force=0
variants=()
for arg in "$@"; do
	case "$arg" in
	--force) force=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
		exit 0
		;;
	base | bumped) variants+=("$arg") ;;
	*) die "unknown argument '$arg' (expected --force, base or bumped)" ;;
	esac
done
[ ${#variants[@]} -gt 0 ] || variants=(base bumped)

command -v node >/dev/null 2>&1 || die "node is not on PATH (need Node >= 18; scripts/deps.sh installs it)"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not on PATH"
node_version=$(node --version)
npm_version=$(npm --version)
node_major=${node_version#v}
node_major=${node_major%%.*}
# 18: what Debian 12 and Ubuntu 24.04 ship (scripts/deps.sh installs it);
# every package of the fixture supports it.
[ "$node_major" -ge 18 ] 2>/dev/null || die "node $node_version is too old (need >= 18)"

mkdir -p "$fixture_dir" || die "cannot create $fixture_dir"
fixture_dir=$(cd "$fixture_dir" && pwd)

# Leftovers of interrupted runs are ours to clean (never a finished tree).
cleanup_tmp=()
cleanup() {
	local d
	for d in "${cleanup_tmp[@]+"${cleanup_tmp[@]}"}"; do
		[ -n "$d" ] && [ -e "$d" ] && rm -rf -- "$d"
	done
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stamp_for() { # variant -> stamp text
	local pj="$src_root/$1/package.json"
	printf 'recipe=%s\npackage.json=%s\nnode=%s\nnpm=%s\nplatform=%s\n' \
		"$RECIPE_VERSION" "$(sha256sum <"$pj" | cut -d' ' -f1)" \
		"$node_version" "$npm_version" "$(uname -s)-$(uname -m)"
}

counts() { # dir -> "F files, D dirs, S symlinks"
	local d=$1
	printf '%s files, %s dirs, %s symlinks' \
		"$(find "$d" -type f | wc -l)" "$(find "$d" -type d | wc -l)" "$(find "$d" -type l | wc -l)"
}

install_variant() {
	local v=$1
	local pj="$src_root/$v/package.json"
	local dest="$fixture_dir/$v"
	[ -f "$pj" ] || die "missing $pj"

	local want
	want=$(stamp_for "$v")
	if [ "$force" = 0 ] && [ -f "$dest/$STAMP_NAME" ] && [ -d "$dest/node_modules" ] &&
		[ "$(cat "$dest/$STAMP_NAME")" = "$want" ]; then
		log "$v: up to date ($dest)"
		return 0
	fi

	# Remove stale temp dirs from earlier interrupted runs of this variant.
	rm -rf -- "$fixture_dir/.tmp-$v."* "$fixture_dir/.old-$v."* 2>/dev/null || true

	local tmp
	tmp=$(mktemp -d "$fixture_dir/.tmp-$v.XXXXXX")
	cleanup_tmp+=("$tmp" "$tmp.log")
	cp "$pj" "$tmp/package.json"

	log "$v: installing into $tmp (this takes a minute or two)"
	local t0=$SECONDS
	# Install scripts stay on: esbuild's postinstall checks its native binary.
	# Optional deps stay on: esbuild, rollup, next (swc) and sass (@parcel/watcher)
	# ship their native code in platform-specific optional packages.
	if ! (cd "$tmp" && npm install \
		--no-audit --no-fund --no-package-lock --no-save \
		--include=optional \
		--loglevel=warn --prefix "$tmp" >"$tmp.log" 2>&1); then
		tail -n 40 "$tmp.log" >&2 || true
		die "$v: npm install failed (full log above; tree discarded)"
	fi
	[ -d "$tmp/node_modules" ] || die "$v: npm install produced no node_modules"
	# npm may leave its own bookkeeping; none of it may name the registry.
	rm -f "$tmp/package-lock.json" "$tmp/npm-shrinkwrap.json"

	# Sanity: a few entry points and .bin links that the node suite relies on.
	local f
	for f in typescript/package.json next/package.json jest/package.json \
		.bin/tsc .bin/webpack .bin/jest .bin/vite .bin/next .bin/eslint \
		.bin/prettier .bin/sass .bin/esbuild; do
		[ -e "$tmp/node_modules/$f" ] || die "$v: node_modules/$f is missing after install"
	done
	[ -x "$tmp/node_modules/.bin/tsc" ] || die "$v: node_modules/.bin/tsc is not executable"

	printf '%s\n' "$want" >"$tmp/$STAMP_NAME"
	chmod 755 "$tmp" # mktemp made it 0700

	# Swap into place: the finished tree appears under its final name in one rename.
	if [ -e "$dest" ]; then
		local old
		old=$(mktemp -d "$fixture_dir/.old-$v.XXXXXX")
		cleanup_tmp+=("$old")
		mv -T -- "$dest" "$old/tree"
	fi
	mv -T -- "$tmp" "$dest"
	log "$v: installed in $((SECONDS - t0))s"
}

for v in "${variants[@]}"; do
	install_variant "$v"
done

for v in "${variants[@]}"; do
	d="$fixture_dir/$v"
	echo "$d: $(du -sh "$d/node_modules" | cut -f1) in node_modules; $(counts "$d/node_modules")"
done
echo "fixture: $fixture_dir"
