#!/usr/bin/env bash
# Installs the ONNX Runtime shared library into .deps/onnxruntime/ from the npm
# package onnxruntime-node (Debian 12 does not package ONNX Runtime).
# Idempotent: does nothing when the library is present with the expected
# sha256; keeps the downloaded tarball in .deps/cache so it is fetched once.
set -euo pipefail

VERSION=1.24.3
TGZ_SHA256=aa1bb5fa261ea68de05dd53efbba210cd7adf2d2850f4c3a201054c74cc78040
LIB_SHA256=92ba8e44d31b80a34f5e805076a044122c3be1fffe0d88ed790de7267b0b2682
MEMBER=package/bin/napi-v6/linux/x64/libonnxruntime.so.1

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.deps/onnxruntime
cache=$root/.deps/cache
lib=$dest/libonnxruntime.so.1
tgz=$cache/onnxruntime-node-$VERSION.tgz

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f $lib && $(sha "$lib") == "$LIB_SHA256" ]]; then
	echo "onnxruntime $VERSION present: $lib"
	exit 0
fi

if [[ $(uname -m) != x86_64 ]]; then
	echo "install-ort: only linux x86_64 is packaged here (this is $(uname -m)); set ONNXRUNTIME_LIB to your own libonnxruntime.so" >&2
	exit 1
fi

if ! command -v npm >/dev/null; then
	echo "install-ort: npm missing, installing it with apt" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null
fi

mkdir -p "$dest" "$cache"
if [[ ! -f $tgz || $(sha "$tgz") != "$TGZ_SHA256" ]]; then
	echo "downloading onnxruntime-node@$VERSION from npm (86 MB)"
	tmp=$(mktemp -d "$cache/pack.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && npm pack --silent "onnxruntime-node@$VERSION" --pack-destination "$tmp" >/dev/null)
	got=$(sha "$tmp/onnxruntime-node-$VERSION.tgz")
	if [[ $got != "$TGZ_SHA256" ]]; then
		echo "install-ort: onnxruntime-node-$VERSION.tgz has sha256 $got, want $TGZ_SHA256" >&2
		exit 1
	fi
	mv "$tmp/onnxruntime-node-$VERSION.tgz" "$tgz"
fi

tar -xzf "$tgz" -O "$MEMBER" >"$lib.tmp"
got=$(sha "$lib.tmp")
if [[ $got != "$LIB_SHA256" ]]; then
	rm -f "$lib.tmp"
	echo "install-ort: $MEMBER has sha256 $got, want $LIB_SHA256" >&2
	exit 1
fi
mv "$lib.tmp" "$lib"
touch "$lib"
echo "onnxruntime $VERSION installed: $lib"
