#!/usr/bin/env bash
# Builds the ddnn image FROM scratch: bin/ddnn, the ONNX Runtime library,
# every library ldd lists for both, the dynamic loader, and the models.
# Usage: scripts/build-image.sh [TAG]   (default ddnn:latest; DOCKER_HOST is honoured)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-ddnn:latest}
bin=$root/bin/ddnn
lib=$root/.deps/onnxruntime/libonnxruntime.so.1
[[ -x $bin ]] || { echo "build-image: $bin missing: run make build" >&2; exit 1; }
[[ -f $lib ]] || { echo "build-image: $lib missing: run make deps" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
fs=$ctx/rootfs
mkdir -p "$fs/usr/bin" "$fs/opt/ddnn/lib" "$fs/opt/ddnn/models/data" "$fs/tmp"
cp "$bin" "$fs/usr/bin/ddnn"
cp "$lib" "$fs/opt/ddnn/lib/"
for f in "$bin" "$lib"; do
	ldd "$f" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}'
done | sort -u | while read -r so; do
	mkdir -p "$fs$(dirname "$so")"
	cp -L "$so" "$fs$so"
done
cp "$root"/models/*.onnx "$fs/opt/ddnn/models/"
cp "$root"/models/data/* "$fs/opt/ddnn/models/data/"
cp "$root/deploy/docker/Dockerfile" "$ctx/"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
