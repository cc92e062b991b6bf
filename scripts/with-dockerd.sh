#!/usr/bin/env bash
# Runs a command with a private Docker engine: installs docker.io if dockerd
# is missing, starts dockerd on its own socket and data directory (no bridge,
# no iptables: ddnn's containers use the host network), builds the ddnn
# image, runs the command with DOCKER_HOST set, and stops dockerd by its PID.
# Usage: scripts/with-dockerd.sh COMMAND [ARGS...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# Without an engine the command still runs; the docker tests then skip and
# say why. Everything else is tested either way.
without_docker() {
	echo "with-dockerd: WARNING: $1; running without a Docker engine (docker runtime tests will skip)" >&2
	shift
	unset DOCKER_HOST
	exec "$@"
}

if ! command -v dockerd >/dev/null; then
	echo "with-dockerd: installing docker.io with apt"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q docker.io >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q docker.io >/dev/null; } ||
		true
fi

dir=$(mktemp -d /tmp/ddnn-dockerd.XXXXXX)
pid=
stop() {
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	# dockerd leaves its default network namespace mounted.
	umount "$dir/exec/netns/default" 2>/dev/null || true
	rm -rf "$dir" 2>/dev/null || true
}
trap stop EXIT

dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
	--host "unix://$dir/docker.sock" --bridge=none --iptables=false --ip6tables=false \
	>"$dir/dockerd.log" 2>&1 &
pid=$!
export DOCKER_HOST="unix://$dir/docker.sock"
for _ in $(seq 1 100); do
	docker info >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.2
done
if ! docker info >/dev/null 2>&1; then
	tail -20 "$dir/dockerd.log" >&2
	stop
	pid=
	trap - EXIT
	without_docker "dockerd did not start (log above)" "$@"
fi
echo "with-dockerd: dockerd pid $pid on $DOCKER_HOST"
"$root/scripts/build-image.sh"
set +e
"$@"
rc=$?
set -e
exit $rc
