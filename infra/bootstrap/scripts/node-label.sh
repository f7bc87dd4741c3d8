#!/bin/bash
# Pulumi step "node label" on the manager (remote command, run as root over
# SSH): one resource per (node, label key), so a config change touches exactly
# that label. ACTION=add sets KEY=VALUE on NODE_ID (create and update);
# ACTION=remove deletes KEY (delete). The node is addressed by the ID it
# reported when it joined, not looked up again: a stale "Down" entry with the
# same hostname cannot be picked by mistake. Removing a label from a node that
# is already gone is not an error.
# @PARAMETERS@
set -euo pipefail
: "${ACTION:?}" "${NODE_ID:?}" "${KEY:?}" "${VALUE?}"

case "$ACTION" in
add)
	docker node update --label-add "$KEY=$VALUE" "$NODE_ID" >/dev/null
	echo "$NODE_ID $KEY=$(docker node inspect --format "{{index .Spec.Labels \"$KEY\"}}" "$NODE_ID")"
	;;
remove)
	if ! docker node inspect "$NODE_ID" >/dev/null 2>&1; then
		echo "node $NODE_ID is not in the swarm; nothing to remove" >&2
		exit 0
	fi
	# Captured first: `cmd | grep -q` under pipefail fails at random when grep
	# exits before cmd has written everything (SIGPIPE).
	keys=$(docker node inspect --format '{{range $k, $v := .Spec.Labels}}{{$k}}{{"\n"}}{{end}}' "$NODE_ID")
	if grep -qxF -- "$KEY" <<<"$keys"; then
		docker node update --label-rm "$KEY" "$NODE_ID" >/dev/null
	fi
	echo "$NODE_ID -$KEY"
	;;
*)
	echo "ACTION must be add or remove, not '$ACTION'" >&2
	exit 1
	;;
esac
