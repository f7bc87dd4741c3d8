#!/bin/bash
# Pulumi step "swarm join" on a worker (remote command, run as root over SSH).
# The worker token arrives on stdin (a Pulumi secret): it never appears in the
# command text, in state outside a secret, or in logs (errors are redacted).
# Idempotent: a worker that already knows MANAGER_NODE_ID as its manager is
# left alone; one in another swarm (the manager was rebuilt, so its node ID
# changed) leaves that swarm first. Workers cannot read the cluster ID, hence
# the manager's node ID as the swarm's identity. Prints this node's ID.
# @PARAMETERS@
set -euo pipefail
: "${MANAGER_ADDR:?}" "${MANAGER_NODE_ID:?}"

IFS= read -r token || true
if [ -z "$token" ]; then
	echo "no join token on stdin" >&2
	exit 1
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
managers=$(docker info --format '{{range .Swarm.RemoteManagers}}{{.NodeID}} {{end}}')
if [ "$state" = active ] && [[ " $managers " == *" $MANAGER_NODE_ID "* ]]; then
	echo "already in the swarm of manager $MANAGER_NODE_ID" >&2
else
	if [ "$state" != inactive ]; then
		echo "node is '$state' with managers '${managers}', want $MANAGER_NODE_ID; leaving that swarm" >&2
		docker swarm leave --force >&2 || true
	fi
	if ! out=$(docker swarm join --token "$token" "$MANAGER_ADDR:2377" 2>&1); then
		echo "docker swarm join $MANAGER_ADDR:2377 failed: ${out//$token/[redacted]}" >&2
		exit 1
	fi
	echo "${out//$token/[redacted]}" >&2
fi

docker info --format '{{.Swarm.NodeID}}'
