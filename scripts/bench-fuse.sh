#!/usr/bin/env bash
# bench-fuse.sh — the FUSE view against the same data read from disk.
#
#   1 GiB sequential read of one blob: first read (caches dropped) and cached,
#     through the view with FUSE passthrough and without it, vs the file on disk
#   the npm fixture's node_modules as a view vs the same tree on disk, each
#   round on a fresh mount, medians of per-round ratios view/disk (1.0x = disk
#   speed) with the spread (min-max) over rounds; caches are dropped
#   (echo 3 > /proc/sys/vm/drop_caches) before every cold run:
#     find -ls, cold (target <= 1.2x), and again at once, warm (<= 1.05x)
#     open + read + close of every file, cold (<= 1.5x)
#     a Node task: require() of 15 of the fixture's packages, cold (<= 1.1x)
#   peak RSS of the view's server after the last round
#
# Needs root (dropping caches, passthrough) and /dev/fuse.
# Env: BENCH_ROUNDS (default 5), BENCH_FUSE_BIG=0 skips the 1 GiB read,
#      VRIFT (the vrift binary, default bin/vrift), BENCH_DIR (default /var/tmp).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vrift=${VRIFT:-$here/bin/vrift}
fixture=${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}/base
[ "$(id -u)" = 0 ] || { echo "bench-fuse: needs root (drop caches, passthrough); skipped"; exit 0; }
[ -e /dev/fuse ] || { echo "bench-fuse: no /dev/fuse; skipped"; exit 0; }

w=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vrift-bench-fuse.XXXXXX")
cleanup() {
	for m in "$w"/mnt* "$w"/r*/node_modules; do "$vrift" umount "$m" >/dev/null 2>&1 || true; done
	rm -rf "$w"
}
trap cleanup EXIT
# After dropping caches the kernel sends a view's server a FORGET for every
# inode it held; the second lets the server finish those before a timed run
# (a fresh mount, the real cold case, has none to process).
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; sleep 1; }
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
store=(--store "$w/store")

if [ "${BENCH_FUSE_BIG:-1}" != 0 ]; then
	# One 1 GiB blob.
	mkdir -p "$w/big/data" "$w/mnt-pt" "$w/mnt-np"
	echo "module big" >"$w/big/go.mod"
	head -c $((1 << 30)) /dev/urandom >"$w/big/data/blob.bin"
	"$vrift" "${store[@]}" ingest --tier tier2 "$w/big/data" >/dev/null
	"$vrift" "${store[@]}" mount "$w/big" "$w/mnt-pt"
	"$vrift" "${store[@]}" mount --no-passthrough "$w/big" "$w/mnt-np"

	drop; disk_first=$(ms cat "$w/big/data/blob.bin")
	disk_cached=$(ms cat "$w/big/data/blob.bin")
	drop; pt_first=$(ms cat "$w/mnt-pt/data/blob.bin")
	pt_cached=$(ms cat "$w/mnt-pt/data/blob.bin")
	drop; np_first=$(ms cat "$w/mnt-np/data/blob.bin")
	np_cached=$(ms cat "$w/mnt-np/data/blob.bin")
	echo "1 GiB sequential read (throughput relative to disk; target >= 0.9x with passthrough):"
	printf '  %-28s first %6d ms   cached %6d ms\n' "disk" "$disk_first" "$disk_cached"
	printf '  %-28s first %6d ms (%s)   cached %6d ms (%s)\n' "view, passthrough" "$pt_first" "$(ratio "$disk_first" "$pt_first")" "$pt_cached" "$(ratio "$disk_cached" "$pt_cached")"
	printf '  %-28s first %6d ms (%s)   cached %6d ms (%s)\n' "view, reads through vrift" "$np_first" "$(ratio "$disk_first" "$np_first")" "$np_cached" "$(ratio "$disk_cached" "$np_cached")"
	"$vrift" umount "$w/mnt-pt" >/dev/null
	"$vrift" umount "$w/mnt-np" >/dev/null
fi

# The npm fixture as a view: the tree stays on disk at app/node_modules (tier2
# ingest leaves it), and each round mounts it afresh at rN/node_modules beside
# the same package.json, so Node resolves the same packages in both.
rounds=${BENCH_ROUNDS:-5}
cp -a "$fixture" "$w/app"
"$vrift" "${store[@]}" ingest --tier tier2 "$w/app/node_modules" >/dev/null
pkgs="'express','axios','lodash','rxjs','date-fns','eslint','webpack','jest','typescript','react-dom','yargs','commander','semver','zod','sass'"
nodetask() { (cd "$1" && node -e "for (const p of [$pkgs]) require(p)"); }
readall() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }
declare -A r
for i in $(seq 1 "$rounds"); do
	v="$w/r$i"
	mkdir -p "$v/node_modules"
	cp "$w/app/package.json" "$v/"
	"$vrift" "${store[@]}" mount "$w/app" "$v/node_modules" --subtree node_modules >/dev/null
	drop; d=$(ms find "$w/app/node_modules" -ls); dw=$(ms find "$w/app/node_modules" -ls)
	drop; f=$(ms find "$v/node_modules" -ls); fw=$(ms find "$v/node_modules" -ls)
	r[find_cold]+="$d $f,"; r[find_warm]+="$dw $fw,"
	drop; d=$(ms readall "$w/app/node_modules")
	drop; f=$(ms readall "$v/node_modules")
	r[read_cold]+="$d $f,"
	drop; d=$(ms nodetask "$w/app")
	drop; f=$(ms nodetask "$v")
	r[node_cold]+="$d $f,"
	if [ "$i" = "$rounds" ]; then
		pid=$(pgrep -f -- "--foreground.*$v/node_modules" | head -1)
		rss=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$pid/status")
	fi
	"$vrift" umount "$v/node_modules" >/dev/null
done

# stats "disk view,disk view,..." prints median disk and view ms, the median
# of the per-round ratios view/disk and their spread.
stats() {
	echo "$1" | tr ',' '\n' | awk 'BEGIN { n = 0 } NF == 2 { d[n] = $1; v[n] = $2; q[n] = $2 / ($1 > 0 ? $1 : 1); n++ }
	function med(a,   i, j, t, b) { for (i = 0; i < n; i++) b[i] = a[i]
		for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
		return n % 2 ? b[int(n / 2)] : (b[n / 2 - 1] + b[n / 2]) / 2 }
	END { lo = hi = q[0]; for (i = 1; i < n; i++) { if (q[i] < lo) lo = q[i]; if (q[i] > hi) hi = q[i] }
		printf "disk %6d ms   view %6d ms   %.2fx (rounds %.2f-%.2f)", med(d), med(v), med(q), lo, hi }'
}
echo "npm fixture view ($(find "$w/app/node_modules" | wc -l) entries, $rounds rounds; medians, view/disk per round, spread min-max):"
printf '  find -ls, cold        (target <= 1.2x)   %s\n' "$(stats "${r[find_cold]}")"
printf '  find -ls, warm        (target <= 1.05x)  %s\n' "$(stats "${r[find_warm]}")"
printf '  open+read+close, cold (target <= 1.5x)   %s\n' "$(stats "${r[read_cold]}")"
printf '  node require x15, cold (target <= 1.1x)  %s\n' "$(stats "${r[node_cold]}")"
echo "  per round (disk view ms): find cold ${r[find_cold]} find warm ${r[find_warm]} read ${r[read_cold]} node ${r[node_cold]}"
echo "  peak RSS of the view's server: $rss"
