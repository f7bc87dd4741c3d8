package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestMain(m *testing.M) { netns.Main(m) }

// env is one SFU on loopback inside the test's network namespace.
type env struct {
	t   *testing.T
	sfu *servertest.SFU
	srv *server.Server
	hs  *httptest.Server
	url string // ws://…/ws
}

func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SFU_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return servertest.Logger(t, level)
}

func start(t *testing.T, mod func(*server.Config)) *env {
	t.Helper()
	s := servertest.Start(t, netns.Addr, func(cfg *server.Config) {
		cfg.ICETCPPort = 0
		cfg.Logger = testLogger(t)
		if mod != nil {
			mod(cfg)
		}
	})
	return &env{t: t, sfu: s, srv: s.Server, hs: s.HTTP, url: s.WSURL()}
}

// close drains the SFU (ending every session), then stops HTTP and ICE.
// Tests call it before their routine-leak check runs.
func (e *env) close() { e.sfu.Close() }

// get fetches path without keeping the connection (CheckRoutines counts
// idle keep-alive goroutines as leaks).
func (e *env) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get(e.hs.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// settingEngine keeps pion on the namespace's veth address.
func settingEngine() *webrtc.SettingEngine {
	se := &webrtc.SettingEngine{}
	addr := net.ParseIP(netns.Addr)
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(addr) })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// peer is a test participant that records what it receives.
type peer struct {
	*client.Client
	tracks chan *client.RemoteTrack
	events chan signal.Message

	mu   sync.Mutex
	plis map[string]int // local track id → PLIs received
}

func (e *env) join(room, name string, mod func(*client.Options)) *peer {
	e.t.Helper()
	p, err := e.dial(room, name, mod)
	if err != nil {
		e.t.Fatalf("%s joins %s: %v", name, room, err)
	}
	return p
}

func (e *env) dial(room, name string, mod func(*client.Options)) (*peer, error) {
	p := &peer{tracks: make(chan *client.RemoteTrack, 16), events: make(chan signal.Message, 256), plis: map[string]int{}}
	opts := client.Options{
		Room: room, Name: name, SettingEngine: settingEngine(),
		OnTrack: func(t *client.RemoteTrack) { p.tracks <- t },
		OnEvent: func(m signal.Message) {
			select {
			case p.events <- m:
			default:
			}
		},
		OnRTCP: func(id string, pkts []rtcp.Packet) {
			for _, pkt := range pkts {
				if _, ok := pkt.(*rtcp.PictureLossIndication); ok {
					p.mu.Lock()
					p.plis[id]++
					p.mu.Unlock()
				}
			}
		},
	}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, e.url, opts)
	if err != nil {
		return nil, err
	}
	p.Client = c
	return p, nil
}

func (p *peer) pliCount(track string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plis[track]
}

// source publishes numbered packets on a local track until stopped.
type source struct {
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	stop   chan struct{}
	done   chan struct{}
}

var (
	vp8Cap  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	opusCap = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
)

// publishTrack publishes a local track and returns it with its sender;
// the caller writes the packets.
func (p *peer) publishTrack(t *testing.T, id string, codec webrtc.RTPCodecCapability) (*webrtc.TrackLocalStaticRTP, *webrtc.RTPSender) {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(codec, id, p.ID())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	senders, err := p.Publish(ctx, tr)
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	return tr, senders[0]
}

// publish publishes a track that sends numbered packets until closed.
func (p *peer) publish(t *testing.T, id string, codec webrtc.RTPCodecCapability) *source {
	t.Helper()
	tr, sender := p.publishTrack(t, id, codec)
	s := &source{track: tr, sender: sender, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// payloadFor is packet n's payload: the counter, then bytes derived from
// it, so a subscriber can check that each packet arrived intact.
func payloadFor(n uint32) []byte {
	b := make([]byte, 4, 204)
	binary.BigEndian.PutUint32(b, n)
	for i := range 200 {
		b = append(b, byte(n)+byte(i*7))
	}
	return b
}

func (s *source) run() {
	defer close(s.done)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for n := uint32(1); ; n++ {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: n * 3000, Marker: true}, Payload: payloadFor(n)}
		if err := s.track.WriteRTP(pkt); err != nil && !errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

func (s *source) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// expectTrack waits for a remote track from publisher.
func (p *peer) expectTrack(t *testing.T, publisher string, kind webrtc.RTPCodecType) *client.RemoteTrack {
	t.Helper()
	select {
	case rt := <-p.tracks:
		if rt.ParticipantID != publisher || rt.Kind != kind {
			t.Fatalf("got %s track from %q, want %s from %q", rt.Kind, rt.ParticipantID, kind, publisher)
		}
		return rt
	case <-time.After(15 * time.Second):
		t.Fatalf("no %s track from %s", kind, publisher)
	}
	return nil
}

// receiveInOrder reads n packets and checks each is intact and newer than
// the one before.
func receiveInOrder(rt *client.RemoteTrack, n int) error {
	var last uint32
	for i := range n {
		if err := rt.Track.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		pkt, _, err := rt.Track.ReadRTP()
		if err != nil {
			return fmt.Errorf("packet %d: %w", i, err)
		}
		if len(pkt.Payload) < 4 {
			return fmt.Errorf("packet %d: payload of %d bytes", i, len(pkt.Payload))
		}
		c := binary.BigEndian.Uint32(pkt.Payload)
		if !bytes.Equal(pkt.Payload, payloadFor(c)) {
			return fmt.Errorf("packet %d (counter %d): payload corrupted", i, c)
		}
		if pkt.SequenceNumber != uint16(c) {
			return fmt.Errorf("packet %d: sequence number %d, counter %d", i, pkt.SequenceNumber, c)
		}
		if c <= last {
			return fmt.Errorf("packet %d: counter %d after %d: out of order", i, c, last)
		}
		last = c
	}
	return nil
}

// receiveFlowing reads n packets, each intact, whose newest counter keeps
// growing: after a disruption, retransmissions of what was lost may
// arrive among the new packets.
func receiveFlowing(rt *client.RemoteTrack, n int) error {
	var first, newest uint32
	for i := range n {
		if err := rt.Track.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		pkt, _, err := rt.Track.ReadRTP()
		if err != nil {
			return fmt.Errorf("packet %d: %w", i, err)
		}
		if len(pkt.Payload) < 4 {
			return fmt.Errorf("packet %d: payload of %d bytes", i, len(pkt.Payload))
		}
		c := binary.BigEndian.Uint32(pkt.Payload)
		if !bytes.Equal(pkt.Payload, payloadFor(c)) || pkt.SequenceNumber != uint16(c) {
			return fmt.Errorf("packet %d (counter %d): corrupted", i, c)
		}
		if i == 0 {
			first = c
		}
		newest = max(newest, c)
	}
	if int(newest-first) < n/2 {
		return fmt.Errorf("%d packets advanced the stream only from %d to %d", n, first, newest)
	}
	return nil
}

// drainTrack reads until the track ends, for tests that only need it
// consumed.
func drainTrack(rt *client.RemoteTrack) {
	for {
		if _, _, err := rt.Track.ReadRTP(); err != nil {
			return
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectEvent waits for an event matching match, skipping others.
func (p *peer) expectEvent(t *testing.T, what string, match func(signal.Message) bool) signal.Message {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-p.events:
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("%s: no %s", p.ID(), what)
			return nil
		}
	}
}

// videoCall is the setup most media tests share: A publishes a VP8 track
// in "room" and B receives it; mod, if set, configures both clients.
// Close it (deferred) before the env.
type videoCall struct {
	a, b *peer
	src  *source
	rt   *client.RemoteTrack
}

func (e *env) videoCall(t *testing.T, mod func(*client.Options)) *videoCall {
	t.Helper()
	c := &videoCall{a: e.join("room", "A", mod)}
	c.b = e.join("room", "B", mod)
	c.src = c.a.publish(t, "cam", vp8Cap)
	c.rt = c.b.expectTrack(t, c.a.ID(), webrtc.RTPCodecTypeVideo)
	return c
}

func (c *videoCall) close() {
	c.src.close()
	c.b.Close()
	c.a.Close()
}
