package forward

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/racecheck"
	"github.com/jbcalling/platform/sfu/simulcast"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// simTrack is a publisher's simulcast track: three layers, each its own
// SSRC, sequence numbers, timestamps and VP8 picture IDs.
type simTrack struct {
	t      testing.TB
	layers *Layers
	fwds   [simulcast.MaxLayers]*Forwarder
	seq    [simulcast.MaxLayers]uint16
	ts     [simulcast.MaxLayers]uint32
	pic    [simulcast.MaxLayers]uint16
	asked  [simulcast.MaxLayers]int // keyframe requests per layer
}

func newSimTrack(t testing.TB) *simTrack {
	s := &simTrack{t: t, layers: NewLayers()}
	for l := range simulcast.MaxLayers {
		s.seq[l], s.ts[l], s.pic[l] = uint16(1000*l+65000), uint32(l)*1_000_000_000, uint16(100*l)
		s.fwds[l] = New(Config{
			Codec:            vp8,
			Extensions:       []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: 3}},
			RequestKeyframe:  func() { s.asked[l]++ },
			KeyframeInterval: time.Millisecond,
		})
		s.layers.Set(l, s.fwds[l])
	}
	return s
}

// frame sends one frame of layer in one packet; the payload names the
// layer and the frame (after the 4-byte descriptor with a 15-bit picture
// ID, and the VP8 header whose low bit says inter frame).
func (s *simTrack) frame(layer int, key bool) {
	s.t.Helper()
	pic := s.pic[layer]
	vp8hdr := byte(0x01)
	if key {
		vp8hdr = 0x00
	}
	payload := []byte{0x90, 0x80, 0x80 | byte(pic>>8), byte(pic), vp8hdr, byte(layer), byte(pic)}
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: s.seq[layer], Timestamp: s.ts[layer], SSRC: uint32(100 + layer), Marker: true}
	raw, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	s.fwds[layer].Forward(raw)
	s.seq[layer]++
	s.ts[layer] += 3000
	s.pic[layer] = (pic + 1) & 0x7fff
}

// round sends one frame of every layer, keyframes where key says.
func (s *simTrack) round(key ...int) {
	for l := range simulcast.MaxLayers {
		s.frame(l, bytesContain(key, l))
	}
}

func bytesContain(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func bindSim(t testing.TB, s *simTrack, ssrc webrtc.SSRC) (*DownTrack, *recorder) {
	t.Helper()
	r := &recorder{keep: true}
	d := s.layers.NewDownTrack("v", "p", nil)
	c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: ssrc, w: r,
		exts: []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: 5}}}
	if _, err := d.Bind(c); err != nil {
		t.Fatal(err)
	}
	return d, r
}

// A subscriber of a simulcast track receives one layer at a time: nothing
// while paused, the layer asked for from its keyframe on (asked for), the
// old layer until the new one's keyframe, and always one stream:
// consecutive sequence numbers, timestamps that only grow, picture IDs
// that follow on, on its own SSRC.
func TestSimulcastSubscriberSwitchesLayersAtKeyframes(t *testing.T) {
	s := newSimTrack(t)
	d, r := bindSim(t, s, 77)
	s.round(0, 1, 2)
	if len(r.got) != 0 || d.Layer() != simulcast.Paused {
		t.Fatalf("paused subscriber got %d packets, layer %d", len(r.got), d.Layer())
	}
	d.SetTarget(0)
	if s.asked[0] == 0 {
		t.Fatal("no keyframe asked of layer 0 for the new target")
	}
	s.round()      // no keyframe: nothing yet
	s.round(0)     // layer 0's keyframe: from here
	s.round()      // layer 0
	d.SetTarget(2) // up: layer 0 until layer 2's keyframe
	time.Sleep(2 * time.Millisecond)
	s.round()
	s.round(2)
	s.round()
	d.SetTarget(1) // down
	s.round(1)
	s.round()
	if d.Layer() != 1 {
		t.Fatalf("layer %d after switching down, want 1", d.Layer())
	}
	// In a round the layers come lowest first: layer 0's frame goes out
	// before layer 2's keyframe switches.
	wantLayers := []byte{0, 0, 0, 0, 2, 2, 1, 1}
	if len(r.got) != len(wantLayers) {
		t.Fatalf("got %d packets, want %d", len(r.got), len(wantLayers))
	}
	for i, p := range r.got {
		if p.Payload[5] != wantLayers[i] {
			t.Errorf("packet %d from layer %d, want %d", i, p.Payload[5], wantLayers[i])
		}
		if p.SSRC != 77 {
			t.Errorf("packet %d on SSRC %d, want 77", i, p.SSRC)
		}
		if i == 0 {
			continue
		}
		prev := r.got[i-1]
		if p.SequenceNumber != prev.SequenceNumber+1 {
			t.Errorf("packet %d seq %d after %d", i, p.SequenceNumber, prev.SequenceNumber)
		}
		if dt := p.Timestamp - prev.Timestamp; dt == 0 || dt > 1<<31 {
			t.Errorf("packet %d timestamp %d after %d", i, p.Timestamp, prev.Timestamp)
		}
		pic := binary.BigEndian.Uint16(p.Payload[2:4]) & 0x7fff
		prevPic := binary.BigEndian.Uint16(prev.Payload[2:4]) & 0x7fff
		if pic != (prevPic+1)&0x7fff {
			t.Errorf("packet %d picture ID %d after %d", i, pic, prevPic)
		}
	}
	// Only the current layer feeds it now.
	for l, f := range s.fwds {
		if want := map[bool]int{true: 1, false: 0}[l == 1]; f.Subscribers() != want {
			t.Errorf("layer %d has %d subscribers, want %d", l, f.Subscribers(), want)
		}
	}
	d.SetTarget(simulcast.Paused)
	s.round(0, 1, 2)
	if len(r.got) != len(wantLayers) {
		t.Fatal("a paused subscriber still receives")
	}
	d.Close()
	for l, f := range s.fwds {
		if f.Subscribers() != 0 {
			t.Errorf("closed: layer %d has %d subscribers", l, f.Subscribers())
		}
	}
}

// A NACK for a packet sent before a switch is answered with the bytes
// first sent under its sequence number, from its own layer's history,
// rewritten as it was.
func TestSimulcastResendCarriesWhatWasSent(t *testing.T) {
	s := newSimTrack(t)
	d, r := bindSim(t, s, 88)
	d.SetTarget(0)
	s.round(0)
	s.round()
	d.SetTarget(2)
	s.round(2)
	s.round()
	if len(r.got) != 5 {
		t.Fatalf("got %d packets, want 5", len(r.got))
	}
	first := append([]rtp.Packet(nil), r.got...)
	r.got = nil
	var seqs []uint16
	for _, p := range first {
		seqs = append(seqs, p.SequenceNumber)
	}
	if n := d.Resend(&rtcp.TransportLayerNack{Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}, nil); n != 5 {
		t.Fatalf("resent %d, want 5", n)
	}
	for i, p := range r.got {
		o := first[i]
		if p.SequenceNumber != o.SequenceNumber || p.Timestamp != o.Timestamp || !bytes.Equal(p.Payload, o.Payload) {
			t.Errorf("resent %d: seq %d ts %d payload %x; first sent seq %d ts %d payload %x",
				i, p.SequenceNumber, p.Timestamp, p.Payload, o.SequenceNumber, o.Timestamp, o.Payload)
		}
	}
}

// Two subscribers of one track at different layers each get theirs; the
// sender report follows the output's clock.
func TestSimulcastSubscribersAtDifferentLayers(t *testing.T) {
	s := newSimTrack(t)
	low, rl := bindSim(t, s, 1)
	high, rh := bindSim(t, s, 2)
	low.SetTarget(0)
	high.SetTarget(2)
	s.round(0, 1, 2)
	s.round()
	for name, c := range map[string]struct {
		r     *recorder
		layer byte
	}{"low": {rl, 0}, "high": {rh, 2}} {
		if len(c.r.got) != 2 || c.r.got[0].Payload[5] != c.layer || c.r.got[1].Payload[5] != c.layer {
			t.Errorf("%s subscriber: %d packets, want 2 of layer %d", name, len(c.r.got), c.layer)
		}
	}
	sr, ok := high.SenderReport(time.Now())
	if !ok || sr.SSRC != 2 || sr.PacketCount != 2 {
		t.Fatalf("sender report %+v ok %v", sr, ok)
	}
	if d := sr.RTPTime - rh.got[1].Timestamp; d > 90000 {
		t.Fatalf("sender report RTP time %d, %d ticks after the last packet's", sr.RTPTime, d)
	}
}

// Forwarding a simulcast layer to direct subscribers allocates nothing.
func TestSimulcastDirectForwardAllocatesNothing(t *testing.T) {
	racecheck.SkipAllocs(t)
	s := newSimTrack(t)
	sock := newTestSocket(t)
	peer := newDirectPeer(t, sock)
	peer.drain()
	for i := range 20 {
		d, _ := bindSim(t, s, webrtc.SSRC(i+1))
		d.SetDirect(peer.conn.NewStream())
		d.SetTarget(2)
	}
	s.frame(2, true)
	raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: s.seq[2], Timestamp: s.ts[2], SSRC: 102},
		Payload: append([]byte{0x90, 0x80, 0x80, 0x01, 0x01}, bytes.Repeat([]byte{0xab}, 1100)...)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	forward := func() {
		s.fwds[2].Forward(raw)
		bump(raw, 1)
		raw[7]++ // the next frame: timestamps grow
	}
	forward()
	if n := testing.AllocsPerRun(100, forward); n != 0 {
		t.Fatalf("a layer's packet to 20 direct subscribers allocated %.1f times, want 0", n)
	}
	if got := s.fwds[2].Subscribers(); got != 20 {
		t.Fatalf("layer 2 has %d subscribers, want 20", got)
	}
}

// BenchmarkSimulcastForward compares a copy to a subscriber of one layer
// of a simulcast track (its switcher, rewrite and scratch) with a copy to
// a subscriber of a single-layer track, on the direct path, n
// subscribers, packets forwarded one at a time.
func BenchmarkSimulcastForward(b *testing.B) {
	for _, n := range []int{3, 100} {
		for _, sim := range []bool{false, true} {
			b.Run(fmt.Sprintf("subscribers=%d/simulcast=%v", n, sim), func(b *testing.B) {
				sock := newTestSocket(b)
				s := newSimTrack(b)
				f := s.fwds[2]
				if !sim {
					f = newForwarder(nil)
				}
				for i := range n {
					peer := newDirectPeer(b, sock)
					peer.drain()
					var d *DownTrack
					if sim {
						d, _ = bindSim(b, s, webrtc.SSRC(i+1))
						d.SetTarget(2)
					} else {
						d, _ = bindRecorder(b, f, webrtc.SSRC(i+1))
					}
					d.SetDirect(peer.conn.NewStream())
				}
				payload := append([]byte{0x90, 0x80, 0x80, 0x01, 0x00}, bytes.Repeat([]byte{0xab}, 1100)...) // a keyframe's first packet
				raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 1, SSRC: 102}, Payload: payload}).Marshal()
				if err != nil {
					b.Fatal(err)
				}
				f.Forward(raw)
				raw[len(raw)-len(payload)+4] = 0x01 // then inter frames
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.ReportAllocs()
				for b.Loop() {
					bump(raw, 1)
					raw[7]++
					f.Forward(raw)
				}
				if f.Subscribers() != n {
					b.Fatalf("%d subscribers, want %d", f.Subscribers(), n)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/copy")
			})
		}
	}
}
