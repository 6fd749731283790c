# shellcheck shell=bash
# bench-lib.sh — what the benchmark scripts share; sourced, not run.
# Needs $w (the scratch directory) set before settle is called.

# settle: flush, then wait until the disk holding $w has been idle (no
# sectors written or discarded) for a second, at most 60 s, then
# BENCH_SETTLE more (default 1): ext4 keeps discarding the blocks of
# deleted trees long after rm returns, and that would be billed to
# whatever runs next.
io_count() { awk -v d="$bench_dev" '$3 == d {print $10 + $17}' /proc/diskstats; }
settle() {
	bench_dev=${bench_dev:-$(basename "$(df --output=source "$w" | tail -1)")}
	sync
	local prev now idle=0
	prev=$(io_count)
	for _ in $(seq 60); do
		sleep 1
		now=$(io_count)
		if [ "$now" = "$prev" ]; then idle=$((idle + 1)); else idle=0; fi
		[ "$idle" -ge 1 ] && break
		prev=$now
	done
	sleep "${BENCH_SETTLE:-1}"
}

# fresh DIR...: remove trees, read-only parts included.
fresh() { chmod -R u+w "$@" 2>/dev/null || true; rm -rf "$@"; }

# row NAME VRIFT-TIMES BASELINE-NAME BASELINE-TIMES TARGET: the medians,
# and the median of the per-round ratios with their range (each round's
# pair ran back to back, so it is the steadier figure on a disk whose
# speed drifts); TARGET "-" for none.
row() {
	awk -v n="$1" -v v="$2" -v bn="$3" -v b="$4" -v t="$5" 'function med(a, k,   i, j, x) {
			for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
			return (k % 2) ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2 }
		BEGIN {
			k = split(v, va, " "); split(b, ba, " ")
			lo = 1e9; hi = 0
			for (i = 1; i <= k; i++) { r[i] = va[i] / ba[i]; if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
			mv = med(va, k); mb = med(ba, k); rm = med(r, k)
			verdict = (t == "-") ? "" : (rm <= t ? "meets <= " t : "MISSES <= " t)
			printf "%-22s %7.0f ms  %-22s %7.0f ms  median ratio %5.2fx (rounds %.2f-%.2f)  %s\n", n, mv, bn, mb, rm, lo, hi, verdict }'
}
