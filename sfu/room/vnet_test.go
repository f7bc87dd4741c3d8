package room

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/transport/v4/test"
	"github.com/pion/transport/v4/vnet"
	"github.com/pion/webrtc/v4"
)

// The room's tests run real pion peer connections on pion's virtual
// network: no sockets, no namespace, no root, and a link the test can cut.

// testNet is one virtual network: the server on 10.0.0.1, each client on
// its own address after it.
type testNet struct {
	t      *testing.T
	router *vnet.Router
	server *vnet.Net
	next   atomic.Int32
	// cut drops every packet while set.
	cut atomic.Bool
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	// First, so that it runs last: a closed participant, its peer
	// connections and the test's clients leave no goroutine behind.
	t.Cleanup(test.CheckRoutines(t))
	router, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: logging.NewDefaultLoggerFactory()})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNet{t: t, router: router}
	router.AddChunkFilter(func(vnet.Chunk) bool { return !n.cut.Load() })
	n.server = n.host()
	if err := router.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Stop() })
	n.next.Store(1)
	return n
}

// host adds a machine to the network (before or after Start).
func (n *testNet) host() *vnet.Net {
	ip := fmt.Sprintf("10.0.0.%d", n.next.Add(1))
	v, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.router.AddNet(v); err != nil {
		n.t.Fatal(err)
	}
	return v
}

// api makes peer connections on v, with ICE that notices a dead link in
// a second rather than pion's default five.
func testAPI(t *testing.T, v *vnet.Net) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNet(v)
	se.SetICETimeouts(time.Second, 30*time.Second, 200*time.Millisecond)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

// newTestManager is a Manager whose peer connections live on n.
func newTestManager(t *testing.T, n *testNet, cfg Config) *Manager {
	t.Helper()
	cfg.API = testAPI(t, n.server)
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	m := NewManager(cfg)
	t.Cleanup(func() {
		m.Drain()
		for _, p := range m.participants() {
			p.Close()
		}
		m.Wait()
	})
	return m
}

// testClient plays a client's part with two pion peer connections,
// answering the server's offers and trickling candidates both ways, as
// the browser client does. Every message the server sends it is kept, in
// order, and checked against the signalling order the client relies on.
type testClient struct {
	t        *testing.T
	p        *Participant
	pub, sub *webrtc.PeerConnection
	// manual: the test answers subscriber offers itself (answer) once
	// they are applied; mute: the client sends no candidates; deaf: it
	// ignores the server's (so that only its own can connect). Set
	// before it joins.
	manual, mute, deaf bool

	mu        sync.Mutex
	msgs      []signal.Message
	described map[string]bool // a description arrived for the target
	offered   bool            // a subscriber offer is unanswered
	applied   int             // subscriber offers applied
	problems  []string
	changed   chan struct{} // closed and replaced on every message
	tracks    chan *webrtc.TrackRemote
	closedBy  chan error
}

// newTestClient joins room as name; options set the client's manners
// before it joins.
func newTestClient(t *testing.T, n *testNet, m *Manager, room, name string, options ...func(*testClient)) *testClient {
	t.Helper()
	c := &testClient{t: t, described: map[string]bool{}, changed: make(chan struct{}),
		tracks: make(chan *webrtc.TrackRemote, 16), closedBy: make(chan error, 1)}
	for _, o := range options {
		o(c)
	}
	api := testAPI(t, n.host())
	var err error
	if c.pub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	if c.sub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.pub.Close(); _ = c.sub.Close() })
	c.sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { c.tracks <- tr })
	c.trickle(c.pub, signal.TargetPublisher)
	c.trickle(c.sub, signal.TargetSubscriber)
	// The sink runs on the server's goroutines and must not block, so
	// the client's part runs on its own.
	inbox, stop := make(chan signal.Message, 256), make(chan struct{})
	p, _, err := m.Join(JoinRequest{Room: room, Name: name,
		Sink: func(msg signal.Message) {
			select {
			case inbox <- msg:
			case <-stop:
			}
		},
		OnClose: func(reason error) { c.closedBy <- reason }})
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		for {
			select {
			case msg := <-inbox:
				c.handle(msg)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-handled })
	return c
}

func (c *testClient) trickle(pc *webrtc.PeerConnection, target string) {
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil || c.p == nil || c.mute {
			return
		}
		init := cand.ToJSON()
		if err := c.p.HandleCandidate(target, &signal.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}); err != nil {
			c.problem("sending a %s candidate: %v", target, err)
		}
	})
}

func (c *testClient) problem(format string, args ...any) {
	c.mu.Lock()
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

func (c *testClient) handle(msg signal.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, msg)
	close(c.changed)
	c.changed = make(chan struct{})
	switch m := msg.(type) {
	case *signal.Offer:
		if c.offered {
			c.problems = append(c.problems, "a second subscriber offer before the first was answered")
		}
		c.offered = true
		c.described[signal.TargetSubscriber] = true
	case *signal.Answer:
		c.described[signal.TargetPublisher] = true
	case *signal.Candidate:
		if !c.described[m.Target] {
			c.problems = append(c.problems, "a "+m.Target+" candidate before its description")
		}
	}
	c.mu.Unlock()
	var err error
	switch m := msg.(type) {
	case *signal.Offer:
		err = c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP})
		c.mu.Lock()
		c.applied++
		c.mu.Unlock()
		if err == nil && !c.manual {
			err = c.answer()
		}
	case *signal.Answer:
		err = c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP})
	case *signal.Candidate:
		if m.Candidate == nil || c.mute || c.deaf {
			return
		}
		pc := c.pub
		if m.Target == signal.TargetSubscriber {
			pc = c.sub
		}
		err = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid, SDPMLineIndex: m.Candidate.SDPMLineIndex})
	case *signal.ICERestart:
		if m.Target == signal.TargetPublisher {
			err = c.offer(&webrtc.OfferOptions{ICERestart: true})
		}
	}
	if err != nil {
		c.problem("handling %s: %v", msg.MessageType(), err)
	}
}

// answer answers the server's subscriber offer (applied as it came).
func (c *testClient) answer() error {
	a, err := c.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := c.sub.SetLocalDescription(a); err != nil {
		return err
	}
	c.mu.Lock()
	c.offered = false
	c.mu.Unlock()
	return c.p.HandleAnswer(a.SDP)
}

// offer offers the publisher connection, as a client does after adding
// or removing a track.
func (c *testClient) offer(opts *webrtc.OfferOptions) error {
	o, err := c.pub.CreateOffer(opts)
	if err != nil {
		return err
	}
	if err := c.pub.SetLocalDescription(o); err != nil {
		return err
	}
	return c.p.HandleOffer(o.SDP, nil)
}

// publishVP8 adds a VP8 track, offers it, waits for the answer and sends
// on it until the test ends (the server announces a track when its media
// arrives).
func (c *testClient) publishVP8(id string) *webrtc.RTPSender {
	c.t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id, "stream-"+id)
	if err != nil {
		c.t.Fatal(err)
	}
	sender, err := c.pub.AddTrack(tr)
	if err != nil {
		c.t.Fatal(err)
	}
	c.renegotiate()
	done := make(chan struct{})
	c.t.Cleanup(func() { close(done) })
	go sendUntil(tr, done)
	return sender
}

// renegotiate offers the publisher connection and waits for the answer.
func (c *testClient) renegotiate() {
	c.t.Helper()
	if err := c.offer(nil); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.pub.SignalingState() != webrtc.SignalingStateStable {
		if time.Now().After(deadline) {
			c.t.Fatal("no answer to the publisher offer")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor waits until a message the client got satisfies ok and returns
// it.
func (c *testClient) waitFor(what string, timeout time.Duration, ok func(signal.Message) bool) signal.Message {
	c.t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		c.mu.Lock()
		msgs, changed := c.msgs[seen:], c.changed
		seen = len(c.msgs)
		c.mu.Unlock()
		for _, m := range msgs {
			if ok(m) {
				return m
			}
		}
		select {
		case <-changed:
		case <-deadline:
			c.t.Fatalf("%s: no %s within %s", c.p.Name(), what, timeout)
		}
	}
}

// waitState waits for pc to reach state s.
func waitState(t *testing.T, what string, pc *webrtc.PeerConnection, s webrtc.PeerConnectionState, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pc.ConnectionState() != s {
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s after %s, want %s", what, pc.ConnectionState(), timeout, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check fails the test with what the client found out of order.
func (c *testClient) check() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		c.t.Errorf("%s: %s", c.p.Name(), p)
	}
}

var errNoClose = errors.New("not closed")

// closeReason is why the server ended the participant, or errNoClose
// after timeout.
func (c *testClient) closeReason(timeout time.Duration) error {
	select {
	case err := <-c.closedBy:
		return err
	case <-time.After(timeout):
		return errNoClose
	}
}

func manual(c *testClient) { c.manual = true }
func mute(c *testClient)   { c.mute = true }
func deaf(c *testClient)   { c.deaf = true }

// testLogger logs warnings and errors through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(b)))
	return len(b), nil
}

// vp8Keyframe is an RTP payload a VP8 depacketizer takes for the start of
// a keyframe.
var vp8Keyframe = []byte{0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0x00, 0x10, 0x00}

// sendUntil writes packets on tr every 20 ms until done is closed.
func sendUntil(tr *webrtc.TrackLocalStaticRTP, done <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for seq := uint16(0); ; seq++ {
		_ = tr.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: vp8Keyframe})
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

func isOffer(m signal.Message) bool { _, ok := m.(*signal.Offer); return ok }

// answerApplied answers the n-th subscriber offer once the client has
// applied it.
func answerApplied(c *testClient, n int) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		applied := c.applied
		c.mu.Unlock()
		if applied == n {
			return c.answer()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("offer %d not applied", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSenders waits until the server sends c's subscriber connection n
// tracks.
func waitSenders(t *testing.T, c *testClient, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		active := 0
		for _, s := range c.p.sub.GetSenders() {
			if s.Track() != nil {
				active++
			}
		}
		if active == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's subscriber connection sends %d tracks, want %d", c.p.Name(), active, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitDone(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}
