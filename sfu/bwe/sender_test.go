package bwe

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// header marshals an RTP header with the given extensions (one-byte IDs
// below 15, two-byte from 15).
func header(t *testing.T, exts map[uint8][]byte) []byte {
	t.Helper()
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, SSRC: 5, CSRC: []uint32{7}}
	h.Extension, h.ExtensionProfile = true, rtp.ExtensionProfileOneByte
	for id := range exts {
		if id > 14 {
			h.ExtensionProfile = rtp.ExtensionProfileTwoByte
		}
	}
	for _, id := range []uint8{1, 3, 5, 15, 20} {
		if p, ok := exts[id]; ok {
			if err := h.SetExtension(id, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStampWritesTheNumberIntoTheTransportCCExtension(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   uint8
		exts map[uint8][]byte
	}{
		{"one-byte, after another", 3, map[uint8][]byte{1: {0xaa}, 3: {0, 0}, 5: {1, 2, 3}}},
		{"one-byte, first", 1, map[uint8][]byte{1: {0, 0}, 5: {9}}},
		{"two-byte", 20, map[uint8][]byte{1: {7}, 20: {0, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSender()
			s.SetExtensionID(tc.id)
			for want := range uint16(3) {
				head := header(t, tc.exts)
				before := append([]byte(nil), head...)
				s.Stamp(head, 100)
				var h rtp.Header
				if _, err := h.Unmarshal(head); err != nil {
					t.Fatalf("stamped header does not parse: %v", err)
				}
				if got := binary.BigEndian.Uint16(h.GetExtension(tc.id)); got != want {
					t.Fatalf("packet %d carries number %d", want, got)
				}
				var b rtp.Header
				_, _ = b.Unmarshal(before)
				for id, p := range tc.exts {
					if id != tc.id && string(h.GetExtension(id)) != string(p) {
						t.Errorf("extension %d changed: %x, was %x", id, h.GetExtension(id), p)
					}
				}
			}
		})
	}
}

func TestStampLeavesHeadersWithoutTheExtensionAlone(t *testing.T) {
	s := NewSender()
	head := header(t, map[uint8][]byte{1: {0, 0}})
	before := string(head)
	s.Stamp(head, 100) // no ID negotiated
	s.SetExtensionID(3)
	s.Stamp(head, 100) // another ID
	if string(head) != before || s.Mark() != 0 {
		t.Fatalf("a header without the extension was changed or numbered: %x, mark %d", head, s.Mark())
	}
	plain, _ := (&rtp.Header{Version: 2, SSRC: 1}).Marshal()
	s.Stamp(plain, 100)
	if s.Mark() != 0 {
		t.Fatal("a header without extensions was numbered")
	}
}

// FuzzExtensionAt: whatever the header, extensionAt points inside it at
// an element of the right length, or says 0.
func FuzzExtensionAt(f *testing.F) {
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0xbe, 0xde, 0, 1, 0x31, 0, 0, 0}, uint8(3))
	f.Add([]byte{0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0x10, 0x00, 0, 1, 20, 2, 0, 0}, uint8(20))
	f.Fuzz(func(t *testing.T, head []byte, id uint8) {
		off := extensionAt(head, id, 2)
		if off == 0 {
			return
		}
		if off < 12 || off+2 > len(head) {
			t.Fatalf("offset %d outside a %d-byte header", off, len(head))
		}
		// Where pion reads the header too, the offset is its extension's.
		var h rtp.Header
		if _, err := h.Unmarshal(head); err == nil && len(h.GetExtension(id)) == 2 {
			was := h.GetExtension(id)[0]
			head[off] ^= 0xff
			var h2 rtp.Header
			if _, err := h2.Unmarshal(head); err != nil || h2.GetExtension(id)[0] == was {
				t.Fatalf("offset %d is not extension %d's payload", off, id)
			}
		}
	})
}

// arrival is what a subscriber saw of one packet: when it came (µs on its
// clock), or lost.
type arrival struct {
	n    uint16
	at   int64
	lost bool
}

// feedbackOf is the transport-cc feedback a subscriber would send for
// arrivals (consecutive numbers), as pion marshals it.
func feedbackOf(t testing.TB, arrivals []arrival) []byte {
	t.Helper()
	fb := &rtcp.TransportLayerCC{SenderSSRC: 1, MediaSSRC: 2, BaseSequenceNumber: arrivals[0].n,
		PacketStatusCount: uint16(len(arrivals))}
	ref := int64(-1)
	var last int64
	for _, a := range arrivals {
		if a.lost {
			fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 1})
			continue
		}
		if ref < 0 {
			ref = a.at / 64000
			last = ref * 64000
		}
		d := (a.at - last) / 250 * 250
		typ := rtcp.TypeTCCPacketReceivedSmallDelta
		if d < 0 || d > 255*250 {
			typ = rtcp.TypeTCCPacketReceivedLargeDelta
		}
		last += d
		fb.PacketChunks = append(fb.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: typ, RunLength: 1})
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: typ, Delta: d})
	}
	fb.ReferenceTime = uint32(max(ref, 0))
	unpadded := 20 + 2*len(fb.PacketChunks)
	for _, d := range fb.RecvDeltas {
		unpadded += 1 + int(d.Type-rtcp.TypeTCCPacketReceivedSmallDelta)
	}
	fb.Header = rtcp.Header{Padding: unpadded%4 != 0, Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback,
		Length: uint16(fb.MarshalSize()/4 - 1)}
	raw, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// status is one packet's in a feedback packet, as read.
type status struct {
	seq     uint16
	arrival int64
	lost    bool
}

// pionReports is what pion's parser reads of a feedback packet: the
// reference walkFeedback must agree with.
func pionReports(fb *rtcp.TransportLayerCC) []status {
	var out []status
	arrival := int64(fb.ReferenceTime) * 64000
	seq, left := fb.BaseSequenceNumber, int(fb.PacketStatusCount)
	deltas := fb.RecvDeltas
	note := func(symbol uint16) bool {
		lost := symbol == rtcp.TypeTCCPacketNotReceived
		if !lost && symbol != rtcp.TypeTCCPacketReceivedWithoutDelta {
			if len(deltas) == 0 {
				return false
			}
			arrival += deltas[0].Delta
			deltas = deltas[1:]
		}
		out = append(out, status{seq, arrival, lost})
		seq++
		left--
		return true
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for i := uint16(0); i < c.RunLength && left > 0; i++ {
				if !note(c.PacketStatusSymbol) {
					return out
				}
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range c.SymbolList {
				if left == 0 || !note(sym) {
					return out
				}
			}
		}
	}
	return out
}

// FuzzWalkFeedback: where pion parses a transport-cc feedback packet,
// walkFeedback reads the same reports from its bytes; and on any bytes it
// stays within them.
func FuzzWalkFeedback(f *testing.F) {
	f.Add(feedbackOf(f, []arrival{{n: 7, at: 64000}, {n: 8, lost: true}, {n: 9, at: 64000 + 300_000}, {n: 10, at: 64000 + 300_250}}))
	fb := &rtcp.TransportLayerCC{Header: rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback},
		BaseSequenceNumber: 65530, PacketStatusCount: 20, ReferenceTime: 5,
		PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: []uint16{1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1}},
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: []uint16{2, 1, 0, 2, 1, 1, 0}},
		}}
	for range 13 {
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1000})
	}
	fb.RecvDeltas[10].Type, fb.RecvDeltas[10].Delta = rtcp.TypeTCCPacketReceivedLargeDelta, -5000
	fb.Header.Length = uint16(fb.MarshalSize()/4 - 1)
	fb.Header.Padding = true
	if raw, err := fb.Marshal(); err == nil {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got []status
		walkFeedback(raw, func(seq uint16, arrival int64, lost bool) { got = append(got, status{seq, arrival, lost}) })
		pkts, err := rtcp.Unmarshal(raw)
		if err != nil || len(pkts) != 1 {
			return
		}
		fb, ok := pkts[0].(*rtcp.TransportLayerCC)
		if !ok {
			return
		}
		want := pionReports(fb)
		if len(got) != len(want) {
			t.Fatalf("%d reports, pion reads %d: %v against %v", len(got), len(want), got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("report %d: %+v, pion reads %+v", i, got[i], want[i])
			}
		}
	})
}

// link is a tc tbf shaper: rate bits/s, a bucket of burst bytes, a queue
// of at most limit bytes, and delay µs of propagation after it.
type link struct {
	rate         float64
	burst, limit float64
	delay        int64

	tokens      float64
	at, lastOut int64 // µs
	primed      bool
}

// pass is when a packet of size bytes sent at µs t arrives, or lost.
func (l *link) pass(t int64, size int) (int64, bool) {
	if !l.primed {
		l.tokens, l.at, l.primed = l.burst, t, true
	}
	bps := l.rate / 8 / 1e6 // bytes per µs
	start := max(t, l.lastOut)
	if float64(start-t)*bps+float64(size) > l.limit {
		return 0, false
	}
	tok := min(l.burst, l.tokens+float64(start-l.at)*bps)
	out := start
	if tok < float64(size) {
		out += int64((float64(size) - tok) / bps)
		tok = float64(size)
	}
	l.tokens, l.at, l.lastOut = tok-float64(size), out, out
	return out + l.delay, true
}

// send numbers packets of size bytes at rate bits/s for d from µs t0
// through l, and returns what the subscriber saw of them.
func send(s *Sender, l *link, t0 int64, rate float64, size int, d time.Duration) []arrival {
	var out []arrival
	gap := int64(float64(size*8) / rate * 1e6)
	for t := t0; t < t0+int64(d/time.Microsecond); t += gap {
		n := s.nextAt(size, s.start.Add(time.Duration(t)*time.Microsecond))
		at, ok := l.pass(t, size)
		out = append(out, arrival{n: n, at: at + 5_000_000, lost: !ok}) // the subscriber's clock is ahead
	}
	return out
}

// feed hands s the feedback for arrivals, 20 packets a report.
func feed(t *testing.T, s *Sender, arrivals []arrival) {
	t.Helper()
	for len(arrivals) > 0 {
		n := min(20, len(arrivals))
		s.Feedback(feedbackOf(t, arrivals[:n]))
		arrivals = arrivals[n:]
	}
}

// shaped is the link of the simulcast browser test: tbf rate 300kbit
// burst 8kb latency 200ms.
func shaped() *link {
	return &link{rate: 300_000, burst: 8192, limit: 300_000/8*0.2 + 8192, delay: 10_000}
}

func TestRecentShowsTheQueueAndTheRateOfAFullLink(t *testing.T) {
	s := NewSender()
	s.SetExtensionID(3)
	feed(t, s, send(s, shaped(), 0, 200_000, 1000, 2*time.Second))
	calm, ok := s.Recent(500 * time.Millisecond)
	if !ok || calm.MinQueue > 5*time.Millisecond || calm.Lost > 0 {
		t.Fatalf("below the link's rate: %+v, want no queue, no loss", calm)
	}
	feed(t, s, send(s, shaped(), 2_000_000, 450_000, 1000, 3*time.Second))
	full, _ := s.Recent(500 * time.Millisecond)
	t.Logf("at 450 kbit/s into 300: %+v", full)
	if full.MinQueue < 100*time.Millisecond || full.Delivered < 270_000 || full.Delivered > 330_000 {
		t.Fatalf("over the link's rate: %+v, want a queue and about 300 kbit/s delivered", full)
	}
	if full.Lost == 0 || full.Sent < 400_000 {
		t.Fatalf("over the link's rate for 3 s: %+v, want the queue's overflow lost", full)
	}
}

func TestJudgeFailsAProbeTheLinkCannotCarryAndPassesOneItCan(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    *link
		pass bool
	}{
		{"300 kbit/s, bucket and queue", shaped(), false},
		{"2 Mbit/s", &link{rate: 2_000_000, burst: 8192, limit: 64_000, delay: 10_000}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSender()
			s.SetExtensionID(3)
			// The media the link carries, then a probe at twice it.
			feed(t, s, send(s, tc.l, 0, 200_000, 1000, 2*time.Second))
			p := Probe{From: s.Mark()}
			arrivals := send(s, tc.l, 2_000_000, 400_000, 600, ProbeDuration)
			at := time.Now()
			p.To, p.At = s.Mark(), at
			if v, _ := s.Judge(p, at); v != ProbePending {
				t.Fatalf("judged before any feedback: %v", v)
			}
			feed(t, s, arrivals)
			v, rate := s.Judge(p, at)
			t.Logf("verdict %v, rate %.0f", v, rate)
			if (v == ProbePassed) != tc.pass || v == ProbePending {
				t.Fatalf("verdict %v, want passed %v", v, tc.pass)
			}
			if tc.pass && (rate < 360_000 || rate > 440_000) {
				t.Fatalf("passed at %.0f bits/s, want about the 400 kbit/s sent", rate)
			}
		})
	}
}

func TestJudgeGivesUpOnAProbeWithoutFeedback(t *testing.T) {
	s := NewSender()
	p := Probe{From: s.Mark()}
	s.Next(100)
	p.To, p.At = s.Mark(), time.Now()
	if v, _ := s.Judge(p, p.At.Add(time.Second)); v != ProbePending {
		t.Fatalf("a second on: %v, want pending", v)
	}
	if v, _ := s.Judge(p, p.At.Add(3*time.Second)); v != ProbeFailed {
		t.Fatalf("three seconds on: %v, want failed", v)
	}
}

func TestFeedbackIgnoresNumbersNeverSent(t *testing.T) {
	s := NewSender()
	s.SetExtensionID(3)
	arrivals := send(s, shaped(), 0, 100_000, 500, 100*time.Millisecond)
	// Numbers past the last sent, and a report far behind.
	bogus := []arrival{{n: uint16(len(arrivals)) + 5, at: 1000}, {n: uint16(len(arrivals)) + 6, at: 2000}}
	s.Feedback(feedbackOf(t, bogus))
	s.Feedback(feedbackOf(t, []arrival{{n: 40000, at: 1000}}))
	if _, ok := s.Recent(time.Second); ok {
		t.Fatal("feedback on numbers never sent counted")
	}
	feed(t, s, arrivals)
	st, ok := s.Recent(time.Second)
	if !ok || st.Packets != len(arrivals) || st.Lost != 0 {
		t.Fatalf("%+v, want the %d packets sent", st, len(arrivals))
	}
	// A later report of loss for a packet received stands not.
	s.Feedback(feedbackOf(t, []arrival{{n: arrivals[0].n, lost: true}}))
	if st, _ := s.Recent(time.Second); st.Lost != 0 {
		t.Fatalf("a stale loss report counted: %+v", st)
	}
}

// BenchmarkFeedback: one transport-cc feedback packet about 24 packets
// (a subscriber receiving 240 packets/s, reporting every 100 ms), read
// from the bytes the subscriber sent.
func BenchmarkFeedback(b *testing.B) {
	s := NewSender()
	s.SetExtensionID(3)
	arrivals := send(s, &link{rate: 10e6, burst: 1e5, limit: 1e6, delay: 10_000}, 0, 2_000_000, 1000, 100*time.Millisecond)
	raw := feedbackOf(b, arrivals)
	b.ReportAllocs()
	for b.Loop() {
		s.Feedback(raw)
	}
}
