# bench/host.sh - sourced by the bench scripts: how busy the host was while they measured.
#
# On a virtual machine the numbers that matter most here (tails, wake-ups, saturated throughput)
# move with what the host runs beside us, which the guest sees only as steal time: the share of
# time its virtual CPUs were ready to run and the host ran something else. Load average does not
# show it. Each script marks the start and prints the steal over its run in its summary, so a
# noisy run says so itself (bench/FAULTS.md: 2-7 % steal came with direct-path p99s of 2-4 ms).

# host_mark: "<total jiffies> <steal jiffies>" over all CPUs now (/proc/stat, steal is field 9).
host_mark() { awk '/^cpu /{ t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9; exit }' /proc/stat; }

# host_steal <mark>: steal since the mark, in % of all CPU time (one decimal), "?" if unknown.
host_steal() {
  local t0 s0 t1 s1
  read -r t0 s0 <<< "$1"
  read -r t1 s1 < <(host_mark)
  awk -v t0="${t0:-0}" -v s0="${s0:-0}" -v t1="$t1" -v s1="$s1" 'BEGIN {
    if (t1 > t0 && s1 != "") printf "%.1f\n", 100 * (s1 - s0) / (t1 - t0); else print "?" }'
}

# host_line <mark>: one line for a summary.
host_line() {
  echo "host steal time during the run: $(host_steal "$1") % of CPU time (runs at 2-7 % had direct-path p99s of 2-4 ms: compare tails only between quiet runs); load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
}
