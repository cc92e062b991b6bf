#!/usr/bin/env bash
# Makes the secrets deploy/examples/secure.yaml reads, in DIR (default
# deploy/examples/secure): a development CA with a server certificate for
# 127.0.0.1 and a client certificate for device dev-1, the service token,
# the Kafka password, and a device credentials file with dev-1, whose token
# is printed once. Existing files are kept. For trying the secure set-up on
# one machine; production secrets come from the operator's own CA and
# secret store (docs/security.md).
set -euo pipefail
dir=${1:-deploy/examples/secure}
ddnn=${DDNN:-bin/ddnn}
umask 077
mkdir -p "$dir"
[ -e "$dir/certs/ca.pem" ] || "$ddnn" certs --dir "$dir/certs" --hosts 127.0.0.1,localhost --devices dev-1 >/dev/null
[ -e "$dir/service.token" ] || "$ddnn" token >"$dir/service.token"
[ -e "$dir/kafka.password" ] || head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/kafka.password"
if [ ! -e "$dir/devices.yaml" ]; then
	echo "device dev-1's token (send it as 'Authorization: Bearer TOKEN'; it is not stored anywhere):" >&2
	"$ddnn" devices add -f "$dir/devices.yaml" dev-1
fi
echo "secrets in $dir; run: $ddnn up -f deploy/examples/secure.yaml" >&2
