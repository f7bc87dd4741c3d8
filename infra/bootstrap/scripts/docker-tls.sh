#!/bin/bash
# Pulumi step "docker API" on the manager (remote command, run as root over
# SSH): install the server half of the Docker API's mutual TLS and expose the
# API on tcp/2376 of the node's own address and of loopback only. Key
# material arrives on stdin (a Pulumi secret), never on the command line:
# three base64 lines, the CA certificate, the server certificate and the
# server key. Clients need a certificate signed by the
# same CA (--tlsverify); the firewall admits 2376 only from the admin ranges.
# @PARAMETERS@
set -euo pipefail
: "${DOCKER_API_PORT:?}" "${BIND_ADDR:?}"

dir=/etc/docker/tls
umask 077
install -d -m 0700 "$dir"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT

for f in ca.pem server-cert.pem server-key.pem; do
	IFS= read -r line || { echo "stdin ended before $f" >&2; exit 1; }
	if ! printf '%s' "$line" | base64 -d >"$staging/$f" 2>/dev/null ||
		! grep -q -- '-----BEGIN' "$staging/$f"; then
		echo "stdin line for $f is not a base64 PEM block" >&2
		exit 1
	fi
done

changed=no
for f in ca.pem server-cert.pem server-key.pem; do
	if ! cmp -s "$staging/$f" "$dir/$f"; then
		install -m 0600 -o root -g root "$staging/$f" "$dir/$f"
		changed=yes
	fi
done

# The packaged unit starts dockerd with -H fd:// (socket activation); keep
# that socket and add the TLS listener. Flags, not daemon.json "hosts": the
# startup script owns daemon.json, and "hosts" there conflicts with -H.
dockerd_bin=$(command -v dockerd)
dropin=/etc/systemd/system/docker.service.d/platform-tls.conf
install -d -m 0755 "$(dirname "$dropin")"
want=$(mktemp)
cat >"$want" <<UNIT
[Service]
ExecStart=
ExecStart=$dockerd_bin -H fd:// -H tcp://$BIND_ADDR:$DOCKER_API_PORT -H tcp://127.0.0.1:$DOCKER_API_PORT --tlsverify --tlscacert=$dir/ca.pem --tlscert=$dir/server-cert.pem --tlskey=$dir/server-key.pem
UNIT
if ! cmp -s "$want" "$dropin"; then
	install -m 0644 "$want" "$dropin"
	changed=yes
fi
rm -f "$want"

if [ "$changed" = yes ]; then
	systemctl daemon-reload
	systemctl restart docker.service
fi

for _ in $(seq 1 60); do
	if docker info >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$DOCKER_API_PORT")" ]; then
		echo "docker API listening on tcp/$DOCKER_API_PORT with mutual TLS"
		exit 0
	fi
	sleep 2
done
echo "dockerd is not listening on tcp/$DOCKER_API_PORT; see: journalctl -u docker" >&2
exit 1
