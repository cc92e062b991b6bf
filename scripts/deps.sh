#!/usr/bin/env bash
# Installs what building and testing ddnn needs on Debian 12 and is missing:
# apt packages (only when a command is absent), the ONNX Runtime library, and
# the pinned Go modules. Safe to run again: it skips what is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# command -> Debian package providing it
declare -A want=(
	[gcc]=gcc
	[npm]=npm
	[sha256sum]=coreutils
	[curl]=curl
	[kcat]=kcat
	[coap-client-notls]=libcoap3-bin
	[coap-client-openssl]=libcoap3-bin # CoAP over DTLS (the coaps e2e test)
	[promtool]=prometheus # promtool and the server: deploy/observability and its e2e test
)
# command -> Debian package installed without its recommends (a browser's
# would pull in a desktop)
declare -A want_lean=(
	[chromium]=chromium # the status page's test in headless Chromium
)
missing=() lean=()
for cmd in "${!want[@]}"; do
	command -v "$cmd" >/dev/null || missing+=("${want[$cmd]}")
done
for cmd in "${!want_lean[@]}"; do
	command -v "$cmd" >/dev/null || lean+=("${want_lean[$cmd]}")
done
# cgo needs the C library headers too.
[[ -f /usr/include/stdlib.h ]] || missing+=(libc6-dev)
if ((${#missing[@]} + ${#lean[@]})); then
	echo "deps: installing ${missing[*]} ${lean[*]} with apt"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	if ((${#missing[@]})); then
		apt-get install -y -q "${missing[@]}" >/dev/null
	fi
	if ((${#lean[@]})); then
		apt-get install -y -q --no-install-recommends "${lean[@]}" >/dev/null
	fi
fi

GO=${GO:-go}
if ! command -v "$GO" >/dev/null; then
	if [[ -x /usr/local/go/bin/go ]]; then
		GO=/usr/local/go/bin/go
	else
		echo "deps: Go 1.26 or newer is required (https://go.dev/dl); Debian 12's golang package is too old" >&2
		exit 1
	fi
fi

"$root/scripts/install-ort.sh"
(cd "$root" && "$GO" mod download)
