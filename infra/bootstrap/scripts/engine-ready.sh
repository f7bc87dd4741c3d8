#!/bin/bash
# Pulumi step "engine ready" (remote command, run as root over SSH): succeed
# once this VM has applied exactly the startup script the program rendered
# (SCRIPT_VERSION) and Docker answers. A VM whose metadata changed since boot
# re-runs its startup script here, so a config change converges on `up`
# without a reboot.
# @PARAMETERS@
set -euo pipefail
: "${SCRIPT_VERSION:?}"

applied() {
	[ "$(cat /var/lib/platform/bootstrap.version 2>/dev/null)" = "$SCRIPT_VERSION" ] &&
		docker info >/dev/null 2>&1
}

reruns=0
for _ in $(seq 1 180); do
	if applied; then
		break
	fi
	# SSH answers before the boot-time run has finished: wait for it rather
	# than start a second run.
	state=$(systemctl show -p ActiveState --value google-startup-scripts.service 2>/dev/null || echo unknown)
	if [ "$state" = activating ] || [ "$state" = reloading ]; then
		sleep 5
		continue
	fi
	# The boot-time run may have finished since the first check.
	if applied; then
		break
	fi
	if [ "$reruns" -ge 3 ]; then
		break
	fi
	# Not running and not applied: the metadata changed after boot (or the
	# boot-time run failed). Run the current script; startup.sh takes a lock,
	# so this cannot overlap another run.
	reruns=$((reruns + 1))
	echo "startup script version differs; running it (attempt $reruns)" >&2
	google_metadata_script_runner startup >&2 || sleep 10
done

if ! applied; then
	echo "startup script version $SCRIPT_VERSION was not applied; see: journalctl -u google-startup-scripts" >&2
	exit 1
fi
docker version --format '{{.Server.Version}}'
