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
