package server_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Clients whose networks block UDP still connect through the ICE-TCP mux.
func TestICETCP(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	tcpOnly := func(o *client.Options) {
		se := &webrtc.SettingEngine{}
		addr := net.ParseIP(netns.Addr)
		se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(addr) })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		o.SettingEngine = se
	}
	call := e.videoCall(t, tcpOnly)
	defer call.close()
	b, src, rt := call.b, call.src, call.rt
	if err := receiveInOrder(rt, 50); err != nil {
		t.Fatal(err)
	}
	pair, err := b.Subscriber().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v %v", pair, err)
	}
	if pair.Remote.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("media went over %s, want TCP", pair.Remote.Protocol)
	}
	// The direct path serves only UDP: pion wrote these packets.
	c := e.srv.Paths()
	if c.PionSubscribers.Load() == 0 || c.DirectSubscribers.Load() != 0 {
		t.Fatalf("subscriber connections: %d through pion, %d direct; want ICE-TCP through pion", c.PionSubscribers.Load(), c.DirectSubscribers.Load())
	}
	// Nor does the fast receive path: pion read A's packets.
	if c.PionPublishers.Load() == 0 || c.FastPublishers.Load() != 0 {
		t.Fatalf("publisher connections: %d through pion, %d fast; want ICE-TCP through pion", c.PionPublishers.Load(), c.FastPublishers.Load())
	}
	src.close()
}

// With --public-ip the SFU announces that address instead of its own, and
// the join reply carries the STUN server and TURN credentials in coturn's
// REST scheme.
func TestAnnouncedAddressAndICEServers(t *testing.T) {
	netns.Require(t)
	turnSecret := []byte("turn-secret")
	e := start(t, func(c *server.Config) {
		c.PublicIPs = []string{"203.0.113.7"}
		c.STUNURLs = []string{"stun:stun.example.org:3478"}
		c.TURNURLs = []string{"turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"}
		c.TURNSecret, c.TURNTTL = turnSecret, time.Hour
	})
	defer e.close()
	r := e.raw(t)
	defer r.close()
	j := r.join("room")

	if len(j.ICEServers) != 2 || j.ICEServers[0].URLs[0] != "stun:stun.example.org:3478" || j.ICEServers[0].Username != "" {
		t.Fatalf("ICE servers %+v, want STUN then TURN", j.ICEServers)
	}
	turn := j.ICEServers[1]
	expiry, user, _ := strings.Cut(turn.Username, ":")
	if user != j.ID || len(turn.URLs) != 2 {
		t.Fatalf("TURN server %+v, want username <expiry>:%s", turn, j.ID)
	}
	n, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil {
		t.Fatalf("TURN username %q: %v", turn.Username, err)
	}
	if d := time.Until(time.Unix(n, 0)); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("TURN credentials expire in %s, want about 1h", d)
	}
	mac := hmac.New(sha1.New, turnSecret)
	mac.Write([]byte(turn.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); turn.Credential != want {
		t.Fatalf("TURN credential %q, want base64(HMAC-SHA1(secret, username)) = %q", turn.Credential, want)
	}

	r.send(`{"type":"offer","target":"publisher","sdp":` + jsonString(publishOffer(t)) + `}`)
	var sdp string
	var cands []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (sdp == "" || len(cands) == 0) {
		m, status := r.next()
		switch m := m.(type) {
		case *signal.Answer:
			sdp = m.SDP
		case *signal.Candidate:
			if m.Candidate != nil {
				cands = append(cands, m.Candidate.Candidate)
			}
		case nil:
			t.Fatalf("closed (%d)", status)
		}
	}
	all := sdp + strings.Join(cands, "\n")
	if !strings.Contains(all, "203.0.113.7") {
		t.Fatalf("the public IP is not announced; answer and candidates:\n%s", all)
	}
	if strings.Contains(all, netns.Addr+" ") {
		t.Fatalf("the local address is announced besides the public one:\n%s", all)
	}
}

// TURN credentials live only while the session keeps renewing them: every
// half lifetime the server sends fresh ones, each expiring a lifetime
// later, and stops when the session ends.
func TestTURNCredentialsRenewed(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) {
		c.TURNURLs = []string{"turn:turn.example.org:3478"}
		c.TURNSecret, c.TURNTTL = []byte("turn-secret"), 2*time.Second
	})
	defer e.close()
	r := e.raw(t)
	defer r.close()
	j := r.join("room")
	expiry := func(s []signal.ICEServer) int64 {
		t.Helper()
		if len(s) != 1 {
			t.Fatalf("ICE servers %+v, want one TURN server", s)
		}
		exp, _, _ := strings.Cut(s[0].Username, ":")
		n, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	prev := expiry(j.ICEServers)
	for i := range 2 {
		deadline := time.Now().Add(5 * time.Second)
		var renewed *signal.ICEServers
		for renewed == nil && time.Now().Before(deadline) {
			m, status := r.next()
			if m == nil {
				t.Fatalf("closed (%d) before renewal %d", status, i+1)
			}
			renewed, _ = m.(*signal.ICEServers)
		}
		if renewed == nil {
			t.Fatalf("no ice_servers renewal %d within 5 s", i+1)
		}
		n := expiry(renewed.ICEServers)
		if n < prev || time.Until(time.Unix(n, 0)) > 3*time.Second {
			t.Fatalf("renewal %d expires at %d (previous %d): want later, within the 2 s lifetime", i+1, n, prev)
		}
		prev = n
	}
}

// --ice-bind auto binds the default route's interface (in the namespace,
// v0's address): the stack sets it so that, in a Swarm task with host-mode
// ports, the SFU answers from the address the published ports deliver to.
func TestICEBindAuto(t *testing.T) {
	netns.Require(t)
	e := start(t, func(c *server.Config) { c.ICEBind = server.ICEBindAuto })
	defer e.close()
	for _, network := range []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4} {
		t.Run(network.String(), func(t *testing.T) {
			only := func(o *client.Options) {
				se := settingEngine()
				se.SetNetworkTypes([]webrtc.NetworkType{network})
				o.SettingEngine = se
			}
			a := e.join("auto-"+network.String(), "A", only)
			defer a.Close()
			b := e.join("auto-"+network.String(), "B", only)
			defer b.Close()
			src := a.publish(t, "cam", vp8Cap)
			defer src.close()
			rt := b.expectTrack(t, a.ID(), webrtc.RTPCodecTypeVideo)
			if err := receiveInOrder(rt, 20); err != nil {
				t.Fatal(err)
			}
			pair, err := b.Subscriber().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
			if err != nil || pair == nil {
				t.Fatalf("selected pair: %v %v", pair, err)
			}
			if pair.Remote.Address != netns.Addr {
				t.Fatalf("SFU candidate %s, want the default route's address %s", pair.Remote.Address, netns.Addr)
			}
		})
	}
}

// With --ice-port-range there is no single UDP port, and with
// --fast-paths=false the operator turned them off: either way neither fast
// path exists, pion reads and writes every packet, and the publisher still
// gets its feedback (here, receiver reports) through the same calls.
func TestPionPathsAlone(t *testing.T) {
	netns.Require(t)
	for _, tc := range []struct {
		name string
		mod  func(*server.Config)
	}{
		{"port range", func(c *server.Config) { c.ICEPortRange = "41000-41100" }},
		{"fast paths off", func(c *server.Config) { c.FastPaths = false }},
	} {
		t.Run(tc.name, func(t *testing.T) { pionPathsAlone(t, tc.mod) })
	}
}

func pionPathsAlone(t *testing.T, mod func(*server.Config)) {
	e := start(t, mod)
	defer e.close()
	reports := make(chan struct{}, 1)
	onRR := func(o *client.Options) {
		o.OnRTCP = func(_ string, pkts []rtcp.Packet) {
			for _, p := range pkts {
				if _, ok := p.(*rtcp.ReceiverReport); ok {
					select {
					case reports <- struct{}{}:
					default:
					}
				}
			}
		}
	}
	call := e.videoCall(t, onRR)
	defer call.close()
	if err := receiveInOrder(call.rt, 50); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reports:
	case <-time.After(10 * time.Second):
		t.Fatal("no receiver report at the publisher")
	}
	c := e.srv.Paths()
	if c.FastPublishers.Load() != 0 || c.PionPublishers.Load() == 0 || c.DirectSubscribers.Load() != 0 || c.PionSubscribers.Load() == 0 {
		t.Fatalf("publishers %d fast / %d pion, subscribers %d direct / %d pion: want all through pion",
			c.FastPublishers.Load(), c.PionPublishers.Load(), c.DirectSubscribers.Load(), c.PionSubscribers.Load())
	}
}
