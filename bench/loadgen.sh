#!/usr/bin/env bash
# bench/loadgen.sh - cascade's load generator beside its peers (wrk, Vegeta, hey, Fortio, k6), in one
# run on this machine, with ratios against the best peer of that same run.
#
#   peers     ../shared/bench/peers.sh sections A (max throughput, 50 connections) and D (coordinated
#             omission: 1 s global pause every 5 s at 200 req/s) with OURS_LOADGEN_CMD = cascade load
#   accuracy  open model at 5 000 req/s for 20 s: achieved rate vs target, scheduling lag
#   memory    bytes per in-flight request at 10 000 in flight (stalled upstream), and RSS after
#             MEM_LONG s vs after 60 s of a steady load
#   duel      max throughput against wrk alone, in many short paired rounds (order alternating),
#             keeping only rounds the host left quiet: the ratio's spread, not just one median
#             (not in the default PARTS: about DUEL_ROUNDS x 2 x DUEL_DUR s, longer on a busy host)
#
# Knobs (environment): PARTS="peers accuracy memory"  REPS=3  DUR=10  CO_DUR=15  CONNS=50
#   ACC_RATE=5000 ACC_DUR=20  MEM_INFLIGHT=10000  MEM_LONG=600 MEM_RATE=2000  GEN_CPUS/SRV_CPUS (taskset)
#   BENCH_SHARED (default ../shared/bench next to the repo)  SKIP_INSTALL=1 (peers already installed)
#   PEER_SECTIONS="A D" (peers.sh sections; "A" with GEN_CPUS=1 SRV_CPUS=0 is the pinned throughput view)
#   ACC_PORT=18093 MEM_PORT=18094 (our own upstreams; peers.sh uses 18080-18090)
#   LOAD_FLAGS (more flags for cascade load in the peers and duel parts, e.g. "--threads 2" to match wrk -t2)
#   DUEL_ROUNDS=12 DUEL_DUR=6 DUEL_MAX_STEAL=3 (% of CPU time a kept run may have lost to the host)
#   DUEL_TRIES=40 (rounds run at most) DUEL_PORT=18095 WRK_THREADS=2 (also loadfloor's -t)
#   DUEL_FLOOR=1 (add bench/loadfloor, the least a generator can do, as a third contestant)
#   DUEL_SELF=1 (add wrk a second time: the A/A control, how far the ratio strays when nothing differs)
# Every target is 127.0.0.1; every run is bounded; only processes this script started are stopped (by PID).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SHARED="${BENCH_SHARED:-$(cd "$REPO/.." && pwd)/shared/bench}"
WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/bench-peers}"
OUT="${BENCH_OUT:-$WORK/cascade-$(date +%Y%m%d-%H%M%S)}"
PARTS="${PARTS:-peers accuracy memory}"
ACC_RATE="${ACC_RATE:-5000}" ACC_DUR="${ACC_DUR:-20}" ACC_PORT="${ACC_PORT:-18093}"
MEM_INFLIGHT="${MEM_INFLIGHT:-10000}" MEM_LONG="${MEM_LONG:-600}" MEM_RATE="${MEM_RATE:-2000}" MEM_PORT="${MEM_PORT:-18094}"
mkdir -p "$OUT/runs" "$OUT/logs"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
pin() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }

[ -x "$SHARED/peers.sh" ] || { log "ERROR: $SHARED/peers.sh not found (set BENCH_SHARED)"; exit 1; }
BIN="$OUT/cascade"
log "building cascade into $BIN"
(cd "$REPO" && go build -o "$BIN" ./cmd/cascade) || { log "ERROR: go build failed"; exit 1; }
(cd "$SHARED" && GOFLAGS=-buildvcs=false go build -o "$OUT/" ./servers/upstream) || { log "ERROR: building the upstream failed"; exit 1; }
UPSTREAM="$OUT/upstream"

declare -A PID
start_bg() {  # no shell function in the background job: $! must be the server itself, so kill reaches it
  local name=$1; shift
  if [ -n "${SRV_CPUS:-}" ]; then taskset -c "$SRV_CPUS" "$@" > "$OUT/logs/$name.log" 2>&1 &
  else "$@" > "$OUT/logs/$name.log" 2>&1 &
  fi
  PID[$name]=$!
}
stop_bg() { local p=${PID[$1]:-}; [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; PID[$1]=; }
cleanup() { for n in "${!PID[@]}"; do stop_bg "$n"; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; log "ERROR: port $1 did not open"; return 1; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || { log "ERROR: port $1 is in use"; exit 1; }; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ------------------------------------------------------------------ peers (A, D)
peers() {
  [ "${SKIP_INSTALL:-0}" = 1 ] || "$SHARED/install-peers.sh" > "$OUT/logs/install.log" 2>&1 || log "install-peers.sh reported problems (see logs/install.log)"
  # RATE=0: closed loop at maximum rate over CONNS connections (wrk -c); otherwise the open model
  # at RATE with at most CONNS connections.
  export OURS_LOADGEN_CMD="r={RATE}; if [ \"\$r\" = 0 ]; then m='--conns {CONNS}'; else m=\"--rate \$r/s --conns {CONNS}\"; fi; \
exec $BIN load {URL} --duration {DUR}s \$m ${LOAD_FLAGS:-} --bench-result --progress plain --out $OUT/runs/r\$r-\$(date +%s%N)"
  BENCH_OUT="$OUT/peers" SECTIONS="${PEER_SECTIONS:-A D}" "$SHARED/peers.sh" > "$OUT/logs/peers.log" 2>&1
  local med="$OUT/peers/medians.tsv"
  [ -s "$med" ] || { log "ERROR: peers.sh produced no medians (see logs/peers.log)"; return 1; }
  {
    echo "## A. Max throughput, ${DUR:-10} s, ${CONNS:-50} connections, hello upstream (medians of ${REPS:-3})"
    echo
    echo "| tool | req/s | vs best peer | gen CPU% | gen CPU µs/req | vs best peer | p50 | p99 |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '$1=="A"{rps[$2]=$4; cpu[$2]=$12; p50[$2]=$6; p99[$2]=$8; us[$2]=($4>0?$12*1e4/$4:0); order[++n]=$2
        if($2!="ours"){ if($4>best) best=$4; if(bestus==""||us[$2]<bestus) bestus=us[$2] } }
      END{ for(i=1;i<=n;i++){t=order[i]; printf "| %s | %.0f | %.2f× | %s | %.1f | %.2f× | %s | %s |\n", t, rps[t], rps[t]/best, cpu[t], us[t], us[t]/bestus, p50[t], p99[t]} }' "$med"
    echo
    echo "## D. Coordinated omission: 1 s pause every 5 s, 200 req/s (ideal p90 500, p99 950, p99.9 995 ms)"
    echo
    echo "| tool | req/s | p50 | p90 | p99 | p99.9 | max | p90 err | p99 err | p99.9 err |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '$1=="D"{printf "| %s | %.1f | %s | %s | %s | %s | %s | %+.1f%% | %+.1f%% | %s |\n", $2, $4, $6, $7, $8, $9, $10,
        ($7-500)/5, ($8-950)/9.5, ($9=="-"?"-":sprintf("%+.1f%%", ($9-995)/9.95))}' "$med"
    local last; last=$(ls -d "$OUT"/runs/r200-* 2>/dev/null | tail -1)
    if [ -n "$last" ] && [ -s "$last/summary.json" ]; then
      echo
      echo "ours, last D run, same requests two ways (summary.json):"
      jq -r '.run.stats | "  from intended send (corrected):  p50 \(.latency_ms.p50)  p90 \(.latency_ms.p90)  p99 \(.latency_ms.p99)  p99.9 \(.latency_ms["p99.9"]) ms",
        "  from actual send (uncorrected):   p50 \(.service_ms.p50)  p90 \(.service_ms.p90)  p99 \(.service_ms.p99)  p99.9 \(.service_ms["p99.9"]) ms"' "$last/summary.json"
    fi
    echo
    echo "Machine and versions ($OUT/peers/machine.txt):"
    sed 's/^/  /' "$OUT/peers/machine.txt"
  } | tee "$OUT/peers.md"
}

# ------------------------------------------------------------------ accuracy
accuracy() {
  port_free "$ACC_PORT"
  start_bg acc "$UPSTREAM" -addr "127.0.0.1:$ACC_PORT" -mode hello
  wait_port "$ACC_PORT" || return 1
  local dir="$OUT/runs/accuracy"
  pin "${GEN_CPUS:-}" "$BIN" load "http://127.0.0.1:$ACC_PORT/" --rate "$ACC_RATE/s" --duration "${ACC_DUR}s" --timeout 5s \
    --progress plain --out "$dir" > "$OUT/logs/accuracy.txt" 2>&1
  stop_bg acc
  {
    echo "## Open-model accuracy: $ACC_RATE req/s for $ACC_DUR s (target: achieved within ±0.5 %, lag p99 < 1 ms)"
    echo
    jq -r --argjson rate "$ACC_RATE" '.run.stats |
      "| scheduled | sent | dropped | target/s | achieved/s | achieved vs target | lag p50 | lag p99 | lag p99.9 | lag max |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      "| \(.scheduled) | \(.sent) | \(.causes.dropped // 0) | \(.target_rate) | \(.achieved_rate) | \((.achieved_rate/$rate*100-100)*1000|round/1000)% | \(.lag_ms.p50) ms | \(.lag_ms.p99) ms | \(.lag_ms["p99.9"]) ms | \(.lag_ms.max) ms |"' "$dir/summary.json"
  } | tee "$OUT/accuracy.md"
}

# ------------------------------------------------------------------ memory
memory() {
  port_free "$MEM_PORT"
  local secs=$(( MEM_INFLIGHT / 2000 )) rate=2000 dir rss_hold rss_base
  [ "$secs" -lt 1 ] && secs=1
  # 1. In flight: the upstream holds every request for 30 s; the load sends MEM_INFLIGHT in $secs s.
  start_bg stall "$UPSTREAM" -addr "127.0.0.1:$MEM_PORT" -mode stall -stall-every 1h -stall-for 30s
  wait_port "$MEM_PORT" || return 1
  dir="$OUT/runs/mem-inflight"
  "$BIN" load "http://127.0.0.1:$MEM_PORT/" --rate "$rate/s" --duration "${secs}s" --timeout 60s \
    --max-in-flight $((MEM_INFLIGHT + 1000)) --progress plain --out "$dir" > "$OUT/logs/mem-inflight.txt" 2>&1 &
  local gen=$!
  sleep $((secs + 2)); rss_hold=$(rss_kb $gen)
  local held; held=$(grep -o 'in flight [0-9]*' "$OUT/logs/mem-inflight.txt" | tail -1 | awk '{print $3}')
  wait $gen; stop_bg stall
  # 2. The same load against an upstream that answers at once: nothing in flight.
  start_bg hello "$UPSTREAM" -addr "127.0.0.1:$MEM_PORT" -mode hello
  wait_port "$MEM_PORT" || return 1
  "$BIN" load "http://127.0.0.1:$MEM_PORT/" --rate "$rate/s" --duration "$((secs + 4))s" --timeout 60s \
    --max-in-flight $((MEM_INFLIGHT + 1000)) --progress plain --out "$OUT/runs/mem-base" > "$OUT/logs/mem-base.txt" 2>&1 &
  gen=$!
  sleep $((secs + 2)); rss_base=$(rss_kb $gen)
  wait $gen
  # 3. Run length: RSS after 60 s and after MEM_LONG s of a steady load.
  "$BIN" load "http://127.0.0.1:$MEM_PORT/" --rate "$MEM_RATE/s" --duration "$((MEM_LONG + 5))s" --timeout 5s \
    --progress plain --out "$OUT/runs/mem-long" > "$OUT/logs/mem-long.txt" 2>&1 &
  gen=$!
  local r60 rlong
  sleep 60; r60=$(rss_kb $gen)
  sleep $((MEM_LONG - 60)); rlong=$(rss_kb $gen)
  wait $gen; stop_bg hello
  {
    echo "## Memory"
    echo
    echo "| measure | value |"
    echo "|---|---:|"
    echo "| RSS with ${held:-?} requests in flight (stalled upstream) | $((rss_hold / 1024)) MiB |"
    echo "| RSS, same load, nothing in flight | $((rss_base / 1024)) MiB |"
    awk -v a="$rss_hold" -v b="$rss_base" -v n="${held:-$MEM_INFLIGHT}" 'BEGIN{printf "| bytes per in-flight request | %.0f |\n", (a-b)*1024/n}'
    echo "| RSS after 60 s at $MEM_RATE req/s | $((r60 / 1024)) MiB |"
    echo "| RSS after $MEM_LONG s at $MEM_RATE req/s | $((rlong / 1024)) MiB |"
    awk -v a="$r60" -v b="$rlong" 'BEGIN{printf "| growth from 60 s to the end | %+.1f%% |\n", (b-a)*100/a}'
  } | tee "$OUT/memory.md"
}

# ------------------------------------------------------------------ duel
# On this kind of machine one 10 s run lands in a fast or a slow mode (per-second rates of 33-62k
# against the same upstream, for wrk as for us) and the host's steal moves both, so five runs
# each give a median that one lucky run can tip. A duel pairs the generators round by round,
# rotating which goes first, drops every round in which any run lost more than DUEL_MAX_STEAL %
# of the CPU to the host, and reports the paired ratios' quartiles. With DUEL_FLOOR=1 a third
# contestant, bench/loadfloor (the least a closed-loop generator can do), shows the machine's
# ceiling in the same rounds: what any generator could get beside wrk.
duel() {
  command -v wrk > /dev/null || { log "duel: no wrk on PATH, skipped"; return 0; }
  local port="${DUEL_PORT:-18095}" rounds="${DUEL_ROUNDS:-12}" dur="${DUEL_DUR:-6}" tries="${DUEL_TRIES:-40}"
  local maxst="${DUEL_MAX_STEAL:-3}" conns="${CONNS:-50}" tsv="$OUT/duel.tsv" threads="${WRK_THREADS:-2}"
  local tools="wrk ours"
  if [ "${DUEL_FLOOR:-0}" = 1 ]; then
    (cd "$REPO" && go build -o "$OUT/loadfloor" ./bench/loadfloor) || { log "ERROR: building bench/loadfloor failed"; return 1; }
    tools="$tools floor"
  fi
  # The A/A control: wrk against itself in the same rotation. Its ratio's spread is what this host
  # does to two identical runs, so it says how much of ours' spread is the host's.
  [ "${DUEL_SELF:-0}" = 1 ] && tools="$tools self"
  port_free "$port"
  start_bg duel "$UPSTREAM" -addr "127.0.0.1:$port" -mode hello
  wait_port "$port" || return 1
  local url="http://127.0.0.1:$port/"
  # run_one <tool> -> "<req/s> <CPU µs per request> <steal %>"; CPU is the child's user+sys from
  # bash's times.
  run_one() {
    local mark out rps; mark=$(host_mark)
    case $1 in
      wrk|self)
        out=$(bash -c 'wrk -t'"$threads"' -c'"$conns"' -d'"$dur"'s '"$url"' 2>&1; times')
        rps=$(awk '/^Requests\/sec/{print $2}' <<< "$out") ;;
      ours)
        out=$(bash -c '"'"$BIN"'" load '"$url"' --conns '"$conns"' --duration '"$dur"'s '"${LOAD_FLAGS:-}"' --bench-result --progress plain --out "'"$OUT"'/runs/duel-$(date +%s%N)" 2>&1; times')
        rps=$(grep -o 'BENCH_RESULT rps=[0-9.]*' <<< "$out" | cut -d= -f2) ;;
      floor)
        out=$(bash -c '"'"$OUT"'/loadfloor" -url '"$url"' -c '"$conns"' -t '"$threads"' -d '"$dur"'s 2>&1; times')
        rps=$(sed -n 's/.* = \([0-9.]*\) req\/s.*/\1/p' <<< "$out") ;;
    esac
    # times' last line: the children's user and system time, as 0m1.234s.
    tail -1 <<< "$out" | awk -v r="${rps:-0}" -v d="$dur" -v st="$(host_steal "$mark")" '
      function secs(t,   a) { split(t, a, "m"); sub("s", "", a[2]); return a[1]*60 + a[2] }
      { printf "%.0f %.2f %s\n", r, (r > 0 ? (secs($1) + secs($2))*1e6/(r*d) : 0), st }'
  }
  printf 'round\twrk_rps\twrk_us\twrk_steal\tours_rps\tours_us\tours_steal\tfloor_rps\tfloor_us\tfloor_steal\tkept\tself_rps\tself_us\tself_steal\n' > "$tsv"
  local i=0 kept=0
  while [ "$kept" -lt "$rounds" ] && [ "$i" -lt "$tries" ]; do
    i=$((i + 1))
    # Rotate the order: each tool goes first, second (and third) equally often. With three or
    # more, a rotation keeps who runs after whom (a b c | b c a | c a b: b always follows a), and
    # a run finds the host as the one before left it (an A/A round read wrk after floor 1.036x
    # wrk after wrk), so every other cycle of rotations runs backwards.
    local -a order=($tools) line
    local n=${#order[@]}
    local k=$((i % n)) t ok=1
    declare -A got=([floor]="0 0 -" [self]="0 0 -")
    local -a seq=("${order[@]:k}" "${order[@]:0:k}")
    if [ "$n" -gt 2 ] && [ $(((i / n) % 2)) = 1 ]; then
      local -a rev=(); for t in "${seq[@]}"; do rev=("$t" "${rev[@]}"); done; seq=("${rev[@]}")
    fi
    for t in "${seq[@]}"; do got[$t]=$(run_one "$t"); done
    for t in $tools; do
      read -r -a line <<< "${got[$t]}"
      awk -v r="${line[0]}" -v st="${line[2]}" -v m="$maxst" 'BEGIN{exit !(st != "?" && st <= m && r > 0)}' || ok=0
    done
    [ "$ok" = 1 ] && kept=$((kept + 1))
    printf '%d\t%s\t%s\t%s\t%d\t%s\n' "$i" "${got[wrk]// /$'\t'}" "${got[ours]// /$'\t'}" "${got[floor]// /$'\t'}" "$ok" "${got[self]// /$'\t'}" >> "$tsv"
  done
  stop_bg duel
  {
    echo "## Duel with wrk -t$threads: ${dur} s rounds, ${conns} connections, hello upstream, order rotating"
    echo
    echo "$kept rounds kept of $i run (a round is dropped when any run lost more than ${maxst} % of the CPU to the host); every round: $tsv"
    echo
    awk -F'\t' -v floor="${DUEL_FLOOR:-0}" -v self="${DUEL_SELF:-0}" 'NR > 1 && $11 == 1 { n++
        r[n] = $5 / $2; c[n] = $6 / $3; if ($5 >= $2) w++
        if (floor == 1) { fr[n] = $8 / $2; fc[n] = $9 / $3; if ($8 >= $2) fw++ }
        if (self == 1) { sr[n] = $12 / $2; sc[n] = $13 / $3; if ($12 >= $2) sw++ } }
      function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t } }
      function q(a, n, p,   k) { k = 1 + (n - 1) * p; return a[int(k)] + (k - int(k)) * (a[int(k) + (k > int(k))] - a[int(k)]) }
      function row(name, a, won) { sort(a, n); printf "| %s | %.3f× | **%.3f×** | %.3f× | %s |\n", name, q(a, n, .25), q(a, n, .5), q(a, n, .75), won }
      END {
        if (n == 0) { print "no quiet round: nothing to compare"; exit }
        print "| ratio to wrk | lower quartile | median | upper quartile | rounds at or above 1.0 |"
        print "|---|---:|---:|---:|---:|"
        row("ours: req/s", r, (w + 0) " of " n)
        row("ours: CPU µs per request", c, "")
        if (floor == 1) { row("floor: req/s", fr, (fw + 0) " of " n); row("floor: CPU µs per request", fc, "") }
        if (self == 1) { row("wrk again (A/A): req/s", sr, (sw + 0) " of " n); row("wrk again (A/A): CPU µs per request", sc, "") }
      }' "$tsv"
  } | tee "$OUT/duel.md"
}

. "$HERE/host.sh"
for part in $PARTS; do
  log "== $part"
  mark=$(host_mark)
  "$part"
  host_line "$mark" | tee -a "$OUT/host.txt"
  echo
done
log "results in $OUT"
