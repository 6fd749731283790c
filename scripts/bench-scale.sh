#!/usr/bin/env bash
# bench-scale.sh — vrift at scale (issue 22): a synthetic tree of N tiny
# unique files (1,000 a directory), every store-wide operation timed with
# its max RSS, in direct mode and then in daemon mode (the daemon as the
# vrift user, the tree ingested as alice, status/usage/gc as root).
#
#   make bench-scale                 # N=100000, the quick run
#   make bench-scale SCALE_N=1000000 # the reference
#
# Env: SCALE_N (files), SCALE_DIR (scratch, default /tmp/vrift-scale-N,
# removed first), VRIFT / VRIFT_DAEMON (binaries, default bin/), SCALE_KEEP=1
# keeps the scratch directory, SCALE_DIRECT=0 / SCALE_DAEMON=0 skip a mode,
# SCALE_TIER1=0 skips the symlink-projected tree's rows,
# SCALE_ONLY_INGEST=1 runs only each mode's cold ingest (memory work),
# SCALE_RUNS (default 20) runs of status beside vrift --help and
# SCALE_ROUNDS (default 5) rounds of each re-ingest beside its find walk,
# for medians (one run of a 50 ms command, or of a re-ingest on this disk,
# says little). Needs root for the daemon part (skipped otherwise). Prints
# the load average with the table: other jobs on the machine change every
# figure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${SCALE_N:-100000}
w=${SCALE_DIR:-/tmp/vrift-scale-$n}
vrift=${VRIFT:-$here/bin/vrift}
dvrift=${VRIFT_DAEMON:-$here/bin/vrift-daemon}
# shellcheck source=scripts/bench-lib.sh
. "$here/scripts/bench-lib.sh"

fresh "$w"
mkdir -p "$w"
chmod 755 "$w"

# gen DIR: N files of unique content, 1,000 a directory.
gen() {
	python3 - "$1" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f:
        f.write("vrift scale file %d\n" % i)
PY
}

rows=()
# run NAME CMD...: time (s) and max RSS (MB) of CMD and its children.
run() {
	local name=$1; shift
	settle
	local t0 t1
	# SCALE_PROF=DIR: each vrift command writes its peak heap profile
	# there (go tool pprof -sample_index=inuse_space bin/vrift DIR/x.heap).
	if [ -n "${SCALE_PROF:-}" ]; then
		mkdir -p "$SCALE_PROF"; chmod 777 "$SCALE_PROF"
		export VRIFT_HEAPPROFILE="$SCALE_PROF/$(echo "$name" | tr -c 'a-zA-Z0-9\n' _).heap"
	fi
	t0=$(date +%s%N)
	if ! /usr/bin/time -f '%M' -o "$w/time" "$@" >"$w/out" 2>"$w/err"; then
		echo "FAILED: $name: $*" >&2; cat "$w/err" >&2; tail -3 "$w/out" >&2
		rows+=("$(printf '%-34s %10s %10s' "$name" failed -)")
		return 0
	fi
	t1=$(date +%s%N)
	local kb
	kb=$(tail -1 "$w/time")
	rows+=("$(printf '%-34s %9.3fs %8.1fMB' "$name" "$(echo "($t1-$t0)/1000000000" | bc -l)" "$(echo "$kb/1024" | bc -l)")")
	echo "${rows[-1]}"
}

# usec CMD...: CMD's wall time in microseconds (its output dropped), by
# bash's own clock: a $(date) on each side adds a fork and an exec of date
# (8-10 ms on this VM, where /bin/true alone takes 4-7 ms).
usec() {
	local t0 t1
	t0=${EPOCHREALTIME/./}
	"$@" >/dev/null 2>"$w/err" || { echo "FAILED: $*" >&2; cat "$w/err" >&2; return 1; }
	t1=${EPOCHREALTIME/./}
	echo $((t1 - t0))
}

# paired NAME BASE-NAME TARGET ROUNDS BASE-CMD -- CMD...: ROUNDS rounds of
# the baseline then the command, back to back (settled first when they
# touch the disk: SETTLE=1); a row with both medians, the median of the
# per-round ratios and their range (bench-lib.sh's row), and the
# command's own median as a row of the table.
paired() {
	local name=$1 bname=$2 target=$3 rounds=$4
	shift 4
	local base=()
	while [ "$1" != -- ]; do base+=("$1"); shift; done
	shift
	local v="" b="" i
	for i in $(seq "$rounds"); do
		[ -z "${SETTLE:-}" ] || settle
		b+="$(usec "${base[@]}") "
		[ -z "${SETTLE:-}" ] || settle
		v+="$(usec "$@") "
	done
	row "$name" "$(us2ms "$v")" "$bname" "$(us2ms "$b")" "$target" | tee -a "$w/paired"
	rows+=("$(echo "$v" | awk -v n="$name (median of $rounds)" '{ k = split($0, a, " ")
		for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
		m = (k % 2) ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2
		printf "%-34s %9.3fs %10s", n, m / 1e6, "-" }')")
}
us2ms() { echo "$1" | awk '{ for (i = 1; i <= NF; i++) printf "%.3f ", $i / 1000 }'; }
runs=${SCALE_RUNS:-20}
rounds=${SCALE_ROUNDS:-5}
: >"$w/paired"

echo "generating $n files in $w/proj/tree"
mkdir -p "$w/proj"
touch "$w/proj/go.mod"
gen "$w/proj/tree"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

d=(--direct --store "$w/store")
if [ "${SCALE_DIRECT:-1}" != 0 ]; then
	run "direct: cold ingest (tier2)" "$vrift" "${d[@]}" ingest --tier tier2 "$w/proj/tree"
fi
if [ "${SCALE_DIRECT:-1}" != 0 ] && [ -z "${SCALE_ONLY_INGEST:-}" ]; then
	run "find -printf '%T@ %s' (stat walk)" find "$w/proj/tree" -printf '%T@ %s\n'
	run "direct: unchanged re-ingest" "$vrift" "${d[@]}" ingest --tier tier2 "$w/proj/tree"
	run "direct: unchanged re-ingest again" "$vrift" "${d[@]}" ingest --tier tier2 "$w/proj/tree"
	SETTLE=1 paired "re-ingest again" "find -printf '%T@ %s'" 3 "$rounds" find "$w/proj/tree" -printf '%T@ %s\n' -- \
		"$vrift" "${d[@]}" ingest --tier tier2 "$w/proj/tree"
	run "vrift --help (start-up floor)" "$vrift" --help
	run "direct: status" "$vrift" "${d[@]}" status "$w/proj"
	paired "direct: status" "vrift --help" - "$runs" "$vrift" --help -- "$vrift" "${d[@]}" status "$w/proj"
	run "direct: status --recount" "$vrift" "${d[@]}" status --recount
	run "direct: gc --dry-run" "$vrift" "${d[@]}" gc --dry-run
	run "direct: gc" "$vrift" "${d[@]}" gc
	run "direct: verify" "$vrift" "${d[@]}" verify
	mkdir -p "$w/linked"
	run "direct: link --method hardlink" "$vrift" "${d[@]}" link --method hardlink --to "$w/linked" "$w/proj"
	fresh "$w/linked"
fi
# A symlink-projected (tier1) tree of the same shape: its re-ingest is
# bound by listing, not stat'ing (a directory unchanged since it was
# recorded vouches for its symlinks), so its floor is find's listing walk.
# The first re-ingest follows the ingest's swap at once (issue 22: it once
# read every symlink again).
if [ "${SCALE_DIRECT:-1}" != 0 ] && [ -z "${SCALE_ONLY_INGEST:-}" ] && [ "${SCALE_TIER1:-1}" != 0 ]; then
	echo "generating $n files in $w/proj1/tree"
	mkdir -p "$w/proj1"
	touch "$w/proj1/go.mod"
	gen "$w/proj1/tree"
	run "direct: tier1 ingest (adopt, symlinks)" "$vrift" "${d[@]}" ingest --tier tier1 "$w/proj1/tree"
	run "find -printf '' (listing walk)" find "$w/proj1/tree" -printf ''
	run "direct: tier1 first re-ingest" "$vrift" "${d[@]}" ingest --tier tier1 "$w/proj1/tree"
	run "direct: tier1 re-ingest again" "$vrift" "${d[@]}" ingest --tier tier1 "$w/proj1/tree"
	SETTLE=1 paired "tier1 re-ingest again" "find -printf ''" 3 "$rounds" find "$w/proj1/tree" -printf '' -- \
		"$vrift" "${d[@]}" ingest --tier tier1 "$w/proj1/tree"
	fresh "$w/proj1"
fi

if [ "${SCALE_DAEMON:-1}" = 0 ]; then
	echo "daemon mode skipped (SCALE_DAEMON=0)"
elif [ "$(id -u)" = 0 ] && id vrift >/dev/null 2>&1 && id alice >/dev/null 2>&1 && [ -x "$dvrift" ]; then
	mkdir -p "$w/dstore" "$w/dstate" "$w/run"
	chown vrift: "$w/dstore" "$w/dstate" "$w/run"
	chmod 755 "$w/run"
	# The same tree, handed to alice (cheaper than a copy at 1M files);
	# the direct-mode store stays until the end.
	fresh "$w/proj/.vrift"
	mv "$w/proj" "$w/aproj"
	chown -R alice: "$w/aproj"
	dprof=
	[ -z "${SCALE_PROF:-}" ] || { mkdir -p "$SCALE_PROF"; chmod 777 "$SCALE_PROF"; dprof=$SCALE_PROF/daemon.heap; }
	# With SCALE_PROF, the daemon's log there has a line per Go GC (the
	# heap's size against the RSS sampled below).
	setpriv --reuid vrift --regid vrift --init-groups env VRIFT_HEAPPROFILE="$dprof" \
		GODEBUG="${SCALE_PROF:+gctrace=1}" "$dvrift" --config /dev/null --store "$w/dstore" --state "$w/dstate" \
		--socket "$w/run/d.sock" 2>"$w/daemon.log" &
	dpid=$!
	for _ in $(seq 100); do [ -S "$w/run/d.sock" ] && break; sleep 0.1; done
	as_alice=(setpriv --reuid alice --regid alice --init-groups env HOME="$w/aproj" VRIFT_HEAPPROFILE="${VRIFT_HEAPPROFILE:-}")
	s=(--socket "$w/run/d.sock")
	# The daemon's resident set every 0.2 s during the ingest, split as
	# the kernel counts it: anonymous (Go heap, C malloc: LMDB's dirty
	# pages) and file-backed (mapped LMDB pages, the binary).
	sample_rss() {
		while kill -0 "$dpid" 2>/dev/null; do
			awk '/^VmRSS|^RssAnon|^RssFile|^RssShmem/ {printf "%s ", $2} END {print ""}' "/proc/$dpid/status"
			sleep 0.2
		done >"$w/rss.log"
	}
	sample_rss &
	spid=$!
	run "daemon: cold ingest as alice" "${as_alice[@]}" "$vrift" "${s[@]}" ingest --tier tier2 "$w/aproj/tree"
	kill "$spid"; wait "$spid" 2>/dev/null || true
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$dpid/status")
	rows+=("$(printf '%-34s %10s %8.1fMB' "daemon: RSS peak after ingest" - "$(echo "$hwm/1024" | bc -l)")")
	echo "${rows[-1]}"
	rows+=("$(awk '$1 > m {m = $1; a = $2; f = $3} END {printf "%-34s %10s %8.1fMB (anon %.1f, file %.1f)", "daemon: sampled RSS peak, ingest", "-", m/1024, a/1024, f/1024}' "$w/rss.log")")
	echo "${rows[-1]}"
	# drun NAME CMD...: run, then the daemon's own peak RSS during it
	# (VmHWM, reset first through clear_refs): the daemon does the work
	# of a gc or a usage, the client only waits.
	drun() {
		echo 5 >"/proc/$dpid/clear_refs"
		run "$@"
		hwm=$(awk '/VmHWM/ {print $2}' "/proc/$dpid/status")
		rows+=("$(printf '%-34s %10s %8.1fMB' "  daemon's own peak during it" - "$(echo "$hwm/1024" | bc -l)")")
		echo "${rows[-1]}"
	}
	if [ -z "${SCALE_ONLY_INGEST:-}" ]; then
		drun "daemon: unchanged re-ingest" "${as_alice[@]}" "$vrift" "${s[@]}" ingest --tier tier2 "$w/aproj/tree"
		drun "daemon: status (root)" "$vrift" "${s[@]}" status
		paired "daemon: status (root)" "vrift --help" - "$runs" "$vrift" --help -- "$vrift" "${s[@]}" status
		paired "daemon: status (alice)" "vrift --help (alice)" - "$runs" "${as_alice[@]}" "$vrift" --help -- "${as_alice[@]}" "$vrift" "${s[@]}" status "$w/aproj"
		drun "daemon: status --recount (root)" "$vrift" "${s[@]}" status --recount
		drun "daemon: usage (root)" "$vrift" "${s[@]}" usage
		drun "daemon: gc --dry-run (root)" "$vrift" "${s[@]}" gc --dry-run
		drun "daemon: gc (root)" "$vrift" "${s[@]}" gc
	fi
	kill "$dpid"; wait "$dpid" || true
	[ -z "${SCALE_PROF:-}" ] || cp "$w/daemon.log" "$w/rss.log" "$SCALE_PROF/"
else
	echo "daemon mode skipped (needs root, users vrift and alice, $dvrift)"
fi

echo
echo "vrift at scale: $n files, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %10s %10s\n' operation time "max RSS"
printf '%s\n' "${rows[@]}"
echo
echo "paired rounds (medians; ratio = the median of per-round ratios, its range):"
cat "$w/paired"
[ -n "${SCALE_KEEP:-}" ] || fresh "$w"
