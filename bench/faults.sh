#!/usr/bin/env bash
# bench/faults.sh - fault precision: an injected 100 ms latency, measured from the client, cascade
# beside Toxiproxy in one run.
#
# 1. The shared peer benchmark's section C (../shared/bench/peers.sh) with our fault proxy as
#    OURS_FAULT_CMD: `cascade faultproxy --listen {LISTEN} --upstream {UPSTREAM} --latency {LATENCY_MS}ms`.
#    peers.sh runs Toxiproxy at 50 and 500 req/s but ours only at 50 req/s, so:
# 2. the same comparison at both rates, in this script, with the repetitions interleaved:
#    direct; Toxiproxy's latency toxic (latency=100, jitter=0, downstream); cascade's TCP fault
#    proxy (`cascade faultproxy --latency 100ms`, the same toxic); and cascade's HTTP-layer delay
#    (`cascade upstream --latency 100ms`, the fake upstream's own wait). vegeta, open loop, DUR s
#    per case; percentiles by nearest rank over every request.
#
# Prints, per rate, each path's min/p50/p99 and its error against the asked delay (p - 100 ms; it
# includes the loopback path, shown in the direct row); beside it, p50 and p99 over direct (the
# path's percentile - the direct path's same percentile in the same repetition, median over the
# repetitions), which is roughly 100 ms + what the fault itself adds; and cascade's own count of how
# late each of its releases was (printed by each cascade process on stop: one process per rate).
# The issue's target: p99 error <= 0.5 ms at 50 and 500 req/s, never below the asked delay
# (min >= 100 ms).
#
# Everything listens on 127.0.0.1, every load run is bounded (DUR seconds), and only processes this
# script started are stopped (by PID). Knobs (environment):
#   REPS=3 DUR=10 LATENCY_MS=100 RATES="50 500"
#   PEERS=../shared/bench/peers.sh   SECTION_C=1 (0 skips part 1)
#   BENCH_TOOLS, BENCH_WORK, BENCH_OUT   as peers.sh (tools from ../shared/bench/install-peers.sh)
#   FP_UP_PORT=18680 FP_TOXI_API_PORT=18681 FP_TOXI_PORT=18682 FP_OURS_PORT=18683 FP_HTTP_PORT=18684
#   HOGS=0     N > 0 runs N busy loops at nice 19 during part 2, so the CPUs never go idle: on a VM,
#              waking a halted virtual CPU takes the host up to milliseconds, for every process (the
#              direct path too); with hogs, what is left is the software's own lateness. Label the
#              run as such; it is not how the machine normally is.
#   WIRE_ROUNDS=1   as root: after each rate's repetitions, this many more rounds per path with
#              bench/hopcap capturing loopback, so the delay is also measured on the wire: from the
#              packet that the delay holds back arriving to the one it releases leaving (out-hop for
#              the TCP proxies, whose toxic delays the answer; request in to answer out for the HTTP
#              delay, beside the same server with no delay). That is the fault's own precision with
#              neither the client's nor the other hops' wake-ups in it. 0 skips it.
#   FP_HTTP0_PORT=18685   the no-delay `cascade upstream` for that baseline
#   PORT_BASE   moves peers.sh's ports (UP_PORT..OURS_FAULT_PORT, TOXI_API_PORT) when another run holds them
#   SUMMARY_ONLY=<results dir>   only print the summary of an earlier run's precision.tsv (and lateness.tsv)
set -uo pipefail
if [ -n "${PORT_BASE:-}" ]; then
  export UP_PORT=$PORT_BASE NGINX_PORT=$((PORT_BASE + 1)) HAPROXY_PORT=$((PORT_BASE + 2)) GORP_PORT=$((PORT_BASE + 3)) \
    GORP2_PORT=$((PORT_BASE + 4)) TOXI_PORT=$((PORT_BASE + 5)) OURS_PROXY_PORT=$((PORT_BASE + 6)) \
    OURS_FAULT_PORT=$((PORT_BASE + 7)) TOXI_API_PORT=$((PORT_BASE + 8))
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PEERS="${PEERS:-$REPO/../shared/bench/peers.sh}"
[ -x "$PEERS" ] || PEERS="/work/shared/bench/peers.sh"
PEERS_DIR="$(cd "$(dirname "$PEERS")" && pwd)"
WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/cascade-faults-bench}"
export BENCH_TOOLS="${BENCH_TOOLS:-${TMPDIR:-/tmp}/bench-peers/bin}"
export PATH="$BENCH_TOOLS:$PATH"
OUT="${BENCH_OUT:-$WORK/results-$(date +%Y%m%d-%H%M%S)}"
REPS="${REPS:-3}" DUR="${DUR:-10}" LATENCY_MS="${LATENCY_MS:-100}" RATES="${RATES:-50 500}" SECTION_C="${SECTION_C:-1}"
FP_UP_PORT="${FP_UP_PORT:-18680}" FP_TOXI_API_PORT="${FP_TOXI_API_PORT:-18681}" FP_TOXI_PORT="${FP_TOXI_PORT:-18682}"
FP_OURS_PORT="${FP_OURS_PORT:-18683}" FP_HTTP_PORT="${FP_HTTP_PORT:-18684}"
HOGS="${HOGS:-0}" WIRE_ROUNDS="${WIRE_ROUNDS:-1}" FP_HTTP0_PORT="${FP_HTTP0_PORT:-18685}"
H=127.0.0.1
. "$(dirname "${BASH_SOURCE[0]}")/host.sh"

# summary: the tables, from $OUT/precision.tsv and $OUT/lateness.tsv alone (SUMMARY_ONLY=<dir> re-runs it).
summary() {
echo "# cascade fault precision ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load at start: ${LOAD_AT_START:-?}, at end: $(cat /proc/loadavg))"
echo
echo "Injected ${LATENCY_MS} ms; vegeta open loop, ${DUR}s per case, medians over ${REPS} interleaved repetitions."
echo "error = measured - ${LATENCY_MS} ms (includes the loopback path: see direct). over direct = the path's percentile"
echo "- direct's same percentile in the same repetition, median over the repetitions: ${LATENCY_MS} ms + what the fault"
echo "path adds beyond the loopback (a proxy hop included). own lateness = cascade's own count of how late past the"
echo "asked delay its releases were, over the rate's repetitions (and its wire rounds, if any). The machine is shared."
[ -n "${HOST_MARK:-}" ] && host_line "$HOST_MARK"
[ "${HOGS:-0}" -gt 0 ] 2>/dev/null && echo "HOGS=${HOGS}: ${HOGS} busy loops at nice 19 kept the CPUs from going idle during these measurements."
for rate in $RATES; do
  echo
  echo "## ${rate} req/s"
  echo "| path | requests | errors | min | p50 | p99 | max | min error | p50 error | p99 error | p50 over direct | p99 over direct | own lateness ≤ 0.5 ms | own max late |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' -v rate="$rate" -v L="$LATENCY_MS" '
    FNR == 1 { f++; next }
    f == 1 && $1 == rate { W[$2] = $3; M[$2] = $4; next }
    f == 1 || $1 != rate || $6 == "-" { next }
    { k = $2; if (!(k in seen)) { seen[k] = 1; order[++no] = k }
      c[k]++; N[k, c[k]] = $4; E[k, c[k]] = $5; MN[k, c[k]] = $6; P50[k, c[k]] = $7; P99[k, c[k]] = $9; MX[k, c[k]] = $11; R[k, c[k]] = $3 }
    function med(A, k,   n, j, l, t, a) { n = c[k]; for (j = 1; j <= n; j++) a[j] = A[k, j] + 0; return mid(a, n) }
    function mid(a, n,   j, l, t) { if (n == 0) return "";
      for (j = 2; j <= n; j++) { t = a[j]; for (l = j - 1; l >= 1 && a[l] > t; l--) a[l + 1] = a[l]; a[l + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    # over(A, k): median over repetitions of (k - direct) in the same repetition
    function over(A, k,   j, i, n, d) { n = 0
      for (j = 1; j <= c[k]; j++) for (i = 1; i <= c["direct"]; i++) if (R["direct", i] == R[k, j]) d[++n] = A[k, j] - A["direct", i]
      return n ? sprintf("%.3f", mid(d, n)) : "–" }
    END { for (o = 1; o <= no; o++) { k = order[o]; inj = (k == "direct") ? 0 : L
        printf "| %s | %d | %d | %.3f | %.3f | %.3f | %.3f | %s | %s | %s | %s | %s | %s | %s |\n", k, med(N, k), med(E, k), med(MN, k), med(P50, k), med(P99, k), med(MX, k),
          (inj ? sprintf("%+.3f", med(MN, k) - inj) : "–"), (inj ? sprintf("%+.3f", med(P50, k) - inj) : "–"), (inj ? sprintf("%+.3f", med(P99, k) - inj) : "–"),
          (inj ? over(P50, k) : "–"), (inj ? over(P99, k) : "–"),
          ((k in W) && W[k] != "-" ? W[k] "%" : "–"), ((k in M) && M[k] != "-" ? sprintf("%.3f", M[k]) : "–") } }' "$OUT/lateness.tsv" "$OUT/precision.tsv"
done
if [ -s "$OUT/wire.tsv" ]; then
  echo
  echo "## On the wire (bench/hopcap, ${WIRE_ROUNDS} round(s) of ${DUR}s per path and rate; ms)"
  echo
  echo "The delayed stretch between two packets: for the TCP proxies the upstream's answer arriving to the proxy's"
  echo "answer leaving (out-hop); for the HTTP delay the request arriving to the answer leaving (total), beside the same"
  echo "server without the delay (cascade-http-0) and the peers' upstream (direct). error = that - ${LATENCY_MS} ms; for"
  echo "the HTTP delay, over no-delay = its percentile - ${LATENCY_MS} ms - cascade-http-0's same percentile."
  echo
  echo "| rate | path | stretch | n | p50 | p90 | p99 | p99.9 | p50 error | p99 error | p50 / p99 over no-delay |"
  echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' -v L="$LATENCY_MS" 'NR == 1 { next }
    { key = ($2 == "toxiproxy" || $2 == "cascade-tcp") ? "out-hop" : "total"; if ($3 != key || $5 == "-") next
      d = ($2 == "toxiproxy" || $2 == "cascade-tcp" || $2 == "cascade-http")
      if ($2 == "cascade-http-0") { b50[$1] = $5; b99[$1] = $7 }
      nd = ($2 == "cascade-http" && ($1 in b50)) ? sprintf("%+.3f / %+.3f", ($5 - b50[$1])/1e3 - L, ($7 - b99[$1])/1e3 - L) : "–"
      printf "| %s | %s | %s | %d | %.3f | %.3f | %.3f | %.3f | %s | %s | %s |\n", $1, $2, $3, $4, $5/1e3, $6/1e3, $7/1e3, $8/1e3,
        d ? sprintf("%+.3f", $5/1e3 - L) : "–", d ? sprintf("%+.3f", $7/1e3 - L) : "–", nd }' "$OUT/wire.tsv"
fi
if [ -s "$OUT/peers/summary.md" ]; then
  echo
  echo "## peers.sh section C (ours = cascade faultproxy, at 50 req/s only)"
  sed -n '/^## C\./,$p' "$OUT/peers/summary.md" | tail -n +2
fi
}
if [ -n "${SUMMARY_ONLY:-}" ]; then
  OUT=$SUMMARY_ONLY
  [ -s "$OUT/lateness.tsv" ] || printf 'rate\tpath\twithin_500us_pct\tmax_late_ms\n' > "$OUT/lateness.tsv"  # a run from before it existed
  summary
  exit 0
fi

mkdir -p "$OUT/raw" "$OUT/logs" "$WORK/bin"
LOAD_AT_START=$(cat /proc/loadavg)
HOST_MARK=$(host_mark)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
for t in vegeta toxiproxy-server toxiproxy-cli; do
  have "$t" || { log "ERROR: $t not found: run $PEERS_DIR/install-peers.sh"; exit 1; }
done

declare -A PID
start_bg() {  # start_bg <name> <cmd...>
  local name=$1; shift
  "$@" > "$OUT/logs/$name.log" 2>&1 &
  PID[$name]=$!
}
stop_bg() {
  local p=${PID[$1]:-}
  [ -z "$p" ] && return 0
  kill "$p" 2>/dev/null; wait "$p" 2>/dev/null
  unset "PID[$1]"
}
cleanup() { local n; for n in "${!PID[@]}"; do stop_bg "$n"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
port_free() { ! (exec 3<>"/dev/tcp/$H/$1") 2>/dev/null; }
wait_port() {
  local i; for i in $(seq 1 100); do (exec 3<>"/dev/tcp/$H/$1") 2>/dev/null && return 0; sleep 0.1; done
  log "ERROR: $2 did not open port $1 (see $OUT/logs/$2.log)"; exit 1
}

log "building cascade and the peers' upstream into $WORK/bin"
(cd "$REPO" && go build -o "$WORK/bin/cascade" ./cmd/cascade) || { log "ERROR: go build failed"; exit 1; }
(cd "$PEERS_DIR" && GOFLAGS=-buildvcs=false go build -o "$WORK/bin/upstream" ./servers/upstream) || { log "ERROR: building the upstream failed"; exit 1; }
BIN="$WORK/bin/cascade"

# ------------------------------------------------------------------ 1. peers.sh section C
if [ "$SECTION_C" = 1 ]; then
  log "== 1. peers.sh section C, ours as OURS_FAULT_CMD (REPS=$REPS, DUR=$DUR)"
  OURS_FAULT_CMD="$BIN faultproxy --listen {LISTEN} --upstream {UPSTREAM} --latency {LATENCY_MS}ms" \
    SECTIONS="C" REPS="$REPS" DUR="$DUR" TOXI_LATENCY_MS="$LATENCY_MS" BENCH_WORK="$WORK/peers" BENCH_OUT="$OUT/peers" \
    "$PEERS" > "$OUT/peers.log" 2>&1
  [ -s "$OUT/peers/summary.md" ] || { log "ERROR: peers.sh produced no summary (see $OUT/peers.log)"; tail -20 "$OUT/peers.log" >&2; exit 1; }
fi

# ------------------------------------------------------------------ 2. both rates, same run
log "== 2. direct, Toxiproxy, cascade TCP and HTTP layers at ${RATES} req/s (REPS=$REPS, DUR=$DUR)"
for p in "$FP_UP_PORT" "$FP_TOXI_API_PORT" "$FP_TOXI_PORT" "$FP_OURS_PORT" "$FP_HTTP_PORT" "$FP_HTTP0_PORT"; do
  port_free "$p" || { log "ERROR: port $p is in use (set FP_*_PORT)"; exit 1; }
done
start_bg up "$WORK/bin/upstream" -addr "$H:$FP_UP_PORT" -mode hello
wait_port "$FP_UP_PORT" up
start_bg toxiproxy env LOG_LEVEL=warn toxiproxy-server -host "$H" -port "$FP_TOXI_API_PORT"
wait_port "$FP_TOXI_API_PORT" toxiproxy
toxiproxy-cli -h "$H:$FP_TOXI_API_PORT" create -l "$H:$FP_TOXI_PORT" -u "$H:$FP_UP_PORT" fp_up > /dev/null
toxiproxy-cli -h "$H:$FP_TOXI_API_PORT" toxic add -t latency -a latency="$LATENCY_MS" -a jitter=0 -n lat fp_up > /dev/null
wait_port "$FP_TOXI_PORT" toxiproxy-listener
# cascade's two processes are restarted per rate, so the lateness each prints on stop is that rate's.
start_ours() {  # start_ours <rate>
  start_bg "ours-$1" "$BIN" faultproxy --listen "$H:$FP_OURS_PORT" --upstream "http://$H:$FP_UP_PORT" --latency "${LATENCY_MS}ms"
  wait_port "$FP_OURS_PORT" "ours-$1"
  start_bg "http-$1" "$BIN" upstream --listen "$H:$FP_HTTP_PORT" --latency "${LATENCY_MS}ms"
  wait_port "$FP_HTTP_PORT" "http-$1"
}
LATENESS="$OUT/lateness.tsv"
printf 'rate\tpath\twithin_500us_pct\tmax_late_ms\n' > "$LATENESS"
stop_ours() {  # stop_ours <rate>: SIGTERM (each prints its counts), then read them from its log
  local rate=$1 w m
  stop_bg "ours-$rate"; stop_bg "http-$rate"
  # "  latency_downstream: acted on ...; max lateness 612.3µs, 99.8% of timed releases within 500µs"
  read -r w m < <(sed -n 's/.*max lateness \([^,]*\), \([0-9.]*\)% of timed releases within 500µs.*/\2 \1/p' "$OUT/logs/ours-$rate.log" | head -1)
  printf '%s\tcascade-tcp\t%s\t%s\n' "$rate" "${w:--}" "$(dur_ms "${m:-}")" >> "$LATENESS"
  # "cascade upstream: latency: 99.8% of 5000 within 0.5 ms of the asked delay, max 0.81 ms late"
  read -r w m < <(sed -n 's/.*latency: \([0-9.]*\)% of [0-9]* within 0.5 ms of the asked delay, max \([0-9.]*\) ms late.*/\1 \2/p' "$OUT/logs/http-$rate.log" | head -1)
  printf '%s\tcascade-http\t%s\t%s\n' "$rate" "${w:--}" "${m:--}" >> "$LATENESS"
}
dur_ms() {  # a Go duration (612.3µs, 1.2ms, 0s) in ms, "-" if empty
  awk -v d="$1" 'BEGIN { if (d == "") { print "-"; exit }
    u = d; sub(/^[0-9.]+/, "", u); v = d + 0
    f = (u == "ns") ? 1e-6 : (u == "µs" || u == "us") ? 1e-3 : (u == "ms") ? 1 : (u == "s") ? 1e3 : -1
    if (f < 0) print "-"; else printf "%.3f\n", v * f }'
}

RESULTS="$OUT/precision.tsv"
printf 'rate\tpath\trep\tn\terrors\tmin\tp50\tp90\tp99\tp999\tmax\n' > "$RESULTS"
measure() {  # measure <rate> <path> <rep> <url>
  local rate=$1 path=$2 rep=$3 url=$4 raw="$OUT/raw/$2-$1-r$3"
  echo "GET $url" > "$raw.targets"
  timeout -k 5 $((DUR + 30)) vegeta attack -targets="$raw.targets" -rate="$rate/s" -duration="${DUR}s" -output="$raw.bin" 2> "$raw.err"
  local errors
  errors=$(vegeta encode --to=csv "$raw.bin" | awk -F, '$2 != 200 { e++ } END { print e + 0 }')
  vegeta encode --to=csv "$raw.bin" | awk -F, '$2 == 200 { printf "%.6f\n", $3 / 1e6 }' | sort -g |
    awk -v rate="$rate" -v path="$path" -v rep="$rep" -v e="$errors" '
    { v[++n] = $1 }
    END {
      if (n == 0) { printf "%s\t%s\t%s\t0\t%d\t-\t-\t-\t-\t-\t-\n", rate, path, rep, e; exit }
      split("50 90 99 99.9", P, " ")
      printf "%s\t%s\t%s\t%d\t%d\t%.3f", rate, path, rep, n, e, v[1]
      for (i = 1; i <= 4; i++) { k = int(P[i] / 100 * n + 0.999999); if (k < 1) k = 1; if (k > n) k = n; printf "\t%.3f", v[k] }
      printf "\t%.3f\n", v[n]
    }' | tee -a "$RESULTS" >&2
}
# wire <rate>: WIRE_ROUNDS rounds per path with bench/hopcap splitting each request on the wire.
WIRE=0
if [ "$WIRE_ROUNDS" -gt 0 ]; then
  if (cd "$REPO" && go build -o "$WORK/bin/hopcap" ./bench/hopcap) && "$WORK/bin/hopcap" -front 1 -dur 1ms > /dev/null 2>&1; then
    WIRE=1
    printf 'rate\tpath\thop\tn\tp50_us\tp90_us\tp99_us\tp999_us\n' > "$OUT/wire.tsv"
    start_bg http0 "$BIN" upstream --listen "$H:$FP_HTTP0_PORT"
    wait_port "$FP_HTTP0_PORT" http0
  else
    log "skip the wire rounds: bench/hopcap needs Linux and CAP_NET_RAW (root)"
  fi
fi
wire() {
  local rate=$1 r path port up raw cap
  for r in $(seq 1 "$WIRE_ROUNDS"); do
    for path in direct toxiproxy cascade-tcp cascade-http-0 cascade-http; do
      case $path in
        direct) port=$FP_UP_PORT up=0 ;;        toxiproxy) port=$FP_TOXI_PORT up=$FP_UP_PORT ;;
        cascade-tcp) port=$FP_OURS_PORT up=$FP_UP_PORT ;; cascade-http-0) port=$FP_HTTP0_PORT up=0 ;;
        cascade-http) port=$FP_HTTP_PORT up=0 ;;
      esac
      raw="$OUT/raw/wire-$path-$rate-r$r"
      seq 1 $((rate * DUR + rate)) | awk -v u="http://$H:$port/?w$rate-$r-" '{ print "GET " u $1 }' > "$raw.targets"
      "$WORK/bin/hopcap" -front "$port" -up "$up" -dur "$((DUR + 1))s" > "$raw.hops" 2> "$raw.hoperr" & cap=$!
      PID[hopcap]=$cap   # so an interrupt stops it too
      sleep 0.3
      timeout -k 5 $((DUR + 30)) vegeta attack -targets="$raw.targets" -rate="$rate/s" -duration="${DUR}s" -output="$raw.bin" 2> "$raw.err"
      wait "$cap"; unset 'PID[hopcap]'
      sed "s/^/$rate\t$path\t/" "$raw.hops" | tee -a "$OUT/wire.tsv" >&2
    done
  done
}
for i in $(seq 1 "$HOGS"); do
  start_bg "hog-$i" nice -n 19 sh -c 'while :; do :; done'
done
for rate in $RATES; do
  start_ours "$rate"
  for rep in $(seq 1 "$REPS"); do
    measure "$rate" direct "$rep" "http://$H:$FP_UP_PORT/"
    measure "$rate" toxiproxy "$rep" "http://$H:$FP_TOXI_PORT/"
    measure "$rate" cascade-tcp "$rep" "http://$H:$FP_OURS_PORT/"
    measure "$rate" cascade-http "$rep" "http://$H:$FP_HTTP_PORT/"
  done
  [ "$WIRE" = 1 ] && wire "$rate"
  stop_ours "$rate"
done
for i in $(seq 1 "$HOGS"); do stop_bg "hog-$i"; done
cleanup

# ------------------------------------------------------------------ summary
summary > "$OUT/summary.md"
cat "$OUT/summary.md"
log "results in $OUT (summary.md, precision.tsv, raw/)"
