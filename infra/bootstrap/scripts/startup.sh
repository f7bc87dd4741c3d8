#!/bin/bash
# GCE startup script (metadata "startup-script") of every cluster node. It runs
# at every boot and again whenever the Pulumi program finds it changed
# (engine-ready.sh), so every step is idempotent: install Docker Engine if
# missing, write the daemon config, create docker_gwbridge with the VPC MTU,
# and record the version that has been applied.
# @PARAMETERS@
set -euo pipefail
: "${NODE_NAME:?}" "${ROLE:?}" "${MTU:?}" "${LOG_MAX_SIZE:?}" "${LOG_MAX_FILE:?}" "${SCRIPT_VERSION:?}"

log() { echo "platform-bootstrap[$NODE_NAME/$ROLE]: $*"; }

# One run at a time: the boot-time run and a re-run from engine-ready.sh may overlap.
exec 9>/run/platform-bootstrap.lock
flock 9

export DEBIAN_FRONTEND=noninteractive

# docker.io comes from Debian's own signed archive, already configured on the
# image: no third-party repository or key to fetch at boot, security updates
# through the normal Debian channel, and Swarm mode is part of the engine.
if [ "$(dpkg-query -W -f='${Status}' docker.io 2>/dev/null || true)" != "install ok installed" ]; then
	log "installing docker.io"
	for attempt in 1 2 3 4 5; do
		if apt-get -o DPkg::Lock::Timeout=300 update -q &&
			apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends docker.io ca-certificates; then
			break
		fi
		if [ "$attempt" = 5 ]; then
			log "apt-get failed 5 times; giving up"
			exit 1
		fi
		sleep $((attempt * 10))
	done
fi

# The SFU asks for 4 MiB buffers on its one ICE UDP socket (every
# participant's media shares it; keyframe bursts overflowed the default
# ~208 KiB, docs/benchmarks.md). The kernel caps what a socket may ask for
# at these host-wide limits.
sysctl_file=/etc/sysctl.d/60-platform-sfu.conf
printf 'net.core.rmem_max = 4194304\nnet.core.wmem_max = 4194304\n' >"$sysctl_file.new"
if cmp -s "$sysctl_file.new" "$sysctl_file"; then
	rm -f "$sysctl_file.new"
else
	mv "$sysctl_file.new" "$sysctl_file"
	log "wrote $sysctl_file"
fi
sysctl -q -p "$sysctl_file"

# Daemon settings the stack relies on:
# - json-file logs with rotation, so a chatty service cannot fill the disk;
# - mtu: containers on the default bridge must fit the VPC MTU too (overlays get
#   the same value through com.docker.network.driver.mtu, see swarm-init.sh and
#   the stack's networks);
# - no live-restore: dockerd refuses to start with it in Swarm mode.
install -d -m 0755 /etc/docker
new_config=$(mktemp)
trap 'rm -f "$new_config"' EXIT
cat >"$new_config" <<JSON
{
  "log-driver": "json-file",
  "log-opts": {
    "max-size": "$LOG_MAX_SIZE",
    "max-file": "$LOG_MAX_FILE"
  },
  "mtu": $MTU
}
JSON

restart=no
if ! cmp -s "$new_config" /etc/docker/daemon.json; then
	install -m 0644 "$new_config" /etc/docker/daemon.json
	restart=yes
	log "wrote /etc/docker/daemon.json"
fi

systemctl enable docker.service >/dev/null 2>&1 || true
if [ "$restart" = yes ] && systemctl is-active --quiet docker.service; then
	log "restarting docker to apply the new daemon config"
	systemctl restart docker.service
else
	systemctl start docker.service
fi

for _ in $(seq 1 60); do
	if docker info >/dev/null 2>&1; then
		break
	fi
	sleep 2
done
if ! docker info >/dev/null 2>&1; then
	log "docker did not come up; see: journalctl -u docker"
	exit 1
fi

# docker_gwbridge connects overlay containers to the host. Docker creates it
# with MTU 1500 when the node first joins a swarm unless it already exists, so
# create it here, before init/join, with the VPC MTU (Docker docs: "Customize
# the docker_gwbridge interface").
gwbridge_mtu=$(docker network inspect docker_gwbridge --format '{{index .Options "com.docker.network.driver.mtu"}}' 2>/dev/null || echo absent)
if [ "$gwbridge_mtu" = absent ]; then
	docker network create --driver bridge \
		--opt com.docker.network.bridge.name=docker_gwbridge \
		--opt com.docker.network.bridge.enable_icc=false \
		--opt com.docker.network.bridge.enable_ip_masquerade=true \
		--opt com.docker.network.driver.mtu="$MTU" \
		docker_gwbridge >/dev/null
	log "created docker_gwbridge with MTU $MTU"
elif [ "$gwbridge_mtu" != "$MTU" ]; then
	# Recreating it would cut running tasks off; say so and leave it.
	log "WARNING: docker_gwbridge has MTU '${gwbridge_mtu}', want $MTU (recreate it while the node is drained)"
fi

install -d -m 0755 /var/lib/platform
echo "$SCRIPT_VERSION" >/var/lib/platform/bootstrap.version
log "done (version $SCRIPT_VERSION, $(docker version --format '{{.Server.Version}}'))"
