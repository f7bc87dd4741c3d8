package forward

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/racecheck"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	midURI        = "urn:ietf:params:rtp-hdrext:sdes:mid"
)

var vp8 = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	PayloadType:        96,
}

// recorder is a subscriber's write stream: it marshals every packet, as
// the SRTP writer does, and keeps the bytes when keep is set.
type recorder struct {
	keep bool
	buf  []byte
	got  []rtp.Packet
}

func (r *recorder) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n := h.MarshalSize() + len(payload) + int(h.PaddingSize)
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	n, err := (&rtp.Packet{Header: *h, Payload: payload}).MarshalTo(r.buf[:n])
	if err != nil {
		return 0, err
	}
	if r.keep {
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), r.buf[:n]...)); err != nil {
			return 0, err
		}
		r.got = append(r.got, p)
	}
	return n, nil
}

func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }

type fakeContext struct {
	codecs []webrtc.RTPCodecParameters
	exts   []webrtc.RTPHeaderExtensionParameter
	ssrc   webrtc.SSRC
	w      *recorder
}

func (c *fakeContext) CodecParameters() []webrtc.RTPCodecParameters { return c.codecs }
func (c *fakeContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	return c.exts
}
func (c *fakeContext) SSRC() webrtc.SSRC                       { return c.ssrc }
func (c *fakeContext) SSRCRetransmission() webrtc.SSRC         { return 0 }
func (c *fakeContext) SSRCForwardErrorCorrection() webrtc.SSRC { return 0 }
func (c *fakeContext) WriteStream() webrtc.TrackLocalWriter    { return c.w }
func (c *fakeContext) ID() string                              { return "ctx" }
func (c *fakeContext) RTCPReader() interceptor.RTCPReader      { return nil }

func sourcePacket(t testing.TB, seq uint16, payload []byte) []byte {
	t.Helper()
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 9000 * uint32(seq), SSRC: 0xAABBCCDD, Marker: seq%3 == 0}
	if err := h.SetExtension(3, []byte{0x1f}); err != nil { // audio level at the publisher's ID 3
		t.Fatal(err)
	}
	if err := h.SetExtension(4, []byte("0")); err != nil { // mid, must not be forwarded
		t.Fatal(err)
	}
	raw, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// bump advances raw's sequence number: the packet after it, which the
// forwarder has not seen (it forwards each packet index once).
func bump(raw []byte, by uint16) {
	binary.BigEndian.PutUint16(raw[2:4], binary.BigEndian.Uint16(raw[2:4])+by)
}

// indicesFor gives each packet of a burst the SRTP index the forwarder
// expects for it, as the fast receive path does.
func indicesFor(f *Forwarder, pkts [][]byte) []uint64 {
	out := make([]uint64, len(pkts))
	for i, raw := range pkts {
		out[i] = f.Extend(binary.BigEndian.Uint16(raw[2:4]))
	}
	return out
}

func newForwarder(keyframe func()) *Forwarder {
	return New(Config{
		Codec: vp8,
		Extensions: []webrtc.RTPHeaderExtensionParameter{
			{URI: audioLevelURI, ID: 3}, {URI: midURI, ID: 4},
		},
		RequestKeyframe:  keyframe,
		KeyframeInterval: time.Hour,
	})
}

func TestForwardRewritesPerSubscriber(t *testing.T) {
	f := newForwarder(func() {})
	subs := []struct {
		pt    webrtc.PayloadType
		ssrc  webrtc.SSRC
		extID int
	}{
		{pt: 96, ssrc: 1111, extID: 1},
		{pt: 120, ssrc: 2222, extID: 10},
		{pt: 100, ssrc: 3333, extID: 20}, // needs the two-byte profile
	}
	var ctxs []*fakeContext
	for _, s := range subs {
		c := &fakeContext{
			codecs: []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/opus"}, PayloadType: 111}, {RTPCodecCapability: vp8.RTPCodecCapability, PayloadType: s.pt}},
			exts:   []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: s.extID}, {URI: midURI, ID: 2}},
			ssrc:   s.ssrc,
			w:      &recorder{keep: true},
		}
		d := f.NewDownTrack("video1", "p-pub", nil)
		codec, err := d.Bind(c)
		if err != nil {
			t.Fatalf("bind: %v", err)
		}
		if codec.PayloadType != s.pt {
			t.Fatalf("bound payload type %d, want %d", codec.PayloadType, s.pt)
		}
		ctxs = append(ctxs, c)
	}
	var sent [][]byte
	for seq := uint16(65530); seq != 5; seq++ { // crosses the wrap
		payload := []byte(fmt.Sprintf("frame-%d", seq))
		sent = append(sent, payload)
		f.Forward(sourcePacket(t, seq, payload))
	}
	for i, c := range ctxs {
		if len(c.w.got) != len(sent) {
			t.Fatalf("subscriber %d got %d packets, want %d", i, len(c.w.got), len(sent))
		}
		for j, p := range c.w.got {
			if !bytes.Equal(p.Payload, sent[j]) {
				t.Errorf("subscriber %d packet %d payload %q, want %q", i, j, p.Payload, sent[j])
			}
			if want := uint16(65530) + uint16(j); p.SequenceNumber != want {
				t.Errorf("subscriber %d packet %d seq %d, want %d", i, j, p.SequenceNumber, want)
			}
			if p.SSRC != uint32(subs[i].ssrc) || p.PayloadType != uint8(subs[i].pt) {
				t.Errorf("subscriber %d: ssrc %d pt %d, want %d %d", i, p.SSRC, p.PayloadType, subs[i].ssrc, subs[i].pt)
			}
			if lvl := p.GetExtension(uint8(subs[i].extID)); !bytes.Equal(lvl, []byte{0x1f}) {
				t.Errorf("subscriber %d: audio level at ID %d = %v", i, subs[i].extID, lvl)
			}
			if p.GetExtension(2) != nil || p.GetExtension(4) != nil {
				t.Errorf("subscriber %d: publisher's mid was forwarded", i)
			}
		}
	}
}

func TestUnbindStopsForwarding(t *testing.T) {
	f := newForwarder(nil)
	c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: 5, w: &recorder{keep: true}}
	d := f.NewDownTrack("v", "p", nil)
	if _, err := d.Bind(c); err != nil {
		t.Fatal(err)
	}
	f.Forward(sourcePacket(t, 1, []byte("a")))
	if err := d.Unbind(c); err != nil {
		t.Fatal(err)
	}
	f.Forward(sourcePacket(t, 2, []byte("b")))
	if len(c.w.got) != 1 || f.Subscribers() != 0 {
		t.Fatalf("after unbind: %d packets written, %d subscribers; want 1, 0", len(c.w.got), f.Subscribers())
	}
}

func TestBindRejectsMissingCodec(t *testing.T) {
	f := newForwarder(nil)
	c := &fakeContext{codecs: []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "video/H264"}, PayloadType: 102}}, w: &recorder{}}
	if _, err := f.NewDownTrack("v", "p", nil).Bind(c); !errors.Is(err, ErrCodecNotNegotiated) {
		t.Fatalf("bind without VP8: err %v, want ErrCodecNotNegotiated", err)
	}
}

func TestKeyframeRequestsAreThrottled(t *testing.T) {
	n := 0
	f := newForwarder(func() { n++ })
	for range 10 {
		f.RequestKeyframe()
	}
	if n != 1 {
		t.Fatalf("10 requests within the interval sent %d PLIs, want 1", n)
	}
	audio := New(Config{Codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}}, RequestKeyframe: func() { n++ }})
	audio.RequestKeyframe()
	if n != 1 {
		t.Fatal("an audio track asked its publisher for a keyframe")
	}
}

// BenchmarkForward measures one incoming 1200-byte video packet written to
// N subscribers through pion's writer, the path of subscribers the direct
// path cannot serve (header rewritten per subscriber, marshalled by the
// fake writer, no encryption); BenchmarkDirectForward is the direct path.
func BenchmarkForward(b *testing.B) {
	// ns/op is per incoming packet: divide by N for the cost per
	// subscriber write.
	for _, n := range []int{1, 10, 50, 200} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			f := newForwarder(nil)
			for i := range n {
				c := &fakeContext{
					codecs: []webrtc.RTPCodecParameters{vp8},
					exts:   []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: 1}},
					ssrc:   webrtc.SSRC(i + 1), w: &recorder{},
				}
				if _, err := f.NewDownTrack("v", "p", nil).Bind(c); err != nil {
					b.Fatal(err)
				}
			}
			raw := sourcePacket(b, 1, bytes.Repeat([]byte{0xab}, 1200))
			b.SetBytes(int64(len(raw) * n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				bump(raw, 1)
				f.Forward(raw)
			}
		})
	}
}

// Forwarding a packet allocates nothing, however many subscribers it
// reaches: per-packet garbage is what makes a Go SFU's GC cost grow with
// load.
func TestForwardAllocatesNothing(t *testing.T) {
	racecheck.SkipAllocs(t)
	f := newForwarder(nil)
	for i := range 20 {
		c := &fakeContext{
			codecs: []webrtc.RTPCodecParameters{vp8},
			exts:   []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: 1 + i%2}},
			ssrc:   webrtc.SSRC(i + 1), w: &recorder{},
		}
		if _, err := f.NewDownTrack("v", "p", nil).Bind(c); err != nil {
			t.Fatal(err)
		}
	}
	raw := sourcePacket(t, 1, bytes.Repeat([]byte{0xab}, 1200))
	f.Forward(raw) // grow the scratch buffers once
	if n := testing.AllocsPerRun(100, func() { bump(raw, 1); f.Forward(raw) }); n != 0 {
		t.Fatalf("Forward to 20 subscribers allocated %.1f times per packet, want 0", n)
	}
}

// Every packet is observed, with its parsed header and its arrival time,
// before it is forwarded: the feedback to the publisher sees what the
// subscribers get, from either receive path.
func TestReceiveRTPObservesEachPacket(t *testing.T) {
	type seen struct {
		seq       uint16
		arrival   time.Time
		raw       int
		forwarded int // packets the subscriber had got when this one was observed
	}
	rec := &recorder{keep: true}
	var got []seen
	f := New(Config{Codec: vp8, Observe: func(raw []byte, hdr *rtp.Header, arrival time.Time) {
		got = append(got, seen{hdr.SequenceNumber, arrival, len(raw), len(rec.got)})
	}})
	d := f.NewDownTrack("v", "pub", nil)
	if _, err := d.Bind(&fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: 7, w: rec}); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1000, 0)
	ms := func(i int) time.Time { return at.Add(time.Duration(i) * time.Millisecond) }
	raw := sourcePacket(t, 5, []byte{1, 2, 3})
	f.ReceiveRTP([][]byte{raw}, []uint64{5}, []time.Time{ms(0)})
	if want := (seen{5, ms(0), len(raw), 0}); len(got) != 1 || got[0] != want {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
	// A burst: each packet observed with its own arrival, all of them
	// before the burst is forwarded; a malformed one neither observed nor
	// forwarded.
	burst := [][]byte{sourcePacket(t, 6, []byte{1}), {1, 2}, sourcePacket(t, 7, []byte{1, 2})}
	f.ReceiveRTP(burst, []uint64{6, 0, 7}, []time.Time{ms(1), ms(2), ms(3)})
	want := []seen{{5, ms(0), len(raw), 0}, {6, ms(1), len(burst[0]), 1}, {7, ms(3), len(burst[2]), 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
	if len(rec.got) != 3 || rec.got[1].SequenceNumber != 6 || rec.got[2].SequenceNumber != 7 {
		t.Fatalf("subscriber got %d packets, want 5, 6, 7 in order", len(rec.got))
	}
}

// Every packet index is forwarded once, whichever receive path delivers
// it (pion's through Forward, the fast path's through ReceiveRTP, with the
// index it authenticated): a replay on either path, from before a
// hand-over between them, or too far behind the newest, is dropped, and
// so is a packet larger than RTP over UDP can be. Indices follow the
// sequence numbers across wraps.
func TestForwardsEachIndexOnce(t *testing.T) {
	f := newForwarder(nil)
	rec := &recorder{keep: true}
	if _, err := f.NewDownTrack("v", "p", nil).Bind(&fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: 1, w: rec}); err != nil {
		t.Fatal(err)
	}
	pion := func(seq uint16) { f.Forward(sourcePacket(t, seq, []byte{byte(seq)})) }
	fast := func(seq uint16, index uint64) {
		f.ReceiveRTP([][]byte{sourcePacket(t, seq, []byte{byte(seq)})}, []uint64{index}, []time.Time{time.Now()})
	}
	pion(65534)
	pion(65535)
	pion(65534)        // a replay through pion
	fast(65535, 65535) // and through the fast path, after the hand-over
	fast(0, 1<<16)     // the wrap
	fast(1, 1<<16|1)
	pion(0)                       // the same packet through pion: its index is 1<<16 now
	fast(3, 3)                    // an index whose sequence number is right but not its cycle: too old
	fast(4, 1<<16|5)              // an index that is not the packet's
	pion(2 + rtpindex.WindowSize) // far ahead, accepted...
	pion(2)                       // ...so this one is too late
	big := sourcePacket(t, 3+rtpindex.WindowSize, make([]byte, MaxPacketSize))
	f.Forward(big)
	var got []uint16
	for _, p := range rec.got {
		got = append(got, p.SequenceNumber)
	}
	if want := []uint16{65534, 65535, 0, 1, 2 + rtpindex.WindowSize}; !slices.Equal(got, want) {
		t.Fatalf("forwarded %v, want %v", got, want)
	}
	c := f.cfg.Counters
	if c.Replayed.Load() != 6 || c.Oversize.Load() != 1 {
		t.Fatalf("Replayed %d, Oversize %d; want 6, 1", c.Replayed.Load(), c.Oversize.Load())
	}
}
