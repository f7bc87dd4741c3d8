package smoke

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
	"github.com/pion/webrtc/v4"
)

func TestMain(m *testing.M) {
	// The live run talks to a real cluster over the real network; every
	// other test (local SFU, pion clients) runs in a private namespace.
	if os.Getenv(outputsEnv) != "" {
		os.Exit(m.Run())
	}
	netns.Main(m)
}

// localSFU runs the real SFU server on the namespace's address (HTTP
// included), announcing that address as the media node's public IP, with a
// fresh UDP mux and (unless tcpPort is -1) an ICE-TCP mux.
func localSFU(t *testing.T, tcpPort int, jwtSecret []byte) (wsURL string) {
	t.Helper()
	return servertest.Start(t, netns.Addr, localSFUConfig(tcpPort, jwtSecret)).WSURL()
}

// localSFUServer is the SFU without its HTTP listener.
func localSFUServer(t *testing.T, tcpPort int, jwtSecret []byte) *server.Server {
	t.Helper()
	cfg := server.Defaults()
	cfg.ICEBind = netns.Addr
	localSFUConfig(tcpPort, jwtSecret)(&cfg)
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// localSFUConfig is what localSFU and localSFUServer change in the
// defaults besides the ICE address.
func localSFUConfig(tcpPort int, jwtSecret []byte) func(*server.Config) {
	return func(cfg *server.Config) {
		cfg.Listen = netns.Addr + ":0" // localSFU serves Handler here; localSFUServer does not use it
		cfg.ICEUDPPort = 0
		cfg.ICETCPPort = tcpPort
		cfg.PublicIPs = []string{netns.Addr}
		cfg.JWTSecret = jwtSecret
		cfg.AllowAnonymous = len(jwtSecret) == 0
	}
}

func namespaceOnly() *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.String() == netns.Addr })
	return se
}

func TestMediaCheck(t *testing.T) {
	netns.Require(t)
	secret := []byte("smoke-test-jwt-secret-0123456789")
	signed := func(room, name string) (string, error) { return auth.Sign(secret, room, name, name, time.Minute) }
	cases := []struct {
		name      string
		network   string
		sfuTCP    int // -1: the SFU has no ICE-TCP
		secret    []byte
		token     func(room, name string) (string, error)
		expectIP  string
		timeout   time.Duration
		wantErr   []string
		wantProto string
	}{
		{name: "ICE over UDP", network: "udp", sfuTCP: 0, expectIP: netns.Addr, wantProto: "udp"},
		{name: "ICE forced over TCP", network: "tcp", sfuTCP: 0, expectIP: netns.Addr, wantProto: "tcp"},
		{name: "with a signed token, as the stack requires", network: "udp", sfuTCP: 0, secret: secret, token: signed, expectIP: netns.Addr, wantProto: "udp"},
		{
			name: "a join without a token is refused", network: "udp", sfuTCP: 0, secret: secret,
			wantErr: []string{"smoke-b joining", "unauthorized"},
		},
		{
			name: "an SFU without ICE-TCP fails the TCP check", network: "tcp", sfuTCP: -1, timeout: 8 * time.Second,
			wantErr: []string{"media over ICE-tcp", "0 of 50 packets arrived within 8s"},
		},
		{
			name: "media reaching the SFU at another address than the media node's", network: "udp", sfuTCP: 0,
			expectIP: "192.0.2.7",
			wantErr:  []string{"reached the SFU at " + netns.Addr, "want the media node's public IP 192.0.2.7"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := localSFU(t, c.sfuTCP, c.secret)
			timeout := c.timeout
			if timeout == 0 {
				timeout = 20 * time.Second
			}
			res, err := MediaCheck{
				URL: url, Network: c.network, ExpectIP: c.expectIP, Token: c.token,
				SettingEngine: namespaceOnly(), Timeout: timeout,
			}.Run(context.Background())
			if len(c.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, want one containing %q (result %+v)", c.wantErr, res)
				}
				for _, want := range append([]string{url}, c.wantErr...) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Received < 50 {
				t.Errorf("received %d packets, want 50", res.Received)
			}
			for _, role := range []string{"publisher", "subscriber"} {
				p := res.Pairs[role]
				if p.Protocol != c.wantProto || p.RemoteIP != netns.Addr {
					t.Errorf("%s pair %v, want %s to %s", role, p, c.wantProto, netns.Addr)
				}
			}
		})
	}
}

func TestMediaCheckRejectsUnknownNetwork(t *testing.T) {
	_, err := MediaCheck{URL: "ws://127.0.0.1:1/ws", Network: "sctp"}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `network "sctp" is neither udp nor tcp`) {
		t.Fatalf("got %v", err)
	}
}
