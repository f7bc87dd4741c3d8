package stacks

import "strings"

// RedisConfigDir is the tmpfs where redis's start writes its configuration,
// password included.
const RedisConfigDir = "/run/redis"

// RedisStartScript is the redis services' container command (for sh -c):
// it writes a configuration requiring the password at secretFile (no
// client on the overlay, a compromised one included, may read or write
// the data without it) to a file in RedisConfigDir that only redis's user
// reads, and starts redis-server on it through the image's entrypoint,
// which drops root. The password is on no command line (printf is the
// shell's own).
func RedisStartScript(secretFile string) string {
	return strings.Join([]string{
		"set -eu",
		"umask 077",
		"conf=" + RedisConfigDir + "/redis.conf",
		`printf 'requirepass %s\n' "$(cat ` + secretFile + `)" > "$conf"`,
		`printf 'appendonly yes\n' >> "$conf"`,
		`chmod 0400 "$conf"`,
		// The official image's entrypoint runs redis-server as the redis
		// user; elsewhere redis-server runs as whoever starts it.
		`if command -v docker-entrypoint.sh >/dev/null; then`,
		`  chown redis:redis "$conf"`,
		`  exec docker-entrypoint.sh redis-server "$conf"`,
		`fi`,
		`exec redis-server "$conf"`,
	}, "\n")
}

// RedisHealthcheck asks redis for PONG with the password, passed in the
// environment redis-cli reads (REDISCLI_AUTH), not on its command line.
func RedisHealthcheck(secretFile string) []string {
	return []string{"CMD-SHELL", `REDISCLI_AUTH="$(cat ` + secretFile + `)" redis-cli ping | grep -q PONG`}
}
