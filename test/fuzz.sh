#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a fixed number of inputs
# (FUZZTIME, 2000x by default: a count, not a duration, so a slow machine
# does not cut a target short). Each parser of bytes another user controls
# has one, seeded with the inputs that once crashed it. A failure leaves the input under the
# package's testdata/fuzz, where `go test` then replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-2000x}
# FUZZPARALLEL bounds the fuzzing workers (default: one per CPU); CI runs
# the targets with one, beside the kernel matrix's single-threaded guests.
parallel=${FUZZPARALLEL:+-parallel=$FUZZPARALLEL}
status=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	ls "$dir"/*_test.go >/dev/null 2>&1 || continue
	grep -q '^func Fuzz' "$dir"/*_test.go || continue
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
		echo "fuzz $pkg $target ($fuzztime)"
		if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" $parallel "$pkg" >/tmp/fuzz.$$.log 2>&1; then
			cat /tmp/fuzz.$$.log
			status=1
		fi
	done
done
rm -f /tmp/fuzz.$$.log
exit $status
