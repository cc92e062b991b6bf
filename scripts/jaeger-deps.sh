#!/usr/bin/env bash
# Builds Jaeger v2 (an OTLP receiver with a query API, in-memory storage)
# from the Go module proxy into .deps/jaeger/<version>/jaeger, for the trace
# tests (internal/jaegertest). The version and every dependency are pinned by
# the wrapper module in scripts/jaeger (go.mod, go.sum): `go install` of
# Jaeger is refused because its module has replace directives.
#
# Idempotent: does nothing when the binary is present and was built from the
# wrapper's current go.sum. Without Go or the module proxy it warns and exits
# 0: the trace tests then skip and say why.
set -euo pipefail

VERSION=v1.75.0

root=$(cd "$(dirname "$0")/.." && pwd)
wrapper=$root/scripts/jaeger
dest=$root/.deps/jaeger/$VERSION
stamp=$dest/go.sum.sha256

skip() {
	echo "jaeger-deps: WARNING: $*; the trace tests will skip" >&2
	exit 0
}

sum=$(sha256sum "$wrapper/go.sum" | cut -d' ' -f1)
if [[ -x $dest/jaeger && -f $stamp && $(cat "$stamp") == "$sum" ]]; then
	echo "jaeger $VERSION present: $dest/jaeger"
	exit 0
fi

go=${GO:-go}
command -v "$go" >/dev/null || skip "go is not on PATH"
mkdir -p "$dest"
tmp=$(mktemp "$dest/jaeger.XXXXXX")
trap 'rm -f "$tmp"' EXIT
echo "building Jaeger $VERSION from the Go module proxy (several minutes the first time)"
start=$(date +%s)
if ! (cd "$wrapper" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$go" build -trimpath -ldflags '-s -w' \
	-o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger) 2>"$tmp.log"; then
	tail -5 "$tmp.log" >&2
	rm -f "$tmp.log"
	skip "go build of github.com/jaegertracing/jaeger/cmd/jaeger@$VERSION failed (is the module proxy reachable?)"
fi
rm -f "$tmp.log"
chmod 0755 "$tmp"
mv "$tmp" "$dest/jaeger"
echo "$sum" >"$stamp"
echo "jaeger $VERSION installed: $dest/jaeger ($(($(date +%s) - start)) s)"
