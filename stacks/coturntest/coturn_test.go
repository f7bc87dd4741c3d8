// Package coturntest runs the real coturn (Debian's turnserver) with the
// configuration and start script the stack declares, in a private network
// namespace, and holds it to what the stack promises: allocations for the
// SFU's credentials, relaying to public peers only, UDP only, quotas, and
// the secret kept off command lines.
package coturntest

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/infra"
	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/internal/pulumitest"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/stacks"
	"github.com/pion/turn/v5"
)

func TestMain(m *testing.M) { netns.Main(m) }

const (
	// The TURN server's (public-looking) address, and an allowed peer's:
	// TEST-NET-2, which is in none of the denied ranges.
	serverIP  = "198.51.100.1"
	allowedIP = "198.51.100.2"
	secret    = "the-turn-rest-secret"
)

// coturn is a running turnserver and what it was started with.
type coturn struct {
	cmd    *exec.Cmd
	addr   string // host:port
	realm  string
	output *bytes.Buffer
}

// start runs the stack's coturn start script (staging's catalog) with its
// docker secret and tmpfs stood in for by a private mount namespace, whose
// /run is a fresh tmpfs.
func start(t *testing.T) *coturn {
	t.Helper()
	netns.Require(t)
	if _, err := exec.LookPath("turnserver"); err != nil {
		t.Skip("coturn is not installed (apt-get install coturn)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
	for _, a := range [][]string{{"addr", "add", serverIP + "/24", "dev", "v1"}, {"addr", "add", allowedIP + "/24", "dev", "v1"}} {
		if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil && !strings.Contains(string(out), "already assigned") {
			t.Fatalf("ip %v: %v: %s", a, err, out)
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
	svc := st.Service("coturn")
	if svc == nil || len(svc.Commands) != 3 || svc.Commands[0] != "sh" || svc.Commands[1] != "-c" {
		t.Fatalf("the stack's coturn command is not sh -c <script>: %q", svc.Commands)
	}
	wrapper := strings.Join([]string{
		"set -eu",
		"mount -t tmpfs tmpfs /run",
		"mkdir -p /run/secrets " + stacks.TURNConfigDir,
		"chmod 1777 " + stacks.TURNConfigDir,
		`printf %s "$TEST_TURN_SECRET" > /run/secrets/turn_secret`,
		"chmod 0400 /run/secrets/turn_secret",
		`exec sh -c "$TEST_TURN_SCRIPT"`,
	}, "\n")
	c := &coturn{addr: net.JoinHostPort(serverIP, strconv.Itoa(sc.TURNPort)), realm: cl.Domain, output: &bytes.Buffer{}}
	c.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", wrapper)
	c.cmd.Env = append(os.Environ(), "TEST_TURN_SECRET="+secret, "TEST_TURN_SCRIPT="+svc.Commands[2], "TURN_EXTERNAL_IP="+serverIP)
	c.cmd.Stdout, c.cmd.Stderr = c.output, c.output
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
		if t.Failed() {
			t.Logf("turnserver said:\n%s", c.output)
		}
	})
	// Ready when it answers a STUN binding request.
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl := c.client(t, "probe", time.Hour)
		_, err := cl.SendBindingRequest()
		cl.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("turnserver did not answer on %s: %v", c.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// client is a TURN client with the credentials the SFU hands user.
func (c *coturn) client(t *testing.T, user string, ttl time.Duration) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	name, pass := auth.TURNCredentials([]byte(secret), user, ttl, time.Now())
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: c.addr, TURNServerAddr: c.addr, Conn: conn,
		Username: name, Password: pass, Realm: c.realm, RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	return cl
}

// peer is a UDP socket a relay may send to.
func peer(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func receives(p *net.UDPConn, want string) bool {
	buf := make([]byte, 1500)
	_ = p.SetReadDeadline(time.Now().Add(time.Second))
	n, _, err := p.ReadFromUDP(buf)
	return err == nil && string(buf[:n]) == want
}

// An allocation with the SFU's credentials relays to a public peer, and
// is refused for every private, loopback and link-local one, the
// metadata server's included.
func TestRelaysToPublicPeersOnly(t *testing.T) {
	c := start(t)
	cl := c.client(t, "alice", time.Hour)
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocation with the SFU's credentials: %v", err)
	}
	defer relay.Close()
	ok := peer(t, allowedIP)
	if _, err := relay.WriteTo([]byte("to a public peer"), ok.LocalAddr()); err != nil {
		t.Fatalf("relaying to %s: %v", ok.LocalAddr(), err)
	}
	if !receives(ok, "to a public peer") {
		t.Fatalf("the allowed peer %s got nothing through the relay", ok.LocalAddr())
	}
	private := peer(t, netns.Addr) // 10.203.0.1: the VPC's kind of address
	for _, to := range []net.Addr{
		private.LocalAddr(),
		&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9},
		&net.UDPAddr{IP: net.ParseIP("169.254.169.254"), Port: 80},
		&net.UDPAddr{IP: net.ParseIP("172.17.0.1"), Port: 53},
		&net.UDPAddr{IP: net.ParseIP("192.168.1.1"), Port: 53},
		&net.UDPAddr{IP: net.ParseIP("100.64.0.1"), Port: 53},
		&net.UDPAddr{IP: net.ParseIP("0.0.0.1"), Port: 53},
	} {
		if err := cl.CreatePermission(to); err == nil {
			t.Errorf("coturn granted a permission to %s", to)
		}
	}
	if _, err := relay.WriteTo([]byte("to the VPC"), private.LocalAddr()); err == nil && receives(private, "to the VPC") {
		t.Fatalf("the private peer %s got data through the relay", private.LocalAddr())
	}
}

// No TCP relays; an expired credential is refused; one participant's
// credentials hold a bounded number of allocations.
func TestLimits(t *testing.T) {
	c := start(t)
	if _, err := c.client(t, "bob", time.Hour).AllocateTCP(); err == nil {
		t.Error("coturn gave a TCP relay allocation")
	}
	if _, err := c.client(t, "carol", -time.Minute).Allocate(); err == nil {
		t.Error("coturn accepted an expired credential")
	}
	var got int
	var lastErr error
	for range 12 {
		r, err := c.client(t, "dave", time.Hour).Allocate()
		if err != nil {
			lastErr = err
			break
		}
		defer r.Close()
		got++
	}
	if got == 0 || got >= 12 {
		t.Fatalf("one participant got %d allocations (last error %v), want a quota between 1 and 11", got, lastErr)
	}
	t.Logf("one participant's quota: %d allocations, then: %v", got, lastErr)
}

// The REST secret is on no command line and in a file only coturn's user
// can read, in the task's tmpfs.
func TestSecretStaysOffCommandLines(t *testing.T) {
	c := start(t)
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the TURN secret: %q", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
		if bytes.HasPrefix(b, []byte("turnserver\x00")) {
			found = true
			pid := filepath.Base(filepath.Dir(p))
			conf := filepath.Join("/proc", pid, "root", stacks.TURNConfigDir, "turnserver.conf")
			fi, err := os.Stat(conf)
			if err != nil {
				t.Fatalf("turnserver's configuration: %v", err)
			}
			if fi.Mode().Perm() != 0o400 {
				t.Errorf("turnserver's configuration has mode %v, want 0400", fi.Mode().Perm())
			}
			raw, _ := os.ReadFile(conf)
			if !bytes.Contains(raw, []byte("static-auth-secret="+secret)) || !bytes.Contains(raw, []byte("external-ip="+serverIP)) {
				t.Errorf("turnserver's configuration lacks the secret or the external address:\n%s", raw)
			}
		}
	}
	if !found {
		t.Fatalf("no turnserver process (%v)", errors.New(c.output.String()))
	}
}
