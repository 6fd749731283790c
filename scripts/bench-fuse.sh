#!/usr/bin/env bash
# bench-fuse.sh — the FUSE view against the same data read from disk.
#
#   1 GiB sequential read of one blob: first read (caches dropped) and cached,
#     through the view with FUSE passthrough and without it, vs the file on disk
#   find + stat of every entry of the npm fixture: view vs disk (cold caches)
#   open + read + close of every file of the fixture: view vs disk (cold)
#   peak RSS of the view's server after all of that
#
# Needs root (dropping caches, passthrough) and /dev/fuse. Throughput ratios
# are view/disk (1.0x = disk speed); time ratios for find are view/disk.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vrift=${VRIFT:-$here/bin/vrift}
fixture=${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}/base
[ "$(id -u)" = 0 ] || { echo "bench-fuse: needs root (drop caches, passthrough); skipped"; exit 0; }
[ -e /dev/fuse ] || { echo "bench-fuse: no /dev/fuse; skipped"; exit 0; }

w=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vrift-bench-fuse.XXXXXX")
cleanup() {
	for m in "$w"/mnt*; do "$vrift" umount "$m" >/dev/null 2>&1 || true; done
	rm -rf "$w"
}
trap cleanup EXIT
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
store=(--store "$w/store")

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

# The npm fixture as a view.
cp -a "$fixture" "$w/app"
"$vrift" "${store[@]}" ingest --tier tier2 "$w/app/node_modules" >/dev/null
mkdir -p "$w/mnt-nm"
"$vrift" "${store[@]}" mount "$w/app" "$w/mnt-nm" --subtree node_modules >/dev/null
drop; find_disk=$(ms find "$w/app/node_modules" -ls)
drop; find_view=$(ms find "$w/mnt-nm" -ls)
find_view_warm=$(ms find "$w/mnt-nm" -ls)
drop; read_disk=$(ms sh -c 'find "$1" -type f -print0 | xargs -0 cat' sh "$w/app/node_modules")
drop; read_view=$(ms sh -c 'find "$1" -type f -print0 | xargs -0 cat' sh "$w/mnt-nm")
pid=$(pgrep -f -- "--foreground.*$w/mnt-nm" | head -1)
rss=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$pid/status")
echo "npm fixture view ($(find "$w/app/node_modules" | wc -l) entries; time relative to disk, target find <= 3x):"
printf '  find + stat every entry     disk %6d ms   view %6d ms (%s)   view again (kernel caches warm) %6d ms\n' "$find_disk" "$find_view" "$(ratio "$find_view" "$find_disk")" "$find_view_warm"
printf '  open + read + close all     disk %6d ms   view %6d ms (%s)\n' "$read_disk" "$read_view" "$(ratio "$read_view" "$read_disk")"
echo "  peak RSS of the view's server: $rss"
