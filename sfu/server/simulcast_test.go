package server_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/netns"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// simulcastSource publishes one VP8 track in three layers (rids q, h, f)
// whose packets say their layer and frame after the VP8 descriptor; each
// layer sends a keyframe every half second.
type simulcastSource struct {
	sc   *client.Simulcast
	stop chan struct{}
	done chan struct{}
}

// publishLayers publishes a track "cam" of codec as three simulcast
// layers, rids q, h and f; the caller writes their packets.
func publishLayers(t *testing.T, p *peer, codec webrtc.RTPCodecCapability) *client.Simulcast {
	t.Helper()
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, "cam", p.ID(), webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, tr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := p.PublishSimulcast(ctx, tracks...)
	if err != nil {
		t.Fatalf("publish simulcast: %v", err)
	}
	return sc
}

func publishSimulcast(t *testing.T, p *peer) *simulcastSource {
	t.Helper()
	s := &simulcastSource{sc: publishLayers(t, p, vp8Cap), stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *simulcastSource) run() {
	defer close(s.done)
	tick := time.NewTicker(33 * time.Millisecond)
	defer tick.Stop()
	for frame := uint32(0); ; frame++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		for l := range 3 {
			pic := uint16(frame+uint32(l)*1000) & 0x7fff
			vp8hdr := byte(0x01)
			if frame%15 == 0 {
				vp8hdr = 0x00 // a keyframe
			}
			payload := make([]byte, 12, 12+300*l*l+100)
			copy(payload, []byte{0x90, 0x80, 0x80 | byte(pic>>8), byte(pic), vp8hdr, byte(l)})
			binary.BigEndian.PutUint32(payload[6:], frame)
			payload = payload[:cap(payload)]
			seq := uint16(frame) + uint16(l)*20000
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: frame*3000 + uint32(l)*7777777, Marker: true}, Payload: payload}
			if err := s.sc.WriteRTP(l, pkt); err != nil && !errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}
}

// announcement waits for sub to hear of pub's track.
func announcement(t *testing.T, sub, pub *peer) *signal.TrackPublished {
	t.Helper()
	return sub.expectEvent(t, "the track's announcement", func(m signal.Message) bool {
		tp, ok := m.(*signal.TrackPublished)
		return ok && tp.ParticipantID == pub.ID()
	}).(*signal.TrackPublished)
}

func (s *simulcastSource) close() {
	close(s.stop)
	<-s.done
}

// received is what a subscriber read of a simulcast track.
type received struct {
	mu      sync.Mutex
	layer   int
	at      time.Time // the last packet's arrival
	packets []readSample
}

// readSample is one packet as read: its sequence number unwrapped, and
// for media (not padding) its timestamp and VP8 picture ID.
type readSample struct {
	seq     int64
	ts      uint32
	pic     uint16
	padding bool
}

// readSimulcast reads rt until it ends.
func readSimulcast(rt *client.RemoteTrack, r *received) {
	var last int64
	for i := 0; ; i++ {
		pkt, _, err := rt.Track.ReadRTP()
		if err != nil {
			return
		}
		seq := int64(pkt.SequenceNumber)
		if i > 0 {
			seq = last + int64(int16(pkt.SequenceNumber-uint16(last)))
		}
		last = max(last, seq)
		rp := readSample{seq: seq, ts: pkt.Timestamp, padding: len(pkt.Payload) == 0}
		r.mu.Lock()
		if !rp.padding {
			rp.pic = binary.BigEndian.Uint16(pkt.Payload[2:4]) & 0x7fff
			r.layer, r.at = int(pkt.Payload[5]), time.Now()
		}
		r.packets = append(r.packets, rp)
		r.mu.Unlock()
	}
}

func (r *received) state() (layer int, since time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.layer, time.Since(r.at)
}

// continuity checks that what was read is one stream, whatever layer
// each packet came from: in sequence-number order (a packet lost on the
// way and sent again arrives late, and a NACK may bring one twice), no
// number missing, each media packet's VP8 picture ID one more than the
// previous one's and its timestamp later.
func (r *received) continuity() error {
	r.mu.Lock()
	ps := slices.Clone(r.packets)
	r.mu.Unlock()
	slices.SortStableFunc(ps, func(a, b readSample) int { return cmp.Compare(a.seq, b.seq) })
	ps = slices.CompactFunc(ps, func(a, b readSample) bool { return a.seq == b.seq })
	var media *readSample
	for i := range ps {
		p := &ps[i]
		if i > 0 && p.seq != ps[i-1].seq+1 {
			return fmt.Errorf("sequence numbers %d to %d never arrived", ps[i-1].seq+1, p.seq-1)
		}
		if p.padding {
			continue
		}
		if media != nil {
			switch {
			case p.ts-media.ts == 0 || p.ts-media.ts > 1<<31:
				return fmt.Errorf("packet %d: timestamp %d after %d", p.seq, p.ts, media.ts)
			case p.pic != (media.pic+1)&0x7fff:
				return fmt.Errorf("packet %d: picture ID %d after %d", p.seq, p.pic, media.pic)
			}
		}
		media = p
	}
	return nil
}

// A subscriber of a simulcast track gets the highest layer its link
// carries (here all of them), the highest it asks for when it asks for
// less, nothing while it pauses the track, and the top again when it
// lifts its limits: as one continuous stream, with a layer message at
// each change.
func TestSimulcastSubscription(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	a := e.join("room", "A", nil)
	defer a.Close()
	b := e.join("room", "B", nil)
	defer b.Close()
	src := publishSimulcast(t, a)
	defer src.close()
	pub := announcement(t, b, a)
	if pub.Track.Layers != 3 {
		t.Fatalf("announced with %d layers, want 3", pub.Track.Layers)
	}
	rt := b.expectTrack(t, a.ID(), webrtc.RTPCodecTypeVideo)
	var r received
	go readSimulcast(rt, &r)

	layerEvent := func(want int, paused bool) {
		t.Helper()
		b.expectEvent(t, fmt.Sprintf("layer %d (paused %v)", want, paused), func(m signal.Message) bool {
			l, ok := m.(*signal.Layer)
			return ok && l.TrackID == pub.Track.ID && l.ParticipantID == a.ID() && l.Paused == paused && (paused || l.Layer == want)
		})
	}
	receiving := func(want int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("layer %d", want), func() bool {
			layer, since := r.state()
			return layer == want && since < 200*time.Millisecond
		})
	}
	ctx := context.Background()
	layerEvent(2, false)
	receiving(2)

	zero := 0
	if err := b.SetSubscription(ctx, a.ID(), pub.Track.ID, &zero, false); err != nil {
		t.Fatal(err)
	}
	layerEvent(0, false)
	receiving(0)
	// Nobody wants the upper layers now: the publisher hears it may stop
	// encoding them (active_layers, which the client's track shows).
	activeLayers := func(want ...bool) {
		t.Helper()
		waitFor(t, fmt.Sprintf("active layers %v at the publisher", want), func() bool {
			return slices.Equal([]bool{src.sc.Active(0), src.sc.Active(1), src.sc.Active(2)}, want)
		})
	}
	activeLayers(true, false, false)

	if err := b.SetSubscription(ctx, a.ID(), pub.Track.ID, nil, true); err != nil {
		t.Fatal(err)
	}
	layerEvent(0, true)
	time.Sleep(100 * time.Millisecond) // what was on its way
	_, since := r.state()
	time.Sleep(time.Second)
	if _, now := r.state(); now < since+900*time.Millisecond {
		t.Fatal("packets still arrive for a paused track")
	}

	if err := b.SetSubscription(ctx, a.ID(), pub.Track.ID, nil, false); err != nil {
		t.Fatal(err)
	}
	activeLayers(true, false, true) // the top one again, and the lowest always
	receiving(2)
	if err := r.continuity(); err != nil {
		t.Fatalf("not one stream across the switches: %v", err)
	}

	// A subscription to a track the subscriber does not have is refused.
	if err := b.SetSubscription(ctx, a.ID(), "nope", nil, true); err != nil {
		t.Fatal(err)
	}
	b.expectEvent(t, "an unknown_track error", func(m signal.Message) bool {
		e, ok := m.(*signal.Error)
		return ok && e.Code == signal.CodeUnknownTrack && e.Ref == signal.TypeSubscription
	})
}

// Layers of a codec the SFU cannot switch (here VP9, whose descriptor it
// does not rewrite) are not simulcast to subscribers: the top layer is
// forwarded as a track of one layer, its payloads untouched.
func TestSimulcastOfAnotherCodecForwardsTheTopLayer(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	a := e.join("room", "A", nil)
	defer a.Close()
	b := e.join("room", "B", nil)
	defer b.Close()
	vp9 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}
	sc := publishLayers(t, a, vp9)
	stop := make(chan struct{})
	defer close(stop)
	go writeLayers(sc, stop, func(l int, n uint16) []byte {
		// A VP9 descriptor's first bytes, then the layer and a counter:
		// bytes a VP8 rewrite would change.
		return []byte{0x8c, 0x90, 0x80, 0x80, byte(l), byte(n)}
	})
	pub := announcement(t, b, a)
	if pub.Track.Layers != 0 {
		t.Fatalf("a VP9 simulcast track announced with %d layers, want one", pub.Track.Layers)
	}
	rt := b.expectTrack(t, a.ID(), webrtc.RTPCodecTypeVideo)
	for i := range 20 {
		pkt := readPacket(t, rt)
		if p := pkt.Payload; len(p) != 6 || p[4] != 2 || !slices.Equal(p[:4], []byte{0x8c, 0x90, 0x80, 0x80}) {
			t.Fatalf("packet %d: payload %x, want the top layer's, untouched", i, p)
		}
	}
}

// writeLayers writes a frame of each of sc's three layers every 20 ms,
// payload(layer, frame), until stop closes.
func writeLayers(sc *client.Simulcast, stop chan struct{}, payload func(layer int, n uint16) []byte) {
	for n := uint16(0); ; n++ {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		for l := range 3 {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: n + uint16(l)*1000, Timestamp: uint32(n)*1800 + uint32(l)*5555555, Marker: true},
				Payload: payload(l, n)}
			if err := sc.WriteRTP(l, pkt); err != nil && !errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}
}

func readPacket(t *testing.T, rt *client.RemoteTrack) *rtp.Packet {
	t.Helper()
	if err := rt.Track.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	pkt, _, err := rt.Track.ReadRTP()
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// H264 layers are switched as VP8's are, at a keyframe of the layer
// switched to: the subscriber reads one stream (consecutive sequence
// numbers, growing timestamps), each packet's payload as its layer sent it.
func TestSimulcastSwitchesH264Layers(t *testing.T) {
	netns.Require(t)
	e := start(t, nil)
	defer e.close()
	a := e.join("room", "A", nil)
	defer a.Close()
	b := e.join("room", "B", nil)
	defer b.Close()
	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	sc := publishLayers(t, a, h264)
	stop := make(chan struct{})
	defer close(stop)
	go writeLayers(sc, stop, func(l int, n uint16) []byte {
		if n%15 == 0 { // SPS, PPS and an IDR slice in a STAP-A
			return []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce, 0x00, 0x03, 0x65, byte(l), byte(n)}
		}
		return []byte{0x41, 0x9a, byte(l), byte(n)}
	})
	pub := announcement(t, b, a)
	if pub.Track.Layers != 3 {
		t.Fatalf("an H264 simulcast track announced with %d layers, want 3", pub.Track.Layers)
	}
	rt := b.expectTrack(t, a.ID(), webrtc.RTPCodecTypeVideo)
	layerOf := func(p []byte) int { return int(p[len(p)-2]) }
	var last *rtp.Packet
	read := func() *rtp.Packet {
		pkt := readPacket(t, rt)
		if last != nil && (pkt.SequenceNumber != last.SequenceNumber+1 || pkt.Timestamp-last.Timestamp-1 >= 1<<31) {
			t.Fatalf("seq %d ts %d after seq %d ts %d: not one stream", pkt.SequenceNumber, pkt.Timestamp, last.SequenceNumber, last.Timestamp)
		}
		last = pkt
		return pkt
	}
	until := func(what string, ok func(*rtp.Packet) bool) {
		t.Helper()
		for range 500 {
			if ok(read()) {
				return
			}
		}
		t.Fatalf("never got %s", what)
	}
	until("the top layer", func(p *rtp.Packet) bool { return layerOf(p.Payload) == 2 })
	zero := 0
	if err := b.SetSubscription(context.Background(), a.ID(), pub.Track.ID, &zero, false); err != nil {
		t.Fatal(err)
	}
	until("the switch to the lowest layer, at its keyframe", func(p *rtp.Packet) bool {
		if layerOf(p.Payload) != 0 {
			return false
		}
		if p.Payload[0] != 0x78 {
			t.Fatalf("switched at %x, not at a keyframe", p.Payload)
		}
		return true
	})
	for range 20 {
		if p := read(); layerOf(p.Payload) != 0 {
			t.Fatalf("layer %d after the switch to 0", layerOf(p.Payload))
		}
	}
}
