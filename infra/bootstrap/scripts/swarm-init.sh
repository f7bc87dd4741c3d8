#!/bin/bash
# Pulumi step "swarm init" on the manager (remote command, run as root over
# SSH). Idempotent: a manager already in a swarm is left as it is. Prints
# "<cluster id> <node id>" on stdout; the program reads both.
# @PARAMETERS@
set -euo pipefail
: "${ADVERTISE_ADDR:?}" "${MTU:?}" "${ADDR_POOL:?}" "${ADDR_POOL_MASK:?}"

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
inactive)
	# --advertise-addr: the VPC-internal address, the only one the firewall
	# opens 2377/7946/4789 on between nodes. --default-addr-pool keeps overlay
	# subnets clear of the VPC subnet (checked by the program).
	docker swarm init \
		--advertise-addr "$ADVERTISE_ADDR" \
		--listen-addr "$ADVERTISE_ADDR:2377" \
		--default-addr-pool "$ADDR_POOL" \
		--default-addr-pool-mask-length "$ADDR_POOL_MASK" >&2
	;;
active)
	if [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != true ]; then
		echo "this node is a worker of another swarm; refusing to touch it (docker swarm leave first)" >&2
		exit 1
	fi
	echo "already a swarm manager; nothing to initialise" >&2
	;;
*)
	echo "swarm state is '$state'; fix it by hand (docker info) before running up again" >&2
	exit 1
	;;
esac

# The routing mesh network is an overlay too and Docker creates it with a
# 1500-byte base MTU: recreate it with the VPC MTU (moby/libnetwork#2661).
# Only possible while no service publishes through it, i.e. right after init.
ingress_mtu() {
	docker network inspect ingress --format '{{index .Options "com.docker.network.driver.mtu"}}' 2>/dev/null || echo absent
}
current=$(ingress_mtu)
if [ "$current" != "$MTU" ]; then
	if [ "$current" != absent ]; then
		if [ -n "$(docker service ls -q)" ]; then
			echo "ingress network has MTU '${current}', want $MTU, but services exist; remove them first" >&2
			exit 1
		fi
		echo y | docker network rm ingress >&2
		for _ in $(seq 1 30); do
			[ "$(ingress_mtu)" = absent ] && break
			sleep 1
		done
	fi
	docker network create --driver overlay --ingress \
		--opt com.docker.network.driver.mtu="$MTU" ingress >&2
	echo "ingress network recreated with MTU $MTU" >&2
fi

docker info --format '{{.Swarm.Cluster.ID}} {{.Swarm.NodeID}}'
