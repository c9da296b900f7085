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
#   - `docker.sh stop` stops the dockerd this script started (the PID in the
#     pidfile, only if that process is still dockerd) and waits for it to exit.
#   - Unless CASCADE_IMAGE_PACKAGES=0, also makes sure the Debian packages
#     that internal/containers assembles images from are installed:
#     postgresql-15, nginx, haproxy. Their package scripts are kept from
#     starting the services on the host (policy-rc.d, removed afterwards if
#     this script created it).
# There is no image registry on our machines: nothing here pulls images.
set -euo pipefail

apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "$@" >/tmp/cascade-apt.log 2>&1; then
		apt-get update >/dev/null 2>&1 || true
		apt-get install -y --no-install-recommends "$@" >/tmp/cascade-apt.log 2>&1 || {
			tail -20 /tmp/cascade-apt.log >&2
			echo "docker.sh: apt-get install $* failed" >&2
			exit 1
		}
	fi
}

if [ "${CASCADE_IMAGE_PACKAGES:-1}" != 0 ]; then
	need=()
	[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
	[ -x /usr/sbin/nginx ] || need+=(nginx)
	[ -x /usr/sbin/haproxy ] || need+=(haproxy)
	if [ ${#need[@]} -gt 0 ]; then
		echo "docker.sh: installing image source packages: ${need[*]}"
		made_policy=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			made_policy=1
		fi
		apt_install "${need[@]}"
		if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
	fi
fi

log=${CASCADE_DOCKERD_LOG:-/tmp/cascade-dockerd.log}
pidfile=${CASCADE_DOCKERD_PIDFILE:-/tmp/cascade-dockerd.pid}

if [ "${1:-}" = stop ]; then
	pid=$(cat "$pidfile" 2>/dev/null || true)
	if [ -z "$pid" ] || [ "$(cat /proc/"$pid"/comm 2>/dev/null)" != dockerd ]; then
		echo "docker.sh: no dockerd started by this script is running"
		rm -f "$pidfile"
		exit 0
	fi
	kill "$pid"
	for _ in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "docker.sh: dockerd $pid still running after 20 s" >&2
		exit 1
	fi
	rm -f "$pidfile"
	echo "docker.sh: stopped dockerd $pid"
	exit 0
fi

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
	echo "docker.sh: daemon already answers (server $(docker version --format '{{.Server.Version}}'))"
	exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
	echo "docker.sh: installing docker.io"
	apt_install docker.io
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
