#!/usr/bin/env bash
# Build the pinned versitygw (a real S3 server over a posix directory, used
# by the team-cache tests and bench) once into a cache directory and print
# its path. Its module graph lives in tools/versitygw so none of its
# dependencies enter vrift's go.mod.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bindir=${VRIFT_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/vrift/bin}
version=$(sed -n 's/^\tgithub.com\/versity\/versitygw \(v[^ ]*\).*/\1/p' "$here/tools/versitygw/go.mod")
[ -n "$version" ] || { echo "versitygw.sh: no versitygw version in tools/versitygw/go.mod" >&2; exit 1; }
out="$bindir/versitygw-$version"
if [ ! -x "$out" ]; then
	mkdir -p "$bindir"
	echo "versitygw.sh: building versitygw $version into $bindir (once; a few minutes)" >&2
	(cd "$here/tools/versitygw" && go build -o "$out.tmp" github.com/versity/versitygw/cmd/versitygw)
	mv "$out.tmp" "$out"
fi
ln -sf "$(basename "$out")" "$bindir/versitygw"
echo "$out"
