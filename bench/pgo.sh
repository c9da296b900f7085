#!/usr/bin/env bash
# Regenerates cmd/cascade/default.pgo, the CPU profile the Go toolchain uses
# for profile-guided optimization of every build of cmd/cascade (go build,
# go run, go install pick it up by themselves: -pgo=auto).
#
# The profile is of what the binary spends its CPU on when it matters most:
# `cascade load` at full speed, closed model over 50 connections, against
# the shared bench upstream's "hello" mode on 127.0.0.1. With it the
# compiler inlines and devirtualizes the hot path (the HTTP/1.1 client, the
# event loop, the recorder): about 8 % less user CPU per request
# (bench/LOADGEN.md). Rerun it after a change to the hot path; a stale
# profile only optimizes less, it never changes behaviour.
#
#   PGO_DUR=30 (seconds of load) PGO_PORT=18096
#
# Every target is 127.0.0.1; the run is bounded; only the upstream this
# script started is stopped (by PID).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SHARED="${BENCH_SHARED:-$(cd "$REPO/.." && pwd)/shared/bench}"
DUR="${PGO_DUR:-30}" PORT="${PGO_PORT:-18096}"
TMP="$(mktemp -d)"
UP=

cleanup() {
	if [ -n "$UP" ]; then kill "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

[ -d "$SHARED/servers/upstream" ] || { echo "pgo: $SHARED/servers/upstream not found (set BENCH_SHARED)" >&2; exit 1; }
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then echo "pgo: port $PORT is in use (set PGO_PORT)" >&2; exit 1; fi

(cd "$REPO" && go build -o "$TMP/cascade" ./cmd/cascade)
(cd "$SHARED" && GOFLAGS=-buildvcs=false go build -o "$TMP/upstream" ./servers/upstream)

"$TMP/upstream" -addr "127.0.0.1:$PORT" -mode hello > "$TMP/upstream.log" 2>&1 &
UP=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

"$TMP/cascade" load "http://127.0.0.1:$PORT/" --conns 50 --duration "${DUR}s" --progress plain \
	--bench-result --cpuprofile "$TMP/load.pprof" --out "$TMP/run" 2> "$TMP/load.log" | grep BENCH_RESULT
cp "$TMP/load.pprof" "$REPO/cmd/cascade/default.pgo"
echo "pgo: wrote cmd/cascade/default.pgo ($(wc -c < "$REPO/cmd/cascade/default.pgo") bytes)"
