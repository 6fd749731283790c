#!/usr/bin/env bash
# bench.sh — vrift against cp on the npm fixture, measured in the same run.
#
# Each round times a baseline and the matching vrift operation back to back,
# alternating which goes first; the report gives medians over the rounds and
# their ratio. Before every timed step the disk is let settle (sync + pause),
# because deleting the previous round's trees keeps ext4 busy for seconds and
# would be billed to whatever runs next.
#
#   cold ingest    vrift ingest (tier1, empty store, store creation included;
#                  files adopted, not copied) vs cp -a of the same project,
#                  with cp -al (no data copied at all) as the floor
#   copy ingest    the same with --copy (every byte copied into the store)
#   hardlink ingest the same with --method hardlink: projected in place by
#                  the blobs' own inodes (adopted files stay as they are)
#                  instead of 26k new symlinks; and its re-ingests (the
#                  first records the blobs' inodes of deduplicated files)
#   re-ingest      vrift ingest of the unchanged, already ingested tree vs
#                  cp -a and vs find -printf '' (a bare walk): the first
#                  re-ingest records directory identities, the second is
#                  the steady state
#   link symlink   vrift link --to (symlinks into the store) vs cp -as
#   link hardlink  vrift link --method hardlink --to vs cp -al
#
# Env: VRIFT (binary, default bin/vrift), VRIFT_FIXTURE_DIR, BENCH_RUNS
# (default 5), BENCH_SETTLE extra seconds after the disk is idle (default 1), BENCH_DIR (scratch parent,
# default /var/tmp: keep it on the same filesystem as a real project).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vrift=${VRIFT:-$here/bin/vrift}
fixture=${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}/base
runs=${BENCH_RUNS:-5}
[ -d "$fixture/node_modules" ] || { echo "bench: no fixture at $fixture (run make fixture)" >&2; exit 1; }
[ -x "$vrift" ] || { echo "bench: no vrift binary at $vrift (run make build)" >&2; exit 1; }

w=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vrift-bench.XXXXXX")
trap 'chmod -R u+w "$w" 2>/dev/null; rm -rf "$w"' EXIT
# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"
# ms CMD...: run CMD, print its wall time in milliseconds.
ms() {
	local s e
	s=$(date +%s%N)
	"$@" >/dev/null 2>"$w/last.err" || { echo "bench: failed: $*" >&2; cat "$w/last.err" >&2; exit 1; }
	e=$(date +%s%N)
	echo $(((e - s) / 1000000))
}

files=$(find "$fixture/node_modules" -type f | wc -l)
echo "fixture: $fixture/node_modules: $files files, $(du -sh "$fixture/node_modules" | cut -f1)"
echo "rounds: $runs; scratch: $w ($(df -T "$w" | awk 'NR==2{print $2}'))"

declare -a cpa cpasync cold copying hcold hreing0 hreing floor reing0 reing walk cpas lsym cpal lhard
for i in $(seq "$runs"); do
	fresh "$w/cpa" "$w/cpa2" "$w/proj" "$w/store" "$w/cpas" "$w/lsym" "$w/cpal" "$w/lhard" "$w/cproj" "$w/cstore" "$w/floor" \
		"$w/hproj" "$w/hstore"
	cp -a "$fixture" "$w/proj"
	cp -a "$fixture" "$w/cproj"
	cp -a "$fixture" "$w/hproj"
	store=(--store "$w/store")
	if ((i % 2)); then
		settle; cpa+=("$(ms cp -a "$fixture" "$w/cpa")")
		settle; cold+=("$(ms "$vrift" "${store[@]}" ingest "$w/proj/node_modules")")
		settle; hcold+=("$(ms "$vrift" --store "$w/hstore" ingest --method hardlink "$w/hproj/node_modules")")
		settle; copying+=("$(ms "$vrift" --store "$w/cstore" ingest --copy "$w/cproj/node_modules")")
		settle; floor+=("$(ms cp -al "$fixture" "$w/floor")")
	else
		settle; floor+=("$(ms cp -al "$fixture" "$w/floor")")
		settle; copying+=("$(ms "$vrift" --store "$w/cstore" ingest --copy "$w/cproj/node_modules")")
		settle; hcold+=("$(ms "$vrift" --store "$w/hstore" ingest --method hardlink "$w/hproj/node_modules")")
		settle; cold+=("$(ms "$vrift" "${store[@]}" ingest "$w/proj/node_modules")")
		settle; cpa+=("$(ms cp -a "$fixture" "$w/cpa")")
	fi
	# cp -a returns with its data still in the page cache; an ingest must
	# make blobs durable before it touches the project. This baseline pays
	# for durability too.
	settle; cpasync+=("$(ms sh -c 'cp -a "$1" "$2" && sync' sh "$fixture" "$w/cpa2")")
	# Directory identities are recorded only once older than 2 s.
	sleep 2
	settle; reing0+=("$(ms "$vrift" "${store[@]}" ingest "$w/proj/node_modules")")
	settle; hreing0+=("$(ms "$vrift" --store "$w/hstore" ingest --method hardlink "$w/hproj/node_modules")")
	settle; hreing+=("$(ms "$vrift" --store "$w/hstore" ingest --method hardlink "$w/hproj/node_modules")")
	if ((i % 2)); then
		settle; reing+=("$(ms "$vrift" "${store[@]}" ingest "$w/proj/node_modules")")
		settle; walk+=("$(ms find "$w/proj/node_modules" -printf '')")
	else
		settle; walk+=("$(ms find "$w/proj/node_modules" -printf '')")
		settle; reing+=("$(ms "$vrift" "${store[@]}" ingest "$w/proj/node_modules")")
	fi
	if ((i % 2)); then
		settle; cpas+=("$(ms cp -as "$w/cpa/node_modules" "$w/cpas")")
		settle; lsym+=("$(ms "$vrift" "${store[@]}" link "$w/proj" --to "$w/lsym" --subtree node_modules)")
		settle; cpal+=("$(ms cp -al "$w/cpa/node_modules" "$w/cpal")")
		settle; lhard+=("$(ms "$vrift" "${store[@]}" link "$w/proj" --to "$w/lhard" --subtree node_modules --method hardlink)")
	else
		settle; lsym+=("$(ms "$vrift" "${store[@]}" link "$w/proj" --to "$w/lsym" --subtree node_modules)")
		settle; cpas+=("$(ms cp -as "$w/cpa/node_modules" "$w/cpas")")
		settle; lhard+=("$(ms "$vrift" "${store[@]}" link "$w/proj" --to "$w/lhard" --subtree node_modules --method hardlink)")
		settle; cpal+=("$(ms cp -al "$w/cpa/node_modules" "$w/cpal")")
	fi
	echo "round $i: cp -a ${cpa[-1]} ms, cp -a + sync ${cpasync[-1]} ms, cp -al ${floor[-1]} ms, ingest ${cold[-1]} ms," \
		"ingest --copy ${copying[-1]} ms, ingest --method hardlink ${hcold[-1]} ms (re-ingest ${hreing0[-1]} then ${hreing[-1]} ms)," \
		"re-ingest ${reing0[-1]} then ${reing[-1]} ms, find ${walk[-1]} ms," \
		"cp -as ${cpas[-1]} ms, link ${lsym[-1]} ms, cp -al ${cpal[-1]} ms, link hardlink ${lhard[-1]} ms"
done

echo
echo "medians over $runs rounds (target judged on the median of per-round ratios):"
row "cold ingest" "${cold[*]}" "cp -a" "${cpa[*]}" 0.8
row "hardlink ingest" "${hcold[*]}" "cp -a" "${cpa[*]}" 0.8
row "cp -al floor" "${floor[*]}" "cp -a" "${cpa[*]}" -
row "cold ingest" "${cold[*]}" "cp+sync" "${cpasync[*]}" -
row "copy ingest" "${copying[*]}" "cp -a" "${cpa[*]}" -
row "re-ingest 1st" "${reing0[*]}" "cp -a" "${cpa[*]}" -
row "re-ingest" "${reing[*]}" "cp -a" "${cpa[*]}" 0.05
row "re-ingest" "${reing[*]}" "find" "${walk[*]}" 3
row "hl re-ingest 1st" "${hreing0[*]}" "find" "${walk[*]}" -
row "hardlink re-ing" "${hreing[*]}" "cp -a" "${cpa[*]}" 0.05
row "hardlink re-ing" "${hreing[*]}" "find" "${walk[*]}" 3
row "link symlink" "${lsym[*]}" "cp -as" "${cpas[*]}" 1.1
row "link hardlink" "${lhard[*]}" "cp -al" "${cpal[*]}" -

# Daemon mode against direct mode: the same cold ingest, once through a
# daemon (descriptor passing) and once on a direct store, copying (the
# daemon always copies: its blobs must be its own).
dvrift=${VRIFT_DAEMON:-$here/bin/vrift-daemon}
if [ -x "$dvrift" ]; then
	as_root=()
	[ "$(id -u)" = 0 ] && as_root=(--allow-root)
	declare -a dcold direct
	for i in $(seq "$runs"); do
		fresh "$w/dproj" "$w/dstore" "$w/dstate" "$w/xproj" "$w/xstore"
		cp -a "$fixture" "$w/dproj"
		cp -a "$fixture" "$w/xproj"
		"$dvrift" "${as_root[@]}" --config /dev/null --store "$w/dstore" --state "$w/dstate" --socket "$w/d.sock" 2>"$w/daemon.log" &
		dpid=$!
		for _ in $(seq 50); do [ -S "$w/d.sock" ] && break; sleep 0.1; done
		if ((i % 2)); then
			settle; dcold+=("$(ms "$vrift" --socket "$w/d.sock" ingest "$w/dproj/node_modules")")
			settle; direct+=("$(ms "$vrift" --direct --store "$w/xstore" ingest --copy "$w/xproj/node_modules")")
		else
			settle; direct+=("$(ms "$vrift" --direct --store "$w/xstore" ingest --copy "$w/xproj/node_modules")")
			settle; dcold+=("$(ms "$vrift" --socket "$w/d.sock" ingest "$w/dproj/node_modules")")
		fi
		kill "$dpid"; wait "$dpid" || true
		echo "round $i: daemon-mode ingest ${dcold[-1]} ms, direct-mode ingest ${direct[-1]} ms"
	done
	row "daemon ingest" "${dcold[*]}" "direct --copy" "${direct[*]}" 1.15
fi
