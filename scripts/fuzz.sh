#!/usr/bin/env bash
# fuzz.sh FUZZTIME PKG:FUNC...: each fuzz target for FUZZTIME.
#
# Go 1.26's fuzzing coordinator can fail a target at the -fuzztime
# boundary with a bare "context deadline exceeded" and no failing input
# (go.dev/issue/75804, fixed in Go 1.27): a worker still mid-call when the
# deadline fires. CI met it on its fresh machine (FuzzDecodeParams, 0
# execs/s for its last 7 s while the machine was busy). Such a run is
# retried once; anything else, and the same flake twice, fails. A real
# finding always writes "Failing input written to testdata/fuzz/...".
set -uo pipefail
go=${GO:-go}
fuzztime=$1
shift
for t in "$@"; do
	pkg=${t%%:*} fn=${t##*:}
	for try in 1 2; do
		echo "== $fn (./$pkg, $fuzztime)"
		log=$(mktemp)
		"$go" test -run '^$' -fuzz "^$fn\$" -fuzztime "$fuzztime" "./$pkg" 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		flake=0
		if [ "$rc" -ne 0 ] && grep -q 'context deadline exceeded' "$log" &&
			! grep -qE 'Failing input written|panic:|^\s+\S+_test\.go:[0-9]+:' "$log"; then
			flake=1
		fi
		rm -f "$log"
		[ "$rc" -eq 0 ] && break
		if [ "$flake" -eq 1 ] && [ "$try" -eq 1 ]; then
			echo "== $fn: the fuzzing coordinator's deadline race (go.dev/issue/75804), no failing input; once more"
			continue
		fi
		exit "$rc"
	done
done
