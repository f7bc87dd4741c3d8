#!/bin/bash
# Runs rendered node scripts one after another on one simulated VM, inside a
# private mount namespace (the caller uses unshare --mount): /etc and
# /var/lib are overlays over the host's and /run is a tmpfs, so the scripts
# write their real paths without touching the host. Script N reads its stdin
# from SCRIPT.stdin when that file exists. After run N, $OUT/N/ holds stdout,
# stderr, the exit status (rc), the calls made to the test doubles, a copy of
# every file listed in $CAPTURE (space separated) and their modes (modes).
# Usage: CAPTURE="/etc/docker/daemon.json ..." node-driver.sh OUT FAKEBIN SCRIPT...
set -euo pipefail
out=$1 fakebin=$2
shift 2
scratch=$(mktemp -d)
mount -t tmpfs none "$scratch"
for d in etc varlib; do mkdir -p "$scratch/$d/upper" "$scratch/$d/work"; done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/etc/upper,workdir=$scratch/etc/work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$scratch/varlib/upper,workdir=$scratch/varlib/work" /var/lib
mount -t tmpfs none /run
export FAKE_STATE_DIR=$scratch/state PATH=$fakebin:$PATH
mkdir -p "$FAKE_STATE_DIR"
i=0
for script in "$@"; do
	i=$((i + 1))
	mkdir -p "$out/$i"
	export FAKE_LOG=$out/$i/calls
	: >"$FAKE_LOG"
	stdin=/dev/null
	if [ -e "$script.stdin" ]; then stdin=$script.stdin; fi
	rc=0
	bash "$script" <"$stdin" >"$out/$i/stdout" 2>"$out/$i/stderr" || rc=$?
	echo "$rc" >"$out/$i/rc"
	for path in ${CAPTURE:-}; do
		if [ -f "$path" ]; then
			cp "$path" "$out/$i/$(basename "$path")"
		fi
		if [ -e "$path" ]; then
			echo "$path $(stat -c %a "$path")" >>"$out/$i/modes"
		fi
	done
done
