#!/bin/bash
# Runs rendered startup scripts one after another, as consecutive boots of
# one VM, inside a private mount namespace (the caller uses unshare --mount):
# /etc and /var/lib are overlays over the host's and /run is a tmpfs, so the
# scripts write their real paths without touching the host. After boot i,
# $OUT/i/ holds daemon.json, bootstrap.version, stdout and the calls made.
# Usage: startup-driver.sh OUT FAKEBIN SCRIPT...
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
	bash "$script" >"$out/$i/stdout" 2>"$out/$i/stderr"
	cp /etc/docker/daemon.json "$out/$i/daemon.json"
	cp /var/lib/platform/bootstrap.version "$out/$i/bootstrap.version"
done
