#!/usr/bin/env bash
# Runs a fresh SFU and sfuload inside a private network namespace (lo plus
# a veth pair with 10.203.0.1), so no WebRTC packet can leave the machine,
# and prints sfuload's report. Needs root (unshare --net) and iproute2.
#
#   sudo sfu/cmd/sfuload/run-in-netns.sh [sfuload flags...]
#
# Environment:
#   SFU_CPUS    CPU list to pin the SFU to (taskset -c), e.g. 1
#   SFU_CPU_QUOTA  percent of one CPU the SFU may use (a cgroup v1 CFS quota,
#               100 ms period), e.g. 25: finds where loss starts per core
#               while the load tool keeps the rest of the machine
#   LOAD_CPUS   CPU list to pin sfuload to, e.g. 0
#   SFU_ARGS    extra flags for the SFU
#   SFU_PERF    if set, perf-record the SFU during the run into this file
#   BIN_DIR     where to build the binaries (default: a temporary directory)
#   SFU_BIN     run this SFU binary instead of building ./sfu/cmd/sfu (e.g. an
#               older build, to compare two versions of the forwarding path)
set -euo pipefail

addr=10.203.0.1
if [[ "${SFULOAD_NETNS:-}" != 1 ]]; then
	exec unshare --net env SFULOAD_NETNS=1 "$0" "$@"
fi

ip link set lo up
ip link add v0 type veth peer name v1
ip addr add "$addr/24" dev v0
ip link set v0 up
ip link set v1 up
ip route add default dev v0

root=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${BIN_DIR:-$(mktemp -d)}
mkdir -p "$bin"
(cd "$root" && go build -o "$bin/sfuload" ./sfu/cmd/sfuload)
sfu_bin=${SFU_BIN:-$bin/sfu}
if [[ -z "${SFU_BIN:-}" ]]; then
	(cd "$root" && go build -o "$bin/sfu" ./sfu/cmd/sfu)
fi

# Command prefixes that pin to CPUs when asked; prefixes, not a shell
# function, so that $! below is the SFU's (or perf's) own pid.
sfu_pin=()
load_pin=()
[[ -n "${SFU_CPUS:-}" ]] && sfu_pin=(taskset -c "$SFU_CPUS")
[[ -n "${LOAD_CPUS:-}" ]] && load_pin=(taskset -c "$LOAD_CPUS")

quota=()
if [[ -n "${SFU_CPU_QUOTA:-}" ]]; then
	cg=/sys/fs/cgroup/cpu/sfuload-$$
	mkdir "$cg"
	echo 100000 >"$cg/cpu.cfs_period_us"
	echo $((SFU_CPU_QUOTA * 1000)) >"$cg/cpu.cfs_quota_us"
	# The SFU enters the cgroup before it starts (exec keeps the pid).
	# shellcheck disable=SC2016 # $0 and $@ belong to the inner shell
	quota=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg")
fi

prof=()
if [[ -n "${SFU_PERF:-}" ]]; then
	# Under perf from the start, so every thread the Go runtime adds is sampled.
	prof=(perf record -e cpu-clock -F 999 -g -o "$SFU_PERF" --)
fi
# Every load participant comes from one address: lift the per-address
# limits of builds that have them (older builds, for SFU_BIN, do not).
limits=()
if "$sfu_bin" --help 2>&1 | grep -q -- -max-websockets-per-ip; then
	limits=(--max-conns-per-ip 0 --max-websockets-per-ip 0)
fi
# shellcheck disable=SC2086 # SFU_ARGS is a list of flags
"${sfu_pin[@]}" "${quota[@]}" "${prof[@]}" "$sfu_bin" --listen "$addr:8080" --ice-bind "$addr" --ice-udp-port 40000 \
	--ice-tcp-port -1 --max-participants 0 --max-rooms 0 "${limits[@]}" --log-level warn ${SFU_ARGS:-} &
sfu=$!
cleanup() {
	kill -INT "$sfu" 2>/dev/null || true
	wait "$sfu" || true
	if [[ -n "${cg:-}" ]]; then
		rmdir "$cg" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 100); do
	"$sfu_bin" healthcheck "http://$addr:8080/health" >/dev/null 2>&1 && break
	sleep 0.1
done
"${load_pin[@]}" "$bin/sfuload" --url "ws://$addr:8080/ws" --ice-ip "$addr" "$@"
