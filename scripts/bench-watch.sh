#!/usr/bin/env bash
# bench-watch.sh — live ingest (vrift watch) on the npm fixture, against
# storing after the fact, measured in the same run.
#
# Each round, in fresh directories (and alternating which side goes first):
#   after     untar the fixture, then a cold `vrift ingest --copy` (empty
#             store): storing after the writer is done
#   watched   untar the fixture into a watched project (empty store), then
#             `vrift watch --sync` and the same `vrift ingest --copy`,
#             which finds every file stored and reads none (checked)
#   untar     the untar alone, unwatched: the writer's overhead is the
#             watched untar against it
#   tier2     a watched untar, --sync, then `ingest --tier tier2` (reads
#             nothing) against the unchanged re-ingest right after it
# The lag from a file's close to its commit on an idle tree comes from
# the watch package's BenchmarkCommitLag (median and 99th percentile), and the
# watcher's peak RSS on a synthetic tree of WATCH_RSS_FILES files (default
# 300000, 100 per directory; 0 skips it).
#
# Env: VRIFT, VRIFT_FIXTURE_DIR, BENCH_RUNS (default 5), BENCH_DIR (scratch
# parent, default /var/tmp), WATCH_RSS_FILES.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vrift=${VRIFT:-$here/bin/vrift}
fixture=${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}/base
runs=${BENCH_RUNS:-5}
rss_files=${WATCH_RSS_FILES:-300000}
[ -d "$fixture/node_modules" ] || { echo "bench-watch: no fixture at $fixture (run make fixture)" >&2; exit 1; }
[ -x "$vrift" ] || { echo "bench-watch: no vrift binary at $vrift (run make build)" >&2; exit 1; }

w=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vrift-bench-watch.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	chmod -R u+w "$w" 2>/dev/null
	rm -rf "$w"
}
trap cleanup EXIT
# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

tar -cf "$w/fixture.tar" -C "$fixture" package.json node_modules
echo "fixture: $fixture: $(find "$fixture/node_modules" -type f | wc -l) files; tarball $(du -h "$w/fixture.tar" | cut -f1) (uncompressed)"
echo "rounds: $runs; scratch: $w ($(df -T "$w" | awk 'NR==2{print $2}'))"

# start_watch PROJ STORE: a watcher on PROJ, returned once ready.
start_watch() {
	"$vrift" --store "$2" watch "$1" 2>"$w/watch.err" &
	pids+=($!)
	wpid=$!
	for _ in $(seq 600); do
		"$vrift" --store "$2" watch --sync "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench-watch: watcher not ready" >&2
	cat "$w/watch.err" >&2
	exit 1
}
stop_watch() { kill "$wpid"; wait "$wpid" || true; }
# read_nothing JSON: the ingest read no file content.
read_nothing() {
	local n
	n=$(sed -n 's/.*"read_files": \([0-9]*\).*/\1/p' <<<"$1")
	[ "$n" = 0 ] || { echo "bench-watch: the ingest after --sync read $n files" >&2; exit 1; }
}

declare -a after watched untar untarw t2first t2steady
for i in $(seq "$runs"); do
	fresh "$w/a" "$w/b" "$w/c" "$w/d" "$w/sa" "$w/sb" "$w/sd"
	mkdir -p "$w/a" "$w/b/node_modules" "$w/c" "$w/d/node_modules"
	# A project has its package.json before npm install writes node_modules.
	cp "$fixture/package.json" "$w/b/"
	cp "$fixture/package.json" "$w/d/"
	side_after() {
		settle
		local s
		s=$(now_ms)
		tar -xf "$w/fixture.tar" -C "$w/a"
		"$vrift" --store "$w/sa" ingest --copy "$w/a/node_modules" >/dev/null 2>&1
		after+=($(($(now_ms) - s)))
	}
	side_watched() {
		start_watch "$w/b" "$w/sb"
		settle
		local s t out
		s=$(now_ms)
		tar -xf "$w/fixture.tar" -C "$w/b"
		t=$(now_ms)
		"$vrift" --store "$w/sb" watch --sync "$w/b"
		out=$("$vrift" --store "$w/sb" --json ingest --copy "$w/b/node_modules" 2>/dev/null)
		watched+=($(($(now_ms) - s)))
		untarw+=($((t - s)))
		read_nothing "$out"
		stop_watch
	}
	if ((i % 2)); then side_after; side_watched; else side_watched; side_after; fi
	settle
	s=$(now_ms)
	tar -xf "$w/fixture.tar" -C "$w/c"
	untar+=($(($(now_ms) - s)))

	start_watch "$w/d" "$w/sd"
	tar -xf "$w/fixture.tar" -C "$w/d"
	"$vrift" --store "$w/sd" watch --sync "$w/d"
	stop_watch
	settle
	s=$(now_ms)
	out=$("$vrift" --store "$w/sd" --json ingest --tier tier2 "$w/d" 2>/dev/null)
	t2first+=($(($(now_ms) - s)))
	read_nothing "$out"
	settle
	s=$(now_ms)
	"$vrift" --store "$w/sd" ingest --tier tier2 "$w/d" >/dev/null 2>&1
	t2steady+=($(($(now_ms) - s)))
	echo "round $i: untar + ingest --copy ${after[-1]} ms, watched untar + sync + ingest --copy ${watched[-1]} ms" \
		"(untar ${untarw[-1]} ms), untar alone ${untar[-1]} ms; tier2 ingest after sync ${t2first[-1]} ms, unchanged re-ingest ${t2steady[-1]} ms"
done

echo
echo "medians over $runs rounds (targets judged on the median of per-round ratios):"
row "watched+sync+ingest" "${watched[*]}" "untar+ingest --copy" "${after[*]}" 0.9
row "untar, watched" "${untarw[*]}" "untar alone" "${untar[*]}" 1.3
row "tier2 ingest after sync" "${t2first[*]}" "unchanged re-ingest" "${t2steady[*]}" 1.0

echo
echo "lag from close to commit, idle tree:"
(cd "$here" && go test -count=1 -run '^$' -bench CommitLag -benchtime 200x ./watch | grep -E 'CommitLag|FAIL') || true

if [ "$rss_files" -gt 0 ]; then
	echo
	fresh "$w/r" "$w/sr"
	dirs=$((rss_files / 100))
	mkdir -p "$w/r/tree"
	echo '{}' >"$w/r/package.json"
	(cd "$w/r/tree" && seq 0 $((dirs - 1)) | xargs mkdir && for d in $(seq 0 $((dirs - 1))); do
		(cd "$d" && seq 0 99 | sed "s/^/f$d-/" | xargs -n 100 touch && echo "$d" >"f$d-0")
	done)
	start_watch "$w/r" "$w/sr"
	pid=$wpid
	scan=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
	mkdir "$w/r/tree/new"
	for j in $(seq 1000); do echo "$j" >"$w/r/tree/new/$j"; done
	"$vrift" --store "$w/sr" watch --sync "$w/r"
	peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
	idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	stop_watch
	echo "watcher RSS on $rss_files files in $dirs directories: peak $((scan / 1024)) MB after the start-up scan," \
		"$((peak / 1024)) MB after a 1000-file burst, $((idle / 1024)) MB resident then (target: peak <= 64 MB)"
fi
