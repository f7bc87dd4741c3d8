#!/bin/bash
# Pulumi step "swarm member" on the manager (remote command, run as root over
# SSH), one per worker. ACTION=keep (create/update): drop entries a rebuilt VM
# left behind, i.e. "Down" nodes with the same HOSTNAME but another ID, so the
# node list shows one entry per VM. ACTION=remove (delete, when the worker
# leaves the config): remove NODE_ID from the swarm; a node already gone is
# not an error.
# @PARAMETERS@
set -euo pipefail
: "${ACTION:?}" "${NODE_ID:?}" "${HOSTNAME_WANT:?}"

case "$ACTION" in
keep)
	docker node ls --format '{{.ID}} {{.Hostname}} {{.Status}}' |
		while read -r id host status; do
			if [ "$host" = "$HOSTNAME_WANT" ] && [ "$id" != "$NODE_ID" ] && [ "$status" = Down ]; then
				echo "removing stale node $id ($host, $status)" >&2
				docker node rm "$id" >&2 || true
			fi
		done
	docker node inspect --format '{{.ID}} {{.Description.Hostname}} {{.Status.State}}' "$NODE_ID"
	;;
remove)
	if docker node inspect "$NODE_ID" >/dev/null 2>&1; then
		docker node rm --force "$NODE_ID" >&2
	fi
	echo "$NODE_ID removed"
	;;
*)
	echo "ACTION must be keep or remove, not '$ACTION'" >&2
	exit 1
	;;
esac
