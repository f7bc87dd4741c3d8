package stacks

import (
	"fmt"
	"strings"
)

// TURNDeniedPeers are the peer addresses coturn refuses to relay to: this
// host ("this network"), private, shared, loopback and link-local ranges,
// IPv6 unique-local and link-local. A participant's allocation could
// otherwise reach the other nodes' swarm ports, Docker's bridges and the
// metadata server (169.254.169.254) from inside the VPC.
var TURNDeniedPeers = []string{
	"0.0.0.0-0.255.255.255",
	"10.0.0.0-10.255.255.255",
	"100.64.0.0-100.127.255.255",
	"127.0.0.0-127.255.255.255",
	"169.254.0.0-169.254.255.255",
	"172.16.0.0-172.31.255.255",
	"192.168.0.0-192.168.255.255",
	"fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	"fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
}

// TURN limits: allocations one credential (one participant: the SFU's
// usernames name it) may hold at once, allocations in all, and each
// allocation's bandwidth in bytes per second (HD video, 2 Mbit/s, twice).
const (
	turnUserQuota  = 8
	turnTotalQuota = 300
	turnMaxBPS     = 500_000
)

// TURNConfigDir is the tmpfs where coturn's start writes its configuration,
// secret included: in memory, never in the image's layers.
const TURNConfigDir = "/run/coturn"

// TURNServerConfig is coturn's configuration but for its REST secret and
// external address, which TURNStartScript adds at start.
func TURNServerConfig(realm string, port, relayLo, relayHi int) string {
	lines := []string{
		"listening-port=" + fmt.Sprint(port),
		fmt.Sprintf("min-port=%d", relayLo),
		fmt.Sprintf("max-port=%d", relayHi),
		"realm=" + realm,
		"fingerprint",
		// Time-limited credentials from the SFU (TURN REST API).
		"use-auth-secret",
		// Relay UDP only, to unicast peers outside the denied ranges.
		"no-tcp-relay",
		"no-multicast-peers",
		"no-loopback-peers",
	}
	for _, r := range TURNDeniedPeers {
		lines = append(lines, "denied-peer-ip="+r)
	}
	lines = append(lines,
		fmt.Sprintf("user-quota=%d", turnUserQuota),
		fmt.Sprintf("total-quota=%d", turnTotalQuota),
		fmt.Sprintf("max-bps=%d", turnMaxBPS),
		"stale-nonce=600",
		"no-cli", "no-tls", "no-dtls",
		"no-software-attribute",
		"log-file=stdout",
		"simple-log",
	)
	return strings.Join(lines, "\n") + "\n"
}

// TURNStartScript is coturn's container command (for sh -c): it writes
// the configuration, with the REST secret read from the docker secret at
// secretFile and the external address from $externalIPEnv, to a file
// readable by coturn's user only in TURNConfigDir, and runs turnserver on
// it. The secret never appears on a command line (printf is the shell's
// own), where any process could read it in /proc/<pid>/cmdline.
func TURNStartScript(config, secretFile, externalIPEnv string) string {
	return strings.Join([]string{
		"set -eu",
		"umask 077",
		"conf=" + TURNConfigDir + "/turnserver.conf",
		"cat > \"$conf\" <<'EOF'\n" + config + "EOF",
		`printf 'static-auth-secret=%s\n' "$(cat ` + secretFile + `)" >> "$conf"`,
		`printf 'external-ip=%s\n' "$` + externalIPEnv + `" >> "$conf"`,
		`chmod 0400 "$conf"`,
		`exec turnserver --log-file=stdout -c "$conf"`,
	}, "\n")
}
