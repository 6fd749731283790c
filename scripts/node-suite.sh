#!/usr/bin/env bash
# node-suite.sh — run 23 real Node.js tasks against a projected node_modules.
#
# Usage: scripts/node-suite.sh PROJECT_DIR
#
# PROJECT_DIR holds package.json and node_modules (the npm fixture from
# scripts/npm-fixture.sh, projected by vrift as symlinks, hardlinks, a copy or
# a read-only FUSE view). The task sources in testdata/node-suite are copied to
# PROJECT_DIR/vrift-node-suite, so Node resolves packages by walking up to
# PROJECT_DIR/node_modules exactly as in a real project.
#
# Nothing is ever written inside node_modules: every tool cache (jest, vite,
# webpack, next, TMPDIR, HOME, XDG dirs) points to PROJECT_DIR/.vrift-node-suite-out,
# which also holds one log per task. After the tasks, node_modules is compared
# with a listing taken before them (type, mode, size, mtime, link target of
# every entry); any change fails the run. Set VRIFT_SUITE_NM_CHECK=0 to skip it.
#
# Output: one line per task, "ok   NAME" or "FAIL NAME (see LOG)" followed by
# the end of that log, then "node suite: X/23 tasks ok". Exit 0 only when all
# 23 tasks pass (and node_modules is unchanged).
#
# PROJECT_DIR/vrift-node-suite and PROJECT_DIR/.vrift-node-suite-out are left
# in place for inspection and wiped at the start of the next run. PROJECT_DIR
# itself must be writable; node_modules need not be.
#
# Env: VRIFT_SUITE_TIMEOUT  per-task timeout in seconds (default 90; next build gets 2x)
#      VRIFT_SUITE_NM_CHECK 0 to skip the node_modules change check
set -euo pipefail

TOTAL=23

die() { echo "node-suite: error: $*" >&2; exit 2; }

case "${1:-}" in
-h | --help)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit 0
	;;
esac
[ $# -eq 1 ] || die "usage: $0 PROJECT_DIR"

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$script_dir/../testdata/node-suite"
[ -d "$src" ] || die "task sources not found at $src"
src=$(cd "$src" && pwd)

[ -d "$1" ] || die "PROJECT_DIR '$1' is not a directory"
PROJECT=$(cd "$1" && pwd)
[ -f "$PROJECT/package.json" ] || die "$PROJECT/package.json not found"
[ -d "$PROJECT/node_modules" ] || die "$PROJECT/node_modules not found (run scripts/npm-fixture.sh and project it first)"
command -v node >/dev/null 2>&1 || die "node is not on PATH"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is not on PATH"

SUITE="$PROJECT/vrift-node-suite"
OUT="$PROJECT/.vrift-node-suite-out"
NM="$PROJECT/node_modules"
BIN="$NM/.bin"
task_timeout=${VRIFT_SUITE_TIMEOUT:-90}
[[ "$task_timeout" =~ ^[0-9]+$ ]] || die "VRIFT_SUITE_TIMEOUT must be a whole number of seconds"

# Fresh work dirs every run (never under node_modules).
rm -rf -- "$SUITE" "$OUT"
mkdir -p "$SUITE" "$OUT"/{logs,cache,tmp,home,xdg-cache,xdg-config,xdg-data} ||
	die "cannot write into $PROJECT (the project dir itself must be writable)"
cp -R "$src/." "$SUITE/"

# Hermetic, offline, deterministic environment for every task.
unset NODE_OPTIONS NODE_PATH NODE_ENV NODE_COMPILE_CACHE BABEL_DISABLE_CACHE \
	http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy
export NO_PROXY='*' no_proxy='*'
export HOME="$OUT/home" TMPDIR="$OUT/tmp" TMP="$OUT/tmp" TEMP="$OUT/tmp"
export XDG_CACHE_HOME="$OUT/xdg-cache" XDG_CONFIG_HOME="$OUT/xdg-config" XDG_DATA_HOME="$OUT/xdg-data"
export VRIFT_SUITE_CACHE="$OUT/cache"
export BABEL_CACHE_PATH="$OUT/cache/babel.json"
export NEXT_TELEMETRY_DISABLED=1 DISABLE_OPENCOLLECTIVE=1 ADBLOCK=1
export BROWSERSLIST_IGNORE_OLD_DATA=1 CI=true TZ=UTC LANG=C.UTF-8 LC_ALL=C.UTF-8
export NO_COLOR=1 FORCE_COLOR=0 NO_UPDATE_NOTIFIER=1
export npm_config_offline=true npm_config_update_notifier=false
export SUITE NM BIN OUT

# ---------------------------------------------------------------- helpers
# Each task runs in a fresh bash (set -euo pipefail) with cwd $SUITE; a task
# passes when it exits 0. Helpers below are exported into those shells.

# same_output EXPECTED_FILE CMD... : run CMD, its stdout must equal EXPECTED_FILE.
same_output() {
	local expected=$1 got
	shift
	got=$("$@")
	printf '%s\n' "$got"
	if [ "$got" != "$(cat "$expected")" ]; then
		echo "--- output differs from $expected:"
		diff <(cat "$expected") <(printf '%s\n' "$got") || true
		return 1
	fi
}
# pkg_version NAME : version from node_modules/NAME/package.json
pkg_version() { node -p "require('$NM/$1/package.json').version"; }
export -f same_output pkg_version

# ---------------------------------------------------------------- tasks
t_cjs_lodash() { node cjs/lodash.js; }
t_cjs_express() { node cjs/express.js; }
t_cjs_axios() { node cjs/axios.js; }
t_cjs_commander() { node cjs/commander.js; }
t_cjs_uuid() { node cjs/uuid.js; }
t_cjs_rxjs() { node cjs/rxjs.js; }
t_cjs_dayjs() { node cjs/dayjs.js; }
t_cjs_yargs() { node cjs/yargs.js; }
t_esm_chalk_datefns() { node esm/chalk-datefns.mjs; }
t_esm_interop() { node esm/interop.mjs; }
t_react_ssr() { node react/ssr.js; }

t_tsc_version() {
	local want got
	want="Version $(pkg_version typescript)"
	got=$("$BIN/tsc" --version)
	echo "$got"
	[ "$got" = "$want" ] || { echo "expected '$want'"; return 1; }
}

t_tsc_compile() {
	cd ts
	"$BIN/tsc" -p tsconfig.json --listEmittedFiles
	test -f dist/main.js -a -f dist/main.d.ts -a -f dist/shapes.js.map
	same_output expected.txt node dist/main.js
}

t_webpack_build() {
	cd webpack
	"$BIN/webpack" --config webpack.config.js
	test -s dist/bundle.js
	# The bundle must be self-contained: run it from a dir where node_modules is unreachable.
	mkdir -p "$TMPDIR/webpack-run"
	cp dist/bundle.js "$TMPDIR/webpack-run/bundle.js"
	same_output expected.txt node "$TMPDIR/webpack-run/bundle.js"
}

t_jest_run() {
	cd jest
	"$BIN/jest" --config jest.config.js --ci --runInBand --no-watchman --colors=false
	test -d "$VRIFT_SUITE_CACHE/jest"
}

t_vite_build() {
	cd vite
	"$BIN/vite" build --config vite.config.mjs
	grep -q '<script type="module" crossorigin src="/assets/' dist/index.html
	grep -l 'VRIFT_VITE_MARKER' dist/assets/*.js
	ls dist/assets/*.css
}

t_next_build() {
	cd next
	"$BIN/next" build
	test -s .next/BUILD_ID
	grep -o 'VRIFT_NEXT_MARKER' .next/server/pages/index.html
	grep -o 'typescript + webpack' .next/server/pages/index.html
}

t_eslint() {
	cd eslint
	"$BIN/eslint" --max-warnings 0 good.js
	# bad.js must fail with exactly these rule violations.
	local rc=0
	"$BIN/eslint" --format json bad.js >"$TMPDIR/eslint-bad.json" || rc=$?
	[ "$rc" = 1 ] || { echo "eslint on bad.js exited $rc, want 1"; cat "$TMPDIR/eslint-bad.json"; return 1; }
	# shellcheck disable=SC2016 # JS template literal, not shell
	same_output expected-bad.txt node -e '
		const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
		for (const m of r[0].messages) console.log(`${m.line}:${m.column} ${m.ruleId}`);
	' "$TMPDIR/eslint-bad.json"
}

t_prettier() {
	cd prettier
	"$BIN/prettier" --no-editorconfig --check formatted.js formatted.ts data.formatted.json
	same_output formatted.js "$BIN/prettier" --no-editorconfig ugly.js
	same_output formatted.ts "$BIN/prettier" --no-editorconfig ugly.ts
	same_output data.formatted.json "$BIN/prettier" --no-editorconfig --parser json data.json
	# The ugly inputs must be reported as unformatted (exit 1).
	local rc=0
	"$BIN/prettier" --no-editorconfig --list-different ugly.js ugly.ts || rc=$?
	[ "$rc" = 1 ] || { echo "prettier --list-different exited $rc, want 1"; return 1; }
}

t_sass() {
	cd sass
	"$BIN/sass" --no-source-map --style=expanded style.scss "$TMPDIR/style.css"
	same_output expected.css cat "$TMPDIR/style.css"
	"$BIN/sass" --no-source-map --style=compressed style.scss "$TMPDIR/style.min.css"
	grep -q '^\.card{' "$TMPDIR/style.min.css"
}

t_esbuild_bundle() {
	cd esbuild
	"$BIN/esbuild" entry.ts --bundle --platform=node --target=node20 \
		--outfile="$TMPDIR/esbuild/bundle.js" --log-level=warning
	same_output expected.txt node "$TMPDIR/esbuild/bundle.js"
}

# Small CLIs whose .bin entries are plain symlinks to scripts: semver and uuid.
t_small_clis() {
	local got want
	got=$("$BIN/semver" -r '>=1.2.0 <2.0.0' 1.1.0 1.2.3 1.9.9 2.0.0 | tr '\n' ' ')
	echo "semver -r: $got"
	[ "$got" = "1.2.3 1.9.9 " ]
	got=$("$BIN/semver" -i minor 1.2.3)
	echo "semver -i: $got"
	[ "$got" = "1.3.0" ]
	got=$("$BIN/uuid" v5 vrift URL)
	want=$(node -p "require('uuid').v5('vrift', require('uuid').v5.URL)")
	echo "uuid v5: $got (library: $want)"
	[ "$got" = "$want" ] && [ "$got" = 42741dd7-eff7-521f-9fa3-3546996970dd ]
	got=$("$BIN/uuid" v4)
	echo "uuid v4: $got"
	[[ "$got" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]]
}

# Every CLI through its node_modules/.bin entry (symlink + exec bit + shebang).
t_bin_versions() {
	local tool pkg want out bad=0
	for tool in tsc:typescript jest:jest vite:vite next:next eslint:eslint \
		prettier:prettier sass:sass esbuild:esbuild rollup:rollup; do
		pkg=${tool#*:}
		tool=${tool%%:*}
		want=$(pkg_version "$pkg")
		if out=$("$BIN/$tool" --version 2>&1) && [[ "$out" == *"$want"* ]]; then
			echo "ok   $tool --version: $(echo "$out" | head -n 1)"
		else
			echo "FAIL $tool --version (want $want): $out"
			bad=1
		fi
	done
	# webpack-cli lists package versions from the package.json and node_modules of
	# its cwd, so ask it from the project dir (read-only use).
	out=$(cd "$NM/.." && "$BIN/webpack" --version 2>&1) || true
	for pkg in webpack webpack-cli; do
		want=$(pkg_version "$pkg")
		if grep -Eq "^ +$pkg: .*=> $want" <<<"$out"; then
			echo "ok   webpack --version reports $pkg $want"
		else
			echo "FAIL webpack --version does not report $pkg $want: $out"
			bad=1
		fi
	done
	return "$bad"
}

# name:function:timeout-multiplier ; exactly $TOTAL entries.
TASKS=(
	cjs-lodash:t_cjs_lodash:1
	cjs-express:t_cjs_express:1
	cjs-axios:t_cjs_axios:1
	cjs-commander:t_cjs_commander:1
	cjs-uuid:t_cjs_uuid:1
	cjs-rxjs:t_cjs_rxjs:1
	cjs-dayjs:t_cjs_dayjs:1
	cjs-yargs:t_cjs_yargs:1
	esm-chalk-date-fns:t_esm_chalk_datefns:1
	esm-interop:t_esm_interop:1
	react-ssr:t_react_ssr:1
	tsc-version:t_tsc_version:1
	tsc-compile:t_tsc_compile:1
	webpack-build:t_webpack_build:1
	jest-run:t_jest_run:1
	vite-build:t_vite_build:1
	next-build:t_next_build:2
	eslint:t_eslint:1
	prettier:t_prettier:1
	sass:t_sass:1
	esbuild-bundle:t_esbuild_bundle:1
	small-clis:t_small_clis:1
	bin-versions:t_bin_versions:1
)
[ ${#TASKS[@]} -eq "$TOTAL" ] || die "internal: ${#TASKS[@]} tasks defined, want $TOTAL"
for spec in "${TASKS[@]}"; do
	# shellcheck disable=SC2163
	export -f "$(cut -d: -f2 <<<"$spec")"
done

# ---------------------------------------------------------------- node_modules snapshot
nm_listing() {
	# -P: never follow symlinks; path, then %y type, %m mode, %s size, %T@ mtime, %l link target.
	find -P "$NM" -printf '%p\t%y %m %s %T@ %l\n' 2>&1 | LC_ALL=C sort
}
nm_check=${VRIFT_SUITE_NM_CHECK:-1}
if [ "$nm_check" != 0 ]; then
	nm_listing >"$OUT/node_modules.before"
fi

# ---------------------------------------------------------------- run
summary="$OUT/summary.txt"
: >"$summary"
ok=0
n=0
t_start=$SECONDS
for spec in "${TASKS[@]}"; do
	IFS=: read -r name fn mult <<<"$spec"
	n=$((n + 1))
	log="$OUT/logs/$(printf '%02d' "$n")-$name.log"
	limit=$((task_timeout * mult))
	t0=$(date +%s.%N)
	rc=0
	(cd "$SUITE" && exec timeout -k 5 "$limit" bash -c "set -euo pipefail; $fn") \
		>"$log" 2>&1 </dev/null || rc=$?
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	if [ "$rc" = 0 ]; then
		ok=$((ok + 1))
		echo "ok   $name"
		printf '%-20s ok   %6ss\n' "$name" "$dt" >>"$summary"
	else
		[ "$rc" = 124 ] && echo "node-suite: timed out after ${limit}s" >>"$log"
		echo "FAIL $name (see $log)"
		# Indented so that no log line (e.g. a test runner's tally) stands alone.
		tail -n 25 "$log" | sed 's/^/    | /'
		printf '%-20s FAIL %6ss rc=%s\n' "$name" "$dt" "$rc" >>"$summary"
	fi
done
elapsed=$((SECONDS - t_start))

nm_changed=0
if [ "$nm_check" != 0 ]; then
	nm_listing >"$OUT/node_modules.after"
	if ! cmp -s "$OUT/node_modules.before" "$OUT/node_modules.after"; then
		nm_changed=1
		echo "FAIL node_modules was modified during the suite (listings in $OUT):"
		diff "$OUT/node_modules.before" "$OUT/node_modules.after" | head -n 20 | sed 's/^/    | /'
	fi
fi

echo "node suite: ${elapsed}s, logs in $OUT/logs, per-task times in $summary"
echo "node suite: $ok/$TOTAL tasks ok"
[ "$ok" -eq "$TOTAL" ] && [ "$nm_changed" = 0 ]
