#!/usr/bin/env bash
# The main job on an embedded sample, in direct mode: ingest a tree, link it
# elsewhere, show status. Everything happens in a temp dir, store included.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vrift=${VRIFT:-$here/bin/vrift}
work=$(mktemp -d "${TMPDIR:-/tmp}/vrift-demo.XXXXXX")
export VRIFT_STORE=$work/store
cp -a "$here/testdata/demo/app" "$work/app"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
cd "$work"
step "$vrift" ingest app
step ls -l app/node_modules/left-pad
step "$vrift" link app --to restored --method copy
step diff -r "$here/testdata/demo/app" restored && echo "restored tree is byte-identical"
step "$vrift" status app
echo
echo "demo files are in $work (remove with: rm -rf $work)"
