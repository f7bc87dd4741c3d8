#!/usr/bin/env bash
# Runs the load rows docs/benchmarks.md records, one after another, each
# against a fresh SFU in a private network namespace (run-in-netns.sh),
# keeps every report in OUTDIR and prints them as the page's results
# table. Needs root, like run-in-netns.sh. About 3 minutes on 2 cores.
#
#   sudo sfu/cmd/sfuload/bench-rows.sh OUTDIR
#
# Environment: SFU_BIN (another SFU build, for before/after rows) and the
# rest of run-in-netns.sh's.
set -euo pipefail
if [[ $# -ne 1 ]]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
out=$1
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
export BIN_DIR=${BIN_DIR:-$out/bin}

row() {
	local name=$1
	shift
	echo "== $name ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1 /proc/loadavg))" >&2
	"$here/run-in-netns.sh" "$@" --json "$out/$name.json" >"$out/$name.txt" 2>&1 ||
		{ echo "$name failed: see $out/$name.txt" >&2; return 1; }
}

row 1x2 --publishers 2 --duration 15s
row 1x50 --publishers 1 --subscribers 50 --join-concurrency 8 --duration 15s
row 1x100 --publishers 1 --subscribers 100 --join-concurrency 8 --connect-timeout 120s --duration 15s
row 1x200 --publishers 1 --subscribers 200 --join-concurrency 8 --connect-timeout 180s --duration 15s
row 10x4 --rooms 10 --publishers 4 --duration 15s
SFU_CPUS=1 LOAD_CPUS=0 row pinned-1x150 --publishers 1 --subscribers 150 --join-concurrency 8 --connect-timeout 180s --duration 15s
SFU_CPUS=1 LOAD_CPUS=0 row pinned-10x4 --rooms 10 --publishers 4 --duration 15s

"$BIN_DIR/sfuload" markdown "$out"/1x2.json "$out"/1x50.json "$out"/1x100.json "$out"/1x200.json \
	"$out"/10x4.json "$out"/pinned-1x150.json "$out"/pinned-10x4.json
