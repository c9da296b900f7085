#!/usr/bin/env bash
# Make a Docker daemon answer on unix:///var/run/docker.sock, idempotently.
#
# Contract (for .ci/run and developers):
#   - If a daemon already answers, do nothing and exit 0.
#   - Otherwise install docker.io from Debian if dockerd is missing, start
#     `dockerd --bridge=none --iptables=false --ip6tables=false` in the
#     background (no docker0 bridge, no firewall rules: every cascade container
#     uses host networking), wait up to 30 s for it to answer, and exit 0.
#   - Prints the daemon's log path and PID (and writes the PID to
#     $CASCADE_DOCKERD_PIDFILE, default /tmp/cascade-dockerd.pid) so the caller
#     can stop exactly that process: kill "$(cat /tmp/cascade-dockerd.pid)".
#   - Exits non-zero with the log tail if the daemon does not come up.
# There is no image registry on our machines: nothing here pulls images.
set -euo pipefail

log=${CASCADE_DOCKERD_LOG:-/tmp/cascade-dockerd.log}
pidfile=${CASCADE_DOCKERD_PIDFILE:-/tmp/cascade-dockerd.pid}

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
	echo "docker.sh: daemon already answers (server $(docker version --format '{{.Server.Version}}'))"
	exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
	echo "docker.sh: installing docker.io"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends docker.io >/tmp/cascade-apt-docker.log 2>&1; then
		apt-get update >/dev/null 2>&1 || true
		apt-get install -y --no-install-recommends docker.io >/tmp/cascade-apt-docker.log 2>&1 || {
			tail -20 /tmp/cascade-apt-docker.log >&2
			echo "docker.sh: apt-get install docker.io failed" >&2
			exit 1
		}
	fi
fi

# --bridge=none: never create docker0 on 172.17.0.0/16 (traffic must stay on loopback).
nohup dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
echo "docker.sh: started dockerd pid $pid, log $log, pidfile $pidfile"

for _ in $(seq 1 300); do
	if answers; then
		echo "docker.sh: daemon answers (server $(docker version --format '{{.Server.Version}}'))"
		exit 0
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		break
	fi
	sleep 0.1
done
tail -30 "$log" >&2
echo "docker.sh: dockerd did not answer within 30 s (log: $log)" >&2
exit 1
