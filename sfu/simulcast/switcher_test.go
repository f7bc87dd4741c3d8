package simulcast

import (
	"github.com/jbcalling/platform/sfu/codecs"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// layer is one simulcast layer as a browser sends it: its own sequence
// numbers, clock origin and picture IDs, packets per frame growing with
// the resolution.
type layer struct {
	index   int
	seq     uint16
	ts      uint32
	pic     uint16
	tl0     uint8
	packets int
	keyNext bool // the next frame is a keyframe (a PLI arrived)
}

type sent struct {
	layer           int
	inSeq           uint16
	h               rtp.Header
	pic             uint16
	tl0             uint8
	keyframe, start bool
}

// frame is the packets of the layer's next frame: headers and payloads
// with a VP8 descriptor carrying a 15-bit picture ID and TL0PICIDX.
func (l *layer) frame(key bool) ([]rtp.Header, [][]byte) {
	var hs []rtp.Header
	var ps [][]byte
	l.pic = (l.pic + 1) & 0x7fff
	l.tl0++
	l.ts += 3000
	for i := range l.packets {
		l.seq++
		b0 := byte(0x80) // X
		if i == 0 {
			b0 |= 0x10 // S, partition 0
		}
		vp8hdr := byte(0x01) // P: interframe
		if key {
			vp8hdr = 0x00
		}
		p := []byte{b0, 0xe0, 0x80 | byte(l.pic>>8), byte(l.pic), l.tl0, 0x00, vp8hdr, 0xaa, 0xbb}
		hs = append(hs, rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: l.seq, Timestamp: l.ts, Marker: i == l.packets-1, SSRC: uint32(1000 + l.index)})
		ps = append(ps, p)
	}
	return hs, ps
}

func newLayers() []*layer {
	return []*layer{
		{index: 0, seq: 100, ts: 7_000, pic: 30000, tl0: 250, packets: 1},
		{index: 1, seq: 65500, ts: 4_000_000_000, pic: 32760, tl0: 10, packets: 2},
		{index: 2, seq: 20000, ts: 123, pic: 5, tl0: 99, packets: 3},
	}
}

// offer passes one packet through s and records what was sent.
func offer(s *Switcher, l *layer, h rtp.Header, p []byte, now time.Time, out *[]sent) Result {
	in := h.SequenceNumber
	pc := append([]byte(nil), p...)
	r := s.Packet(l.index, &h, pc, now)
	if r.WantKeyframe {
		l.keyNext = true
	}
	if r.Send {
		d, err := codecs.ParseVP8(pc)
		if err != nil {
			panic(err)
		}
		*out = append(*out, sent{layer: l.index, inSeq: in, h: h, pic: d.Picture(pc), tl0: pc[d.TL0At], keyframe: d.Keyframe, start: d.Start})
	}
	return r
}

// The subscriber sees one stream whatever the switches: sequence numbers
// one apart, time only forward, a new picture ID and TL0PICIDX per frame,
// and each switch at a keyframe of the layer switched to.
func TestSwitchesAreInvisible(t *testing.T) {
	layers := newLayers()
	s := NewSwitcher("video/VP8", 90000)
	start := time.Unix(1000, 0)
	plan := map[int]int{0: 0, 15: 2, 45: 1, 66: Paused, 75: 0, 90: 2}
	var out []sent
	var switches []int
	for f := range 120 { // 4 s at 30 fps
		if target, ok := plan[f]; ok {
			s.SetTarget(target)
		}
		now := start.Add(time.Duration(f) * time.Second / 30)
		for _, l := range layers {
			key := l.keyNext || f%60 == 0
			l.keyNext = false
			hs, ps := l.frame(key)
			for i := range hs {
				if r := offer(s, l, hs[i], ps[i], now, &out); r.Switched {
					switches = append(switches, l.index)
				}
			}
		}
	}
	if want := []int{0, 2, 1, 0, 2}; !equal(switches, want) {
		t.Fatalf("switched to %v, want %v", switches, want)
	}
	for i := 1; i < len(out); i++ {
		a, b := out[i-1], out[i]
		if b.h.SequenceNumber != a.h.SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, b.h.SequenceNumber, a.h.SequenceNumber)
		}
		newFrame := b.start
		switch {
		case newFrame && (b.h.Timestamp == a.h.Timestamp || b.h.Timestamp-a.h.Timestamp > 1<<31):
			t.Fatalf("packet %d: a new frame at timestamp %d after %d", i, b.h.Timestamp, a.h.Timestamp)
		case !newFrame && b.h.Timestamp != a.h.Timestamp:
			t.Fatalf("packet %d: timestamp changed inside a frame", i)
		case newFrame && (b.pic != (a.pic+1)&0x7fff || b.tl0 != a.tl0+1):
			t.Fatalf("packet %d: picture %d tl0 %d after %d %d", i, b.pic, b.tl0, a.pic, a.tl0)
		case b.layer != a.layer && (!b.keyframe || !b.start):
			t.Fatalf("packet %d: switched from layer %d to %d on a packet that does not start a keyframe", i, a.layer, b.layer)
		}
	}
	// While paused (frames 66-74) nothing was sent.
	for _, o := range out {
		if o.layer != 0 && o.layer != 1 && o.layer != 2 {
			t.Fatalf("sent layer %d", o.layer)
		}
	}
	if s.Current() != 2 {
		t.Errorf("current layer %d, want 2", s.Current())
	}
}

// Asked for another layer, the subscriber keeps the one it has until the
// new one's keyframe; meanwhile the switcher asks for that keyframe.
func TestSwitchWaitsForAKeyframe(t *testing.T) {
	layers := newLayers()
	low, high := layers[0], layers[2]
	s := NewSwitcher("video/VP8", 90000)
	s.SetTarget(0)
	now := time.Unix(1000, 0)
	var out []sent
	hs, ps := low.frame(true)
	if r := offer(s, low, hs[0], ps[0], now, &out); !r.Send || !r.Switched {
		t.Fatalf("the first keyframe of the target: %+v", r)
	}
	s.SetTarget(2)
	for f := range 5 {
		now = now.Add(33 * time.Millisecond)
		hs, ps := high.frame(false)
		for i := range hs {
			if r := offer(s, high, hs[i], ps[i], now, &out); r.Send || !r.WantKeyframe {
				t.Fatalf("frame %d of the target before its keyframe: %+v, want dropped and a keyframe asked for", f, r)
			}
		}
		hs, ps = low.frame(false)
		if r := offer(s, low, hs[0], ps[0], now, &out); !r.Send {
			t.Fatalf("frame %d of the current layer while waiting: %+v, want it sent", f, r)
		}
	}
	hs, ps = high.frame(true)
	if r := offer(s, high, hs[0], ps[0], now, &out); !r.Send || !r.Switched {
		t.Fatalf("the target's keyframe: %+v", r)
	}
	hs, ps = low.frame(true)
	if r := offer(s, low, hs[0], ps[0], now, &out); r.Send || r.WantKeyframe {
		t.Fatalf("the old layer after the switch: %+v, want dropped, no keyframe asked", r)
	}
	if s.Current() != 2 || len(out) != 7 {
		t.Fatalf("current %d, %d sent; want 2, 7", s.Current(), len(out))
	}
}

// Loss and reordering around a switch: a lost packet leaves the same gap
// (the subscriber asks for it again); a packet of the old layer or one of
// the new layer from before the keyframe, arriving late, is not sent;
// packets reordered after the switch keep their places.
func TestLossAndReorderingAroundASwitch(t *testing.T) {
	layers := newLayers()
	low, mid := layers[0], layers[1]
	s := NewSwitcher("video/VP8", 90000)
	s.SetTarget(0)
	now := time.Unix(1000, 0)
	var out []sent
	hs, ps := low.frame(true)
	offer(s, low, hs[0], ps[0], now, &out)
	lostH, lostP := low.frame(false) // lost for now
	hs, ps = low.frame(false)
	offer(s, low, hs[0], ps[0], now, &out)
	if gap := out[1].h.SequenceNumber - out[0].h.SequenceNumber; gap != 2 {
		t.Fatalf("a lost packet left a gap of %d, want 2", gap)
	}
	// The lost one arrives late, before any switch: it takes its place.
	offer(s, low, lostH[0], lostP[0], now, &out)
	if got := out[2].h.SequenceNumber; got != out[0].h.SequenceNumber+1 {
		t.Fatalf("the late packet went out as %d, want %d", got, out[0].h.SequenceNumber+1)
	}

	s.SetTarget(1)
	early, earlyP := mid.frame(false) // sent by the publisher before its keyframe, arrives after it
	keyH, keyP := mid.frame(true)
	offer(s, mid, keyH[0], keyP[0], now, &out) // the keyframe's first packet: the switch
	if out[len(out)-1].layer != 1 {
		t.Fatal("no switch on the keyframe's first packet")
	}
	before := len(out)
	offer(s, mid, early[1], earlyP[1], now, &out)
	oldH, oldP := low.frame(false)
	offer(s, low, oldH[0], oldP[0], now, &out)
	if len(out) != before {
		t.Fatalf("sent %d late packets from before the switch, want none", len(out)-before)
	}
	next, nextP := mid.frame(false)
	offer(s, mid, next[1], nextP[1], now, &out) // reordered: second packet first
	offer(s, mid, keyH[1], keyP[1], now, &out)
	offer(s, mid, next[0], nextP[0], now, &out)
	key0 := out[before-1].h.SequenceNumber
	for i, want := range []uint16{key0 + 3, key0 + 1, key0 + 2} {
		if got := out[before+i].h.SequenceNumber; got != want {
			t.Errorf("reordered packet %d went out as %d, want %d", i, got, want)
		}
	}
}

// A truncated or empty payload is dropped, never read past its end.
func TestBadDescriptorsAreDropped(t *testing.T) {
	s := NewSwitcher("video/VP8", 90000)
	s.SetTarget(0)
	for _, p := range [][]byte{nil, {0x80}, {0x90, 0x80}, {0x90, 0x80, 0x80}, {0x90, 0x40}, {0x90, 0x20}} {
		h := rtp.Header{SequenceNumber: 1}
		if r := s.Packet(0, &h, p, time.Now()); r.Send {
			t.Errorf("%x: sent", p)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Padding (a browser's probe on the media stream, no payload) of the
// current layer is sent on with its sequence number in the stream, else
// the subscriber would count it lost; of another layer it is dropped, and
// it is never a switch point.
func TestPaddingOfTheCurrentLayerIsSent(t *testing.T) {
	s := NewSwitcher("video/VP8", 90000)
	now := time.Unix(0, 0)
	l0, l1 := &layer{index: 0, seq: 10, packets: 1}, &layer{index: 1, seq: 500, packets: 1}
	s.SetTarget(0)
	hs, ps := l0.frame(true)
	if r := s.Packet(0, &hs[0], ps[0], now); !r.Send {
		t.Fatal("keyframe not sent")
	}
	first := hs[0]
	l0.seq++
	pad := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: l0.seq, Timestamp: l0.ts, Padding: true, SSRC: 1000}
	if r := s.Packet(0, &pad, nil, now); !r.Send || r.Switched {
		t.Fatalf("padding of the current layer: %+v, want sent", r)
	}
	if pad.SequenceNumber != first.SequenceNumber+1 || pad.Timestamp != first.Timestamp {
		t.Fatalf("padding rewritten to seq %d ts %d after seq %d ts %d", pad.SequenceNumber, pad.Timestamp, first.SequenceNumber, first.Timestamp)
	}
	s.SetTarget(1)
	l1.seq++
	other := rtp.Header{Version: 2, SequenceNumber: l1.seq, Padding: true, SSRC: 1001}
	if r := s.Packet(1, &other, nil, now); r.Send || r.Switched {
		t.Fatalf("padding of the target layer: %+v, want dropped", r)
	}
	if s.Current() != 0 {
		t.Fatalf("switched on padding to %d", s.Current())
	}
}

// An H264 track switches at an IDR of the layer switched to (the first
// packet of a keyframe: SPS, PPS and IDR in a STAP-A), sequence numbers
// and timestamps continuing, payloads untouched (H264 carries no picture
// numbers); retransmissions get the timestamp alone rewritten.
func TestSwitchesH264AtKeyframes(t *testing.T) {
	s := NewSwitcher("video/H264", 90000)
	now := time.Unix(1000, 0)
	type pkt struct {
		layer int
		h     rtp.Header
		p     []byte
	}
	seq, ts := [2]uint16{100, 60000}, [2]uint32{5000, 3_000_000_000}
	frame := func(layer int, key bool) pkt {
		seq[layer]++
		ts[layer] += 3000
		p := []byte{0x41, 0x9a, byte(layer)} // a non-IDR slice
		if key {
			p = []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce, 0x00, 0x02, 0x65, byte(layer)} // STAP-A: SPS, PPS, IDR
		}
		return pkt{layer, rtp.Header{Version: 2, SequenceNumber: seq[layer], Timestamp: ts[layer]}, p}
	}
	var out []pkt
	offer := func(in pkt) Result {
		now = now.Add(10 * time.Millisecond)
		p := append([]byte(nil), in.p...)
		r := s.Packet(in.layer, &in.h, p, now)
		if r.Send {
			if string(p) != string(in.p) {
				t.Fatalf("payload rewritten: %x, was %x", p, in.p)
			}
			out = append(out, pkt{in.layer, in.h, p})
		}
		return r
	}
	s.SetTarget(0)
	if r := offer(frame(0, false)); r.Send || !r.WantKeyframe {
		t.Fatalf("a delta frame before any keyframe: %+v", r)
	}
	if r := offer(frame(0, true)); !r.Send || !r.Switched {
		t.Fatalf("layer 0's keyframe: %+v", r)
	}
	offer(frame(0, false))
	s.SetTarget(1)
	if r := offer(frame(1, false)); r.Send || !r.WantKeyframe {
		t.Fatalf("the target's delta frame: %+v", r)
	}
	offer(frame(0, false)) // the current layer goes on meanwhile
	if r := offer(frame(1, true)); !r.Switched {
		t.Fatalf("the target's keyframe: %+v", r)
	}
	offer(frame(0, false)) // the old layer no more
	offer(frame(1, false))
	if len(out) != 5 || out[3].layer != 1 || out[2].layer != 0 {
		t.Fatalf("sent %d packets", len(out))
	}
	for i := 1; i < len(out); i++ {
		if out[i].h.SequenceNumber != out[i-1].h.SequenceNumber+1 || out[i].h.Timestamp-out[i-1].h.Timestamp-1 >= 1<<31 {
			t.Fatalf("packet %d: seq %d ts %d after seq %d ts %d", i, out[i].h.SequenceNumber, out[i].h.Timestamp,
				out[i-1].h.SequenceNumber, out[i-1].h.Timestamp)
		}
	}
	off := s.Offsets()
	re := frame(1, false)
	h, p := re.h, append([]byte(nil), re.p...)
	Rewrite(off, &h, p)
	if off.VP8 || h.Timestamp != re.h.Timestamp+off.TS || string(p) != string(re.p) {
		t.Fatalf("a retransmission: ts %d (offset %d), payload %x", h.Timestamp, off.TS, p)
	}
	if r := offer(pkt{1, rtp.Header{Version: 2, SequenceNumber: seq[1] + 1, Timestamp: ts[1]}, nil}); !r.Send {
		t.Fatal("padding of the current layer not sent on")
	}
}
