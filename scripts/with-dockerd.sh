#!/usr/bin/env bash
# Runs a command with a private Docker engine: installs docker.io if dockerd
# is missing, starts dockerd on its own socket and data directory (no bridge,
# no iptables: ddnn's containers use the host network), builds the ddnn
# image, runs the command with DOCKER_HOST set, and stops dockerd by its PID.
# Usage: scripts/with-dockerd.sh COMMAND [ARGS...]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if ! command -v dockerd >/dev/null; then
	echo "with-dockerd: installing docker.io with apt"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q docker.io >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q docker.io >/dev/null; }
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
	kill -0 "$pid" 2>/dev/null || { echo "with-dockerd: dockerd exited:" >&2; tail -20 "$dir/dockerd.log" >&2; exit 1; }
	sleep 0.2
done
docker info >/dev/null 2>&1 || { echo "with-dockerd: dockerd not ready" >&2; tail -20 "$dir/dockerd.log" >&2; exit 1; }
echo "with-dockerd: dockerd pid $pid on $DOCKER_HOST"
"$root/scripts/build-image.sh"
set +e
"$@"
rc=$?
set -e
exit $rc
