#!/bin/sh
# Peak RSS (VmHWM) of the built binary, default flags, under each /ingest
# bomb of internal/testkit (one fresh exporter per bomb, then all of them
# at once from 20 clients), sent by an unprivileged user: the table of
# bench/README.md. Needs root (the test creates and removes the user).
set -e
cd "$(dirname "$0")/.."
go test -count=1 -run 'TestAttackIngestBombs' -v ./cmd/probe_exporter/ | { mkdir -p bench/out; tee bench/out/ingest-bombs.log; } |
	sed -n '/bomb table:/,/^---/p' | sed -e '1d' -e '/^---/d' -e 's/^ *//'
