// Package redistest runs the real redis-server (Debian's) with the start
// script and health check the stack declares for its redis services, in a
// private network namespace, and holds them to what the stack promises:
// no command without the password, the password on no command line.
package redistest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/jbcalling/platform/stacks"
)

func TestMain(m *testing.M) { netns.Main(m) }

const password = "the-redis-password"

func TestRedisRequiresItsPassword(t *testing.T) {
	netns.Require(t)
	for _, bin := range []string{"redis-server", "redis-cli", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (apt-get install redis-server util-linux)", bin)
		}
	}
	cfg := pulumitest.StackConfig(t, "staging")
	get := func(k string) (string, bool) { v, ok := cfg[k]; return v, ok }
	cl, err := infra.ParseConfig("staging", get)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := stacks.ConfigFromMap(cl, get)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stacks.Catalog(infra.Plan(cl), sc)
	if err != nil {
		t.Fatal(err)
	}
	svc := st.Service("redis")
	if svc == nil || len(svc.Commands) != 3 || svc.Healthcheck == nil || svc.Healthcheck.Test[0] != "CMD-SHELL" {
		t.Fatalf("the stack's redis service: command %q, health check %+v", svc.Commands, svc.Healthcheck)
	}
	// The docker secret and the tmpfs, in a private mount namespace whose
	// /run is a fresh tmpfs; the data directory is a temporary one.
	wrapper := strings.Join([]string{
		"set -eu",
		"mount -t tmpfs tmpfs /run",
		"mkdir -p /run/secrets " + stacks.RedisConfigDir,
		`printf %s "$TEST_PASSWORD" > /run/secrets/redis_password`,
		"chmod 0400 /run/secrets/redis_password",
		`case "$1" in`,
		`start) exec sh -c "$TEST_SCRIPT" ;;`,
		`*) exec sh -c "$TEST_HEALTH" ;;`,
		`esac`,
	}, "\n")
	run := func(what string) *exec.Cmd {
		c := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", wrapper, "sh", what)
		c.Dir = t.TempDir()
		c.Env = append(os.Environ(), "TEST_PASSWORD="+password, "TEST_SCRIPT="+svc.Commands[2], "TEST_HEALTH="+svc.Healthcheck.Test[1])
		return c
	}
	server := run("start")
	var out bytes.Buffer
	server.Stdout, server.Stderr = &out, &out
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = server.Process.Kill()
		_ = server.Wait()
		if t.Failed() {
			t.Logf("redis-server said:\n%s", out.String())
		}
	})
	cli := func(env []string, args ...string) string {
		c := exec.Command("redis-cli", args...)
		c.Env = append(os.Environ(), env...)
		b, _ := c.CombinedOutput()
		return strings.TrimSpace(string(b))
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(cli(nil, "ping"), "NOAUTH") {
		if time.Now().After(deadline) {
			t.Fatalf("redis does not answer, or answers without the password: %q", cli(nil, "ping"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := cli(nil, "set", "k", "v"); !strings.Contains(got, "NOAUTH") {
		t.Fatalf("a write without the password: %q", got)
	}
	if got := cli([]string{"REDISCLI_AUTH=" + password}, "set", "k", "v"); got != "OK" {
		t.Fatalf("a write with the password: %q", got)
	}
	if out, err := run("health").CombinedOutput(); err != nil {
		t.Fatalf("the stack's health check fails on a healthy redis: %v %s", err, out)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(password)) {
			t.Errorf("%s holds the password: %q", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
		if b, _ := os.ReadFile(p); bytes.HasPrefix(b, []byte("redis-server")) {
			conf := filepath.Join(filepath.Dir(p), "root", stacks.RedisConfigDir, "redis.conf")
			if fi, err := os.Stat(conf); err != nil {
				t.Errorf("redis's configuration: %v", err)
			} else if fi.Mode().Perm() != 0o400 {
				t.Errorf("redis's configuration has mode %v, want 0400", fi.Mode().Perm())
			}
		}
	}
}
