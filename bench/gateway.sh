#!/usr/bin/env bash
# bench/gateway.sh - cascade's gateway against nginx, HAProxy and the upstream direct, in one run.
#
# 1. Runs the shared peer benchmark (../shared/bench/peers.sh) sections B and B2 with our gateway
#    as OURS_PROXY_CMD: `cascade gateway --listen {LISTEN} --upstream {UPSTREAM} --enable $FEATURES
#    --propagate $PROPAGATE` (issue 4's target setup: breaker, retries, limits and balancing enabled
#    on the route; by default no added upstream headers, as the nginx config adds none), then
#    prints ours against nginx, HAProxy and direct from that same run: req/s ratio, proxy CPU per
#    request, added p50/p99 at a fixed open-loop rate.
# 2. The cost of each feature: the same upstream, wrk at fixed concurrency, our gateway with one
#    feature set after another (and nginx as the reference), repetitions interleaved.
# 3. Light-load latency in many short rounds (LAT_ROUNDS > 0): direct, nginx and ours run side by
#    side, and each round sends B_RATE req/s (vegeta, open loop) for LAT_DUR s to each in turn, the
#    order rotating. On a shared VM a path's tail moves by milliseconds between seconds, so one
#    10 s run per path (peers.sh B2) can rank them by luck; paired short rounds compare the paths
#    under the same noise, and pooling every round gives each path's percentiles over the same span.
#
# Everything listens on 127.0.0.1, every load run is bounded (DUR seconds), and only processes this
# script started are stopped (by PID). Knobs (environment):
#   REPS=3 DUR=10 CONNS=50 B_RATE=5000         as peers.sh
#   FEATURES=breaker,retries,limits,p2c        what the peers.sh row runs with
#   GW_FLAGS=                                  more flags for every run of our gateway (e.g.
#                                              "--loops 0" for a goroutine per connection)
#   PROPAGATE=none                             headers the gateway adds upstream (--propagate; nginx's
#                                              proxy_pass here adds none; "all" = cascade's default)
#   SWEEP="plain headers breaker retries limits p2c all all+headers all+log"   feature sets for part 2
#                                              ("" skips it); every set runs with --propagate none but
#                                              headers and all+headers (the default four headers)
#   LAT_ROUNDS=0 LAT_DUR=4                     part 3: rounds (0 skips it) and seconds per path per round
#   LAT_PORT_BASE=18590                        part 3: upstream, nginx, ours on +0, +1, +2
#   LAT_OURS_CMD=                              part 3: run this instead of our gateway as "ours", with
#                                              {LISTEN} and {UPSTREAM} filled in (e.g. bench/loopproxy,
#                                              the event-loop floor: see bench/GATEWAY.md)
#   HOP_ROUNDS=2                               part 3, as root: rounds with bench/hopcap splitting each
#                                              request's time on the wire (0 skips them)
#   PARTS="peers sweep latency"                which parts run (sweep also needs SWEEP non-empty)
#   PEERS=../shared/bench/peers.sh             the peer benchmark
#   BENCH_TOOLS, BENCH_WORK, BENCH_OUT          as peers.sh (tools from install-peers.sh)
#   SWEEP_UP_PORT=18580 SWEEP_GW_PORT=18581 SWEEP_NGINX_PORT=18582
#   PORT_BASE=18380   moves peers.sh's ports (UP_PORT..OURS_PROXY_PORT) to PORT_BASE+0..+6, when another
#                     peers.sh run holds the defaults (18080-18087)
set -uo pipefail
if [ -n "${PORT_BASE:-}" ]; then
  export UP_PORT=$PORT_BASE NGINX_PORT=$((PORT_BASE + 1)) HAPROXY_PORT=$((PORT_BASE + 2)) GORP_PORT=$((PORT_BASE + 3)) \
    GORP2_PORT=$((PORT_BASE + 4)) TOXI_PORT=$((PORT_BASE + 5)) OURS_PROXY_PORT=$((PORT_BASE + 6))
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PEERS="${PEERS:-$REPO/../shared/bench/peers.sh}"
[ -x "$PEERS" ] || PEERS="/work/shared/bench/peers.sh"
PEERS_DIR="$(cd "$(dirname "$PEERS")" && pwd)"
WORK="${BENCH_WORK:-${TMPDIR:-/tmp}/cascade-gateway-bench}"
export BENCH_TOOLS="${BENCH_TOOLS:-${TMPDIR:-/tmp}/bench-peers/bin}"
export PATH="$BENCH_TOOLS:$PATH"
OUT="${BENCH_OUT:-$WORK/results-$(date +%Y%m%d-%H%M%S)}"
REPS="${REPS:-3}" DUR="${DUR:-10}" CONNS="${CONNS:-50}" B_RATE="${B_RATE:-5000}"
FEATURES="${FEATURES:-breaker,retries,limits,p2c}" PROPAGATE="${PROPAGATE:-none}"
[ "$PROPAGATE" = all ] && PROPAGATE=request_id,forwarded_for,attempt,deadline
SWEEP="${SWEEP-plain headers breaker retries limits p2c all all+headers all+log}"
LAT_ROUNDS="${LAT_ROUNDS:-0}" LAT_DUR="${LAT_DUR:-4}" HOP_ROUNDS="${HOP_ROUNDS:-2}" LAT_PORT_BASE="${LAT_PORT_BASE:-18590}"
PARTS="${PARTS:-peers sweep latency}"
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
SWEEP_UP_PORT="${SWEEP_UP_PORT:-18580}" SWEEP_GW_PORT="${SWEEP_GW_PORT:-18581}" SWEEP_NGINX_PORT="${SWEEP_NGINX_PORT:-18582}"
HOSTIP=127.0.0.1
mkdir -p "$OUT/sweep" "$WORK/bin"
LOAD_AT_START=$(cat /proc/loadavg)
. "$(dirname "${BASH_SOURCE[0]}")/host.sh"
HOST_MARK=$(host_mark)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "building cascade into $WORK/bin"
(cd "$REPO" && go build -o "$WORK/bin/cascade" ./cmd/cascade) || { log "ERROR: go build failed"; exit 1; }
BIN="$WORK/bin/cascade"

# ------------------------------------------------------------------ 1. peers.sh B and B2
MED="$OUT/peers/medians.tsv"
if want peers; then
  log "== peers.sh sections B, B2 (ours: --enable $FEATURES --propagate $PROPAGATE)"
  OURS_PROXY_CMD="$BIN gateway --listen {LISTEN} --upstream {UPSTREAM} --enable $FEATURES --propagate $PROPAGATE ${GW_FLAGS:-}" \
    SECTIONS="B" REPS="$REPS" DUR="$DUR" CONNS="$CONNS" B_RATE="$B_RATE" BENCH_WORK="$WORK/peers" BENCH_OUT="$OUT/peers" \
    "$PEERS" > "$OUT/peers.log" 2>&1
  [ -s "$MED" ] || { log "ERROR: peers.sh produced no medians (see $OUT/peers.log)"; tail -20 "$OUT/peers.log" >&2; exit 1; }
fi

ratios() {
  awk -F'\t' -v rate="$B_RATE" '
    NR==1 { next }
    $1=="B"  { rps[$2]=$4; cpu[$2]=$14 }
    $1=="B2" { p50[$2]=$6; p99[$2]=$8; cpu2[$2]=$14; rps2[$2]=$4 }
    END {
      printf "| path | req/s (B) | vs direct | vs nginx | proxy CPU µs/req (B) | proxy CPU µs/req at %d/s (B2) | p50 added (B2, µs) | p99 added (B2, µs) |\n", rate
      print  "|---|---:|---:|---:|---:|---:|---:|---:|"
      n = split("direct nginx haproxy go-rp ours", P, " ")
      for (i = 1; i <= n; i++) { p = P[i]; if (!(p in rps)) continue
        us  = (p == "direct" || cpu[p] == "-" || rps[p] == 0)  ? "–" : sprintf("%.1f", cpu[p] / 100 / rps[p] * 1e6)
        us2 = (p == "direct" || cpu2[p] == "-" || rps2[p] == 0) ? "–" : sprintf("%.1f", cpu2[p] / 100 / rps2[p] * 1e6)
        a50 = (p == "direct") ? "–" : sprintf("%+.0f", (p50[p] - p50["direct"]) * 1000)
        a99 = (p == "direct") ? "–" : sprintf("%+.0f", (p99[p] - p99["direct"]) * 1000)
        printf "| %s | %.0f | %.2f | %.2f | %s | %s | %s | %s |\n", (p=="ours" ? "**cascade gateway**" : p), rps[p],
          rps[p] / rps["direct"], rps[p] / rps["nginx"], us, us2, a50, a99 }
      if (("ours" in rps) && ("nginx" in rps))
        printf "\nours / nginx: throughput %.2f×, CPU per request %.2f×, added p50 %.2f×, added p99 %.2f×\n",
          rps["ours"] / rps["nginx"], (cpu["ours"] / rps["ours"]) / (cpu["nginx"] / rps["nginx"]),
          (p50["ours"] - p50["direct"]) / (p50["nginx"] - p50["direct"]), (p99["ours"] - p99["direct"]) / (p99["nginx"] - p99["direct"])
    }' "$MED"
}

# ------------------------------------------------------------------ 2. feature sweep
declare -A PID
start_bg() { local name=$1; shift; "$@" > "$OUT/sweep/$name.log" 2>&1 & PID[$name]=$!; }
stop_bg() { local p=${PID[$1]:-}; [ -z "$p" ] && return 0; kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; unset "PID[$1]"; }
cleanup() { local n; for n in "${!PID[@]}"; do stop_bg "$n"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
wait_port() { local i; for i in $(seq 1 100); do (exec 3<>"/dev/tcp/$HOSTIP/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
port_free() { ! (exec 3<>"/dev/tcp/$HOSTIP/$1") 2>/dev/null; }
ticks() { local p=$1 t=0 c; for c in "$p" $(ps -o pid= --ppid "$p" 2>/dev/null); do
  [ -r "/proc/$c/stat" ] && t=$(( t + $(awk '{print $14+$15}' "/proc/$c/stat") )); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

flags_for() {  # feature set name -> gateway flags
  case "$1" in
    plain)       echo "--propagate none" ;;
    headers)     echo "" ;;
    all)         echo "--enable breaker,retries,limits,p2c --propagate none" ;;
    all+headers) echo "--enable breaker,retries,limits,p2c" ;;
    all+log)     echo "--enable breaker,retries,limits,p2c --propagate none --access-log $OUT/sweep/access.jsonl" ;;
    *)           echo "--enable $1 --propagate none" ;;
  esac
}

# measure <name> <pid> <port>: wrk for DUR s; prints "name rep rps cpu_us_per_req p50 p99 upstream_cpu_us_per_req"
measure() {
  local name=$1 pid=$2 port=$3 rep=$4 t0 t1 s0 s1 u0 u1
  s0=$(ticks "$pid"); u0=$(ticks "${PID[up]}"); t0=$(date +%s.%N)
  wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$PEERS_DIR/scripts/wrk-report.lua" "http://$HOSTIP:$port/" > "$OUT/sweep/$name-r$rep.txt" 2>&1
  t1=$(date +%s.%N); s1=$(ticks "$pid"); u1=$(ticks "${PID[up]}")
  awk -v n="$name" -v r="$rep" -v d=$((s1 - s0)) -v du=$((u1 - u0)) -v hz="$HZ" -v w0="$t0" -v w1="$t1" '/^BENCH_RESULT/{
    for(i=2;i<=NF;i++){split($i,kv,"=");v[kv[1]]=kv[2]}
    rps=v["requests"]/(v["duration_us"]/1e6); cpu=d/hz/(w1-w0); ucpu=du/hz/(w1-w0)
    printf "%s\t%s\t%.0f\t%.1f\t%.3f\t%.3f\t%.1f\n", n, r, rps, cpu/rps*1e6, v["p50_us"]/1e3, v["p99_us"]/1e3, ucpu/rps*1e6}' "$OUT/sweep/$name-r$rep.txt"
}

sweep() {
  for p in "$SWEEP_UP_PORT" "$SWEEP_GW_PORT" "$SWEEP_NGINX_PORT"; do port_free "$p" || { log "ERROR: port $p in use"; return 1; }; done
  local srv="$WORK/peers/srv/upstream"
  [ -x "$srv" ] || (cd "$PEERS_DIR" && GOFLAGS=-buildvcs=false go build -o "$WORK/peers/srv/" ./servers/...)
  start_bg up "$srv" -addr "$HOSTIP:$SWEEP_UP_PORT" -mode hello; wait_port "$SWEEP_UP_PORT" || return 1
  mkdir -p "$OUT/sweep/nginx/tmp"
  sed -e "s/@UPSTREAM_PORT@/$SWEEP_UP_PORT/g; s/@NGINX_PORT@/$SWEEP_NGINX_PORT/g; s/@NGINX_WORKERS@/auto/g" \
    "$PEERS_DIR/conf/nginx.conf.in" > "$OUT/sweep/nginx/nginx.conf"
  printf 'case\trep\trps\tcpu_us\tp50_ms\tp99_ms\tupstream_cpu_us\n' > "$OUT/sweep/results.tsv"
  local rep name
  for rep in $(seq 1 "$REPS"); do
    if command -v nginx > /dev/null; then
      start_bg nginx nginx -p "$OUT/sweep/nginx" -e error.log -c nginx.conf -g 'daemon off;'
      wait_port "$SWEEP_NGINX_PORT" && { wrk -t2 -c"$CONNS" -d2s "http://$HOSTIP:$SWEEP_NGINX_PORT/" > /dev/null 2>&1
        measure nginx "${PID[nginx]}" "$SWEEP_NGINX_PORT" "$rep" | tee -a "$OUT/sweep/results.tsv" >&2; }
      stop_bg nginx
    fi
    for name in $SWEEP; do
      # shellcheck disable=SC2046
      start_bg gw "$BIN" gateway --listen "$HOSTIP:$SWEEP_GW_PORT" --upstream "http://$HOSTIP:$SWEEP_UP_PORT" $(flags_for "$name") ${GW_FLAGS:-}
      wait_port "$SWEEP_GW_PORT" || { log "ERROR: gateway did not start ($name)"; stop_bg gw; continue; }
      wrk -t2 -c"$CONNS" -d2s "http://$HOSTIP:$SWEEP_GW_PORT/" > /dev/null 2>&1   # warm-up
      measure "$name" "${PID[gw]}" "$SWEEP_GW_PORT" "$rep" | tee -a "$OUT/sweep/results.tsv" >&2
      stop_bg gw
    done
  done
  stop_bg up
}

sweep_table() {
  awk -F'\t' 'NR==1{next} { k=$1; if(!(k in seen)){seen[k]=1; order[++n]=k}; c[k]++; R[k,c[k]]=$3; U[k,c[k]]=$4; P[k,c[k]]=$5; Q[k,c[k]]=$6; W[k,c[k]]=$7 }
    function med(A,k,   m,i,j,t,a){ m=c[k]; for(i=1;i<=m;i++)a[i]=A[k,i]; for(i=2;i<=m;i++){t=a[i];for(j=i-1;j>=1&&a[j]>t;j--)a[j+1]=a[j];a[j+1]=t}
      return (m%2)?a[(m+1)/2]:(a[m/2]+a[m/2+1])/2 }
    END { print "| gateway config | req/s | vs nginx | vs plain | proxy CPU µs/req | Δ µs/req vs plain | p50 ms | p99 ms | upstream CPU µs/req |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      rn = ("nginx" in seen) ? med(R,"nginx") : 0; rp = ("plain" in seen) ? med(R,"plain") : 0; up = ("plain" in seen) ? med(U,"plain") : 0
      for(i=1;i<=n;i++){ k=order[i]; r=med(R,k); u=med(U,k)
        printf "| %s | %.0f | %s | %s | %.1f | %s | %.3f | %.3f | %.1f |\n", k, r, (rn?sprintf("%.2f",r/rn):"–"), (rp&&k!="nginx"?sprintf("%.2f",r/rp):"–"),
          u, (up&&k!="nginx"&&k!="plain"?sprintf("%+.1f",u-up):"–"), med(P,k), med(Q,k), med(W,k) } }' "$OUT/sweep/results.tsv"
}

# ------------------------------------------------------------------ 3. light-load latency rounds
# lat_measure <path> <port> <round>: vegeta at B_RATE for LAT_DUR s; keeps the .bin for pooling and
# prints "path round p50_ms p99_ms errors".
lat_measure() {
  local path=$1 port=$2 round=$3 raw="$OUT/latency/$1-r$3"
  echo "GET http://$HOSTIP:$port/" > "$raw.targets"
  timeout -k 5 $((LAT_DUR + 30)) vegeta attack -targets="$raw.targets" -rate="$B_RATE/s" -duration="${LAT_DUR}s" \
    -max-connections="$CONNS" -output="$raw.bin" 2> "$raw.err"
  vegeta report -type=json "$raw.bin" |
    jq -r --arg p "$path" --arg r "$round" '"\($p)\t\($r)\t\(.latencies["50th"]/1e6)\t\(.latencies["99th"]/1e6)\t\(.requests - ((.status_codes["200"]) // 0))"'
}

# hop_rounds: the same three paths, the same rate, with bench/hopcap capturing loopback meanwhile
# (root only): each request's time split on the wire into the proxy's in-hop, the upstream and the
# proxy's out-hop. The capture takes CPU from the paths it watches, so these rounds are kept out of
# the latency table above.
hop_rounds() {
  if ! (cd "$REPO" && go build -o "$WORK/bin/hopcap" ./bench/hopcap) || ! "$WORK/bin/hopcap" -front 1 -dur 1ms > /dev/null 2>&1; then
    log "skip hop capture: bench/hopcap needs Linux and CAP_NET_RAW (root)"; return 0
  fi
  printf 'round\tpath\thop\tn\tp50_us\tp90_us\tp99_us\tp999_us\n' > "$OUT/latency/hops.tsv"
  local r p up raw cap
  for r in $(seq 1 "$HOP_ROUNDS"); do
    for p in direct nginx ours; do
      raw="$OUT/latency/hop-$p-r$r"; up=$LAT_PORT_BASE; [ "$p" = direct ] && up=0
      seq 1 $((B_RATE * LAT_DUR + B_RATE)) | awk -v u="http://$HOSTIP:${port[$p]}/?h$r-" '{ print "GET " u $1 }' > "$raw.targets"
      "$WORK/bin/hopcap" -front "${port[$p]}" -up "$up" -dur "$((LAT_DUR + 1))s" > "$raw.hops" 2> "$raw.hoperr" & cap=$!
      PID[hopcap]=$cap   # so an interrupt stops it too
      sleep 0.3
      timeout -k 5 $((LAT_DUR + 30)) vegeta attack -targets="$raw.targets" -rate="$B_RATE/s" -duration="${LAT_DUR}s" \
        -max-connections="$CONNS" -output="$raw.bin" 2> "$raw.err"
      wait "$cap"; unset 'PID[hopcap]'
      vegeta report -type=json "$raw.bin" |
        jq -r --arg r "$r" --arg p "$p" '"\($r)\t\($p)\tclient\t\(.requests)\t\(.latencies["50th"]/1e3|floor)\t\(.latencies["90th"]/1e3|floor)\t\(.latencies["99th"]/1e3|floor)\t-"' >> "$OUT/latency/hops.tsv"
      sed "s/^/$r\t$p\t/" "$raw.hops" >> "$OUT/latency/hops.tsv"
    done
  done
}

# hops_table: per round and path, p50 / p99 of each hop in µs.
hops_table() {
  awk -F'\t' 'NR==1 { next }
    { k = $1 SUBSEP $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }; v[k, $3] = $5 " / " $7 }
    END {
      print "| round | path | client (vegeta) | in-hop | upstream | out-hop | proxy + upstream (total) |"
      print "|---:|---|---:|---:|---:|---:|---:|"
      for (i = 1; i <= n; i++) { split(order[i], a, SUBSEP); k = order[i]
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", a[1], (a[2]=="ours"?"**cascade gateway**":a[2]), v[k,"client"],
          ((k,"in-hop") in v) ? v[k,"in-hop"] : "–", ((k,"upstream") in v) ? v[k,"upstream"] : "–", ((k,"out-hop") in v) ? v[k,"out-hop"] : "–", v[k,"total"] } }' "$OUT/latency/hops.tsv"
}

latency_rounds() {
  local upp=$LAT_PORT_BASE ngp=$((LAT_PORT_BASE + 1)) gwp=$((LAT_PORT_BASE + 2)) p
  for p in "$upp" "$ngp" "$gwp"; do port_free "$p" || { log "ERROR: port $p in use"; return 1; }; done
  command -v vegeta > /dev/null && command -v nginx > /dev/null || { log "skip latency rounds: vegeta or nginx missing"; return 0; }
  mkdir -p "$OUT/latency/nginx/tmp"
  local srv="$WORK/peers/srv/upstream"
  [ -x "$srv" ] || (cd "$PEERS_DIR" && GOFLAGS=-buildvcs=false go build -o "$WORK/peers/srv/" ./servers/...)
  start_bg lat-up "$srv" -addr "$HOSTIP:$upp" -mode hello; wait_port "$upp" || return 1
  sed -e "s/@UPSTREAM_PORT@/$upp/g; s/@NGINX_PORT@/$ngp/g; s/@NGINX_WORKERS@/auto/g" \
    "$PEERS_DIR/conf/nginx.conf.in" > "$OUT/latency/nginx/nginx.conf"
  start_bg lat-nginx nginx -p "$OUT/latency/nginx" -e error.log -c nginx.conf -g 'daemon off;'
  if [ -n "${LAT_OURS_CMD:-}" ]; then
    local cmd=${LAT_OURS_CMD//\{LISTEN\}/$HOSTIP:$gwp}
    cmd=${cmd//\{UPSTREAM\}/http://$HOSTIP:$upp}
    log "part 3: ours is: $cmd"
    # shellcheck disable=SC2086 # the command's words
    start_bg lat-gw $cmd
  else
    start_bg lat-gw "$BIN" gateway --listen "$HOSTIP:$gwp" --upstream "http://$HOSTIP:$upp" --enable "$FEATURES" --propagate "$PROPAGATE" ${GW_FLAGS:-}
  fi
  wait_port "$ngp" && wait_port "$gwp" || { log "ERROR: nginx or the gateway did not start"; return 1; }
  declare -A port=([direct]=$upp [nginx]=$ngp [ours]=$gwp)
  for p in direct nginx ours; do wrk -t2 -c"$CONNS" -d1s "http://$HOSTIP:${port[$p]}/" > /dev/null 2>&1; done   # warm-up
  printf 'path\tround\tp50_ms\tp99_ms\terrors\n' > "$OUT/latency/rounds.tsv"
  printf 'round\tsteal_pct\n' > "$OUT/latency/steal.tsv"
  local r order mark
  for r in $(seq 1 "$LAT_ROUNDS"); do
    case $((r % 3)) in 1) order="direct nginx ours" ;; 2) order="nginx ours direct" ;; 0) order="ours direct nginx" ;; esac
    mark=$(host_mark)
    for p in $order; do lat_measure "$p" "${port[$p]}" "$r" | tee -a "$OUT/latency/rounds.tsv" >&2; done
    printf '%s\t%s\n' "$r" "$(host_steal "$mark")" >> "$OUT/latency/steal.tsv"
  done
  [ "$HOP_ROUNDS" -gt 0 ] && hop_rounds
  printf 'path\trequests\tp50_ms\tp90_ms\tp99_ms\terrors\n' > "$OUT/latency/pooled.tsv"
  for p in direct nginx ours; do
    # shellcheck disable=SC2046
    vegeta report -type=json $(ls "$OUT/latency/$p"-r*.bin) |
      jq -r --arg p "$p" '"\($p)\t\(.requests)\t\(.latencies["50th"]/1e6)\t\(.latencies["90th"]/1e6)\t\(.latencies["99th"]/1e6)\t\(.requests - ((.status_codes["200"]) // 0))"'
  done >> "$OUT/latency/pooled.tsv"
  stop_bg lat-gw; stop_bg lat-nginx; stop_bg lat-up
}

# latency_table: per-round added latency (path minus direct in the same round), its median over the
# rounds, the rounds where ours added no more than nginx, and every round pooled.
latency_table() {
  local label="**cascade gateway**"
  [ -n "${LAT_OURS_CMD:-}" ] && label="ours = LAT_OURS_CMD (${LAT_OURS_CMD%% *})"
  awk -F'\t' -v label="$label" '
    FNR==1 { f++; next }
    f==1 { p50[$1,$2]=$3; p99[$1,$2]=$4; err[$1]+=$5; if ($2>nr) nr=$2 }
    f==2 { steal[$1]=$2 }
    f==3 { n[$1]=$2; q50[$1]=$3; q90[$1]=$4; q99[$1]=$5 }
    function med(a, m,   i,j,t){ for(i=2;i<=m;i++){t=a[i];for(j=i-1;j>=1&&a[j]>t;j--)a[j+1]=a[j];a[j+1]=t}
      return (m%2)?a[(m+1)/2]:(a[m/2]+a[m/2+1])/2 }
    END {
      print "| path | requests | errors | pooled p50 ms | pooled p99 ms | pooled p50 added µs | pooled p99 added µs | median per-round p50 added µs | median per-round p99 added µs |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      split("direct nginx ours", P, " ")
      for (i = 1; i <= 3; i++) { p = P[i]; m = 0
        for (r = 1; r <= nr; r++) if (((p,r) in p50) && (("direct",r) in p50)) { m++; A[m] = (p50[p,r]-p50["direct",r])*1000; B[m] = (p99[p,r]-p99["direct",r])*1000 }
        if (p == "direct") printf "| direct | %d | %d | %.3f | %.3f | – | – | – | – |\n", n[p], err[p], q50[p], q99[p]
        else printf "| %s | %d | %d | %.3f | %.3f | %+.0f | %+.0f | %+.0f | %+.0f |\n", (p=="ours"?label:p), n[p], err[p], q50[p], q99[p],
          (q50[p]-q50["direct"])*1000, (q99[p]-q99["direct"])*1000, med(A,m), med(B,m) }
      w50 = w99 = m = 0
      for (r = 1; r <= nr; r++) if ((("ours",r) in p50) && (("nginx",r) in p50)) { m++
        if (p50["ours",r] <= p50["nginx",r]) w50++; if (p99["ours",r] <= p99["nginx",r]) w99++ }
      printf "\nRounds where ours added no more than nginx: p50 %d of %d, p99 %d of %d.\n", w50, m, w99, m
      printf "\n| round | steal %% | direct p50/p99 ms | nginx p50/p99 ms | ours p50/p99 ms |\n|---:|---:|---|---|---|\n"
      for (r = 1; r <= nr; r++) printf "| %d | %s | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f |\n", r, steal[r],
        p50["direct",r], p99["direct",r], p50["nginx",r], p99["nginx",r], p50["ours",r], p99["ours",r]
    }' "$OUT/latency/rounds.tsv" "$OUT/latency/steal.tsv" "$OUT/latency/pooled.tsv"
}

if want latency && [ "$LAT_ROUNDS" -gt 0 ]; then
  log "== light-load latency: $LAT_ROUNDS rounds of ${LAT_DUR}s at $B_RATE req/s per path (direct, nginx, ours)"
  mkdir -p "$OUT/latency"
  latency_rounds
fi

if want sweep && [ -n "$SWEEP" ]; then
  log "== feature sweep: $SWEEP (wrk -c$CONNS ${DUR}s, $REPS reps interleaved, nginx as reference)"
  sweep
fi

{
  echo "# bench/gateway.sh ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, REPS=$REPS, DUR=${DUR}s, medians over reps)"
  echo; echo "load average at start: $LOAD_AT_START; at the end: $(cat /proc/loadavg)"
  echo; host_line "$HOST_MARK"
  if [ -s "$MED" ]; then
    echo; echo "## Ours (--enable $FEATURES --propagate $PROPAGATE) against the peers, one peers.sh run (sections B and B2)"; echo
    ratios
    echo; echo "### peers.sh tables"; echo
    sed -n '/^## B\./,$p' "$OUT/peers/summary.md"
  fi
  if [ -s "$OUT/latency/pooled.tsv" ]; then
    echo; echo "## Light-load latency: $LAT_ROUNDS rounds, ${LAT_DUR}s per path per round at $B_RATE req/s (vegeta, open loop, ≤ $CONNS connections), order rotating"; echo
    latency_table
  fi
  if [ -s "$OUT/latency/hops.tsv" ]; then
    echo; echo "### Where the time goes, on the wire (bench/hopcap, $HOP_ROUNDS rounds of ${LAT_DUR}s at $B_RATE req/s; p50 / p99 µs; the capture itself takes CPU)"; echo
    hops_table
  fi
  if [ -s "$OUT/sweep/results.tsv" ]; then
    echo; echo "## Cost of each feature (wrk -t2 -c$CONNS, ${DUR}s, hello upstream)"; echo
    sweep_table
  fi
} | tee "$OUT/summary.md"
log "results in $OUT"
