#!/usr/bin/env bash
# bench-remote.sh — the team cache against what CI caches do today, on the
# npm fixture, against the same real S3 server (versitygw on 127.0.0.1) and
# with the same S3 client (the baseline's object goes through
# internal/tools/s3obj, which uses vrift's remote package).
#
#   baseline upload   tar of the project | zstd, uploaded as one object
#   baseline restore  that object downloaded | zstd -d | tar -x into an empty dir
#                     (also reported made durable: + the syncfs after it, no target)
#   cold pull         vrift pull --method hardlink into an empty dir and an empty
#                     store                       target <= 1.0x baseline restore,
#                                                 <= 100 requests, bytes <= 1.2x the tarball
#   bumped pull       the bumped project, with base already in the local store
#                                                 target <= 0.3x restore, bytes <= 10%
#                                                 of the tarball (tree included), <= 12 requests
#   unchanged push    vrift push of a tree the remote already has
#                                                 target <= 0.2x baseline upload, 1 request
#   cold push         (once, at set-up)           target <= 100 requests
#   signed round trip the bumped tree pushed (unchanged) and pulled with base
#                     local, signed and checked against a trusted key, vs the
#                     same unsigned                target <= 1.05x
#
# Each round uses fresh directories and stores; the report gives medians and
# the median of per-round ratios, with bytes and request counts beside.
# Env: VRIFT (default bin/vrift), VRIFT_FIXTURE_DIR, BENCH_RUNS (default 5),
# BENCH_DIR (scratch parent, default /var/tmp), BENCH_JOBS (vrift --jobs).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
vrift=${VRIFT:-$here/bin/vrift}
fixdir=${VRIFT_FIXTURE_DIR:-$HOME/.cache/vrift/npm-fixture}
runs=${BENCH_RUNS:-5}
jobs=${BENCH_JOBS:-16}
[ -d "$fixdir/base/node_modules" ] || { echo "bench-remote: no fixture at $fixdir (run make fixture)" >&2; exit 1; }
[ -x "$vrift" ] || { echo "bench-remote: no vrift binary at $vrift (run make build)" >&2; exit 1; }
gw=$("$here/scripts/versitygw.sh")
command -v zstd >/dev/null || { echo "bench-remote: zstd not installed" >&2; exit 1; }

w=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vrift-bench-remote.XXXXXX")
s3obj="$w/s3obj"
(cd "$here" && go build -o "$s3obj" ./internal/tools/s3obj)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=vriftbench AWS_SECRET_ACCESS_KEY=vrift-bench-secret AWS_SHARED_CREDENTIALS_FILE=/nonexistent
mkdir -p "$w/s3/bench"
"$gw" --port "127.0.0.1:$port" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" posix "$w/s3" >"$w/gw.log" 2>&1 &
gwpid=$!
trap 'kill $gwpid 2>/dev/null; wait $gwpid 2>/dev/null; chmod -R u+w "$w" 2>/dev/null; rm -rf "$w"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
rem=(--remote s3://bench/vrift --endpoint "http://127.0.0.1:$port" --jobs "$jobs")
obj=(--remote s3://bench/tarballs --endpoint "http://127.0.0.1:$port")

# ms CMD...: run CMD (its stdout to $w/last.out), print wall time in ms.
ms() {
	local s e
	s=$(date +%s%N)
	"$@" >"$w/last.out" 2>"$w/last.err" || { echo "bench-remote: failed: $*" >&2; cat "$w/last.err" >&2; exit 1; }
	e=$(date +%s%N)
	echo $(((e - s) / 1000000))
}
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$w/last.out" "$1"; }
fresh() { chmod -R u+w "$@" 2>/dev/null || true; rm -rf "$@"; }

# Set up once: both projects ingested into store1 and pushed (timed, not
# a ratio: a cold push is a one-off per lock file).
for p in base bumped; do cp -a "$fixdir/$p" "$w/$p"; done
"$vrift" --store "$w/store1" ingest --tier tier2 "$w/base/node_modules" >/dev/null
"$vrift" --store "$w/store1" ingest --tier tier2 "$w/bumped/node_modules" >/dev/null
t=$(ms "$vrift" --json --store "$w/store1" push "$w/base" --name base "${rem[@]}")
cpreq=$(jget requests)
echo "cold push of base: $t ms, $(jget blobs_sent) blobs, $(jget bytes_sent) bytes, $cpreq requests"
t=$(ms "$vrift" --json --store "$w/store1" push "$w/bumped" --name bumped "${rem[@]}")
echo "push of bumped (base up): $t ms, $(jget blobs_sent) blobs, $(jget bytes_sent) bytes, $(jget requests) requests"
# The signed copy of bumped: its blobs are up already, only the tree goes.
"$vrift" key generate bench --out "$w/bench.secret" >"$w/bench.pub"
printf '[remote]\ntrusted_keys = ["%s"]\n' "$(cat "$w/bench.pub")" >"$w/trust.toml"
"$vrift" --store "$w/store1" push "$w/bumped" --name bumped-signed --sign-key "$w/bench.secret" "${rem[@]}" >/dev/null
echo "fixture: $(find "$fixdir/base/node_modules" -type f | wc -l) files; rounds: $runs; jobs: $jobs; scratch: $w"

declare -a up restore durable cold bumpp push rtu rts
for i in $(seq "$runs"); do
	fresh "$w/tar.zst" "$w/restore" "$w/pull" "$w/pullb" "$w/store2" "$w/store3" "$w/pulls" "$w/pullu"
	sync
	# shellcheck disable=SC2016 # expanded by the inner bash
	up+=("$(ms bash -c 'tar -C "$1" -cf - node_modules | zstd -q -T0 -3 -o "$2" && "$3" "${@:4}" put base.tar.zst "$2"' bash "$w/base" "$w/tar.zst" "$s3obj" "${obj[@]}")")
	tarbytes=$(stat -c %s "$w/tar.zst")
	mkdir -p "$w/restore"; sync
	if ((i % 2)); then
		# shellcheck disable=SC2016
		restore+=("$(ms bash -c '"$1" "${@:3}" get base.tar.zst | zstd -q -d | tar -C "$2" -xf -' bash "$s3obj" "$w/restore" "${obj[@]}")")
		durable+=($((restore[-1] + $(ms sync -f "$w/restore"))))
		sync
		cold+=("$(ms "$vrift" --json --store "$w/store2" pull base --to "$w/pull" --method hardlink "${rem[@]}")")
		creq=$(jget requests) cbytes=$(jget bytes_fetched)
	else
		cold+=("$(ms "$vrift" --json --store "$w/store2" pull base --to "$w/pull" --method hardlink "${rem[@]}")")
		creq=$(jget requests) cbytes=$(jget bytes_fetched)
		sync
		# shellcheck disable=SC2016
		restore+=("$(ms bash -c '"$1" "${@:3}" get base.tar.zst | zstd -q -d | tar -C "$2" -xf -' bash "$s3obj" "$w/restore" "${obj[@]}")")
		durable+=($((restore[-1] + $(ms sync -f "$w/restore"))))
	fi
	sync
	bumpp+=("$(ms "$vrift" --json --store "$w/store2" pull bumped --to "$w/pullb" --method hardlink "${rem[@]}")")
	bfetched=$(jget bytes_fetched) breq=$(jget requests) bblobs=$(jget blobs_fetched)
	sync
	push+=("$(ms "$vrift" --json --store "$w/store1" push "$w/base" --name base "${rem[@]}")")
	preq=$(jget requests)
	# Round trips of bumped, unsigned then signed (in alternating order),
	# each an unchanged push and a pull into a store holding base only.
	"$vrift" --store "$w/store3" pull base --to "$w/pull3" --method hardlink "${rem[@]}" >/dev/null
	cp -a "$w/store3" "$w/store4"
	sync
	rt_unsigned() {
		local a b
		a=$(ms "$vrift" --json --store "$w/store1" push "$w/bumped" --name bumped "${rem[@]}")
		b=$(ms "$vrift" --json --store "$w/store3" pull bumped --to "$w/pullu" --method hardlink "${rem[@]}")
		echo $((a + b))
	}
	rt_signed() {
		local a b
		a=$(ms "$vrift" --json --store "$w/store1" push "$w/bumped" --name bumped-signed --sign-key "$w/bench.secret" "${rem[@]}")
		b=$(ms "$vrift" --json --store "$w/store4" pull bumped-signed --config "$w/trust.toml" --to "$w/pulls" --method hardlink "${rem[@]}")
		echo $((a + b))
	}
	if ((i % 2)); then
		rtu+=("$(rt_unsigned)"); sync; rts+=("$(rt_signed)")
	else
		rts+=("$(rt_signed)"); sync; rtu+=("$(rt_unsigned)")
	fi
	fresh "$w/store3" "$w/store4" "$w/pull3"
	echo "round $i: tar upload ${up[-1]} ms ($tarbytes bytes, 1 object), restore ${restore[-1]} ms (with its sync ${durable[-1]} ms)," \
		"cold pull ${cold[-1]} ms ($cbytes bytes, $creq requests), bumped pull ${bumpp[-1]} ms ($bblobs blobs, $bfetched bytes, $breq requests)," \
		"unchanged push ${push[-1]} ms ($preq requests), round trip unsigned ${rtu[-1]} ms, signed ${rts[-1]} ms"
done
# Bytes and requests are the same every round (the last round's here).
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f%%", 100*a/b}'; }
judge() { awk -v v="$1" -v t="$2" 'BEGIN{print (v <= t) ? "meets <= " t : "MISSES <= " t}'; }
echo
echo "cold pull: $cbytes bytes = $(pct "$cbytes" "$tarbytes") of the tarball ($tarbytes bytes)" \
	"[$(judge "$(awk -v a="$cbytes" -v b="$tarbytes" 'BEGIN{print a/b}')" 1.2)x], $creq requests [$(judge "$creq" 100)]"
echo "bumped pull: $bfetched bytes = $(pct "$bfetched" "$tarbytes") of the tarball" \
	"[$(judge "$(awk -v a="$bfetched" -v b="$tarbytes" 'BEGIN{print 100*a/b}')" 10)%], $breq requests [$(judge "$breq" 12)]"
echo "cold push: $cpreq requests [$(judge "$cpreq" 100)]; unchanged push: $preq requests [$(judge "$preq" 1)]"

row() {
	awk -v n="$1" -v v="$2" -v bn="$3" -v b="$4" -v t="$5" 'function med(a, k,   i, j, x) {
			for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j+1] = a[j]; a[j+1] = x }
			return (k % 2) ? a[(k+1)/2] : (a[k/2] + a[k/2+1]) / 2 }
		BEGIN {
			k = split(v, va, " "); split(b, ba, " ")
			for (i = 1; i <= k; i++) { r[i] = va[i] / ba[i] }
			mv = med(va, k); mb = med(ba, k); rm = med(r, k)
			verdict = (t == "-") ? "" : (rm <= t ? "meets <= " t : "MISSES <= " t)
			printf "%-15s %7.0f ms  %-15s %7.0f ms  ratio of medians %5.2fx  median ratio %5.2fx  %s\n", n, mv, bn, mb, mv / mb, rm, verdict }'
}
echo
echo "medians over $runs rounds (target judged on the median of per-round ratios):"
row "cold pull" "${cold[*]}" "tarball restore" "${restore[*]}" 1.0
# Not a target: the restore made durable (its syncfs timed right after it),
# since a pull makes every blob durable before its manifest names it.
row "cold pull" "${cold[*]}" "restore + sync" "${durable[*]}" -
row "bumped pull" "${bumpp[*]}" "tarball restore" "${restore[*]}" 0.3
row "unchanged push" "${push[*]}" "tarball upload" "${up[*]}" 0.2
row "signed trip" "${rts[*]}" "unsigned trip" "${rtu[*]}" 1.05
