package feedback

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v4/test"
)

const ssrc = 0x1234

// publisher is a Publisher whose RTCP lands in a channel.
func publisher(t *testing.T) (*Publisher, chan rtcp.Packet) {
	t.Helper()
	out := make(chan rtcp.Packet, 256)
	p, err := New(Config{WriteRTCP: func(pkts []rtcp.Packet) error {
		for _, pkt := range pkts {
			select {
			case out <- pkt:
			default:
			}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, out
}

func video(s Stream) Stream {
	s.SSRC, s.PayloadType, s.MimeType, s.ClockRate = ssrc, 96, "video/VP8", 90000
	return s
}

var nackFeedback = []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}

// receive feeds the stream one packet per sequence number (5 ms apart in
// arrival time), with a transport-cc number when ccID is set.
func receive(r *Receiver, ccID uint8, seqs ...uint16) {
	at := time.Now()
	for i, seq := range seqs {
		hdr := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc}
		if ccID != 0 {
			ext, _ := (&rtp.TransportCCExtension{TransportSequence: seq}).Marshal()
			_ = hdr.SetExtension(ccID, ext)
		}
		raw, _ := (&rtp.Packet{Header: hdr, Payload: make([]byte, 100)}).Marshal()
		r.Received(raw, &hdr, at.Add(time.Duration(i)*5*time.Millisecond))
	}
}

// next waits for the first RTCP packet of type T that match accepts.
func next[T rtcp.Packet](t *testing.T, out chan rtcp.Packet, within time.Duration, match func(T) bool) (T, bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case pkt := <-out:
			if p, ok := pkt.(T); ok && match(p) {
				return p, true
			}
		case <-deadline:
			var zero T
			return zero, false
		}
	}
}

// A lost packet of a stream that negotiated NACK is asked for again;
// one that did not negotiate it is not.
func TestNACKForLostPackets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		feedback []interceptor.RTCPFeedback
		want     bool
	}{
		{"nack negotiated", nackFeedback, true},
		{"no nack", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, out := publisher(t)
			r := p.Stream(video(Stream{Feedback: tc.feedback}))
			receive(r, 0, 10, 11, 12, 14, 15) // 13 is lost
			wait := 2 * time.Second
			if !tc.want {
				wait = 600 * time.Millisecond // six NACK intervals
			}
			nack, ok := next(t, out, wait, func(n *rtcp.TransportLayerNack) bool { return n.MediaSSRC == ssrc })
			if ok != tc.want {
				t.Fatalf("NACK sent: %v, want %v (%+v)", ok, tc.want, nack)
			}
			if ok {
				var lost []uint16
				for _, pair := range nack.Nacks {
					lost = append(lost, pair.PacketList()...)
				}
				if !slices.Equal(lost, []uint16{13}) {
					t.Fatalf("NACK asks for %v, want [13]", lost)
				}
			}
		})
	}
}

// Receiver reports carry the stream's highest sequence number and loss,
// and, once the publisher's sender report was passed in, its timestamp
// (LSR), from which the publisher measures the round trip.
func TestReceiverReports(t *testing.T) {
	p, out := publisher(t)
	r := p.Stream(video(Stream{Feedback: nackFeedback}))
	receive(r, 0, 65534, 65535, 0, 2) // a wrap, 1 lost
	rr, ok := next(t, out, 3*time.Second, func(rr *rtcp.ReceiverReport) bool { return len(rr.Reports) > 0 })
	if !ok {
		t.Fatal("no receiver report")
	}
	rep := rr.Reports[0]
	if rep.SSRC != ssrc || rep.LastSequenceNumber != 1<<16|2 || rep.TotalLost != 1 || rep.LastSenderReport != 0 {
		t.Fatalf("report %+v: want SSRC %#x, highest 1<<16|2, 1 lost, no LSR yet", rep, ssrc)
	}

	ntp := uint64(0x0102030405060708)
	sr, _ := (&rtcp.SenderReport{SSRC: ssrc, NTPTime: ntp, RTPTime: 1}).Marshal()
	p.ReceiveRTCP(sr)
	want := uint32(ntp >> 16)
	if _, ok := next(t, out, 3*time.Second, func(rr *rtcp.ReceiverReport) bool {
		return len(rr.Reports) > 0 && rr.Reports[0].LastSenderReport == want
	}); !ok {
		t.Fatalf("no receiver report with LSR %#x", want)
	}
}

// Packets numbered for transport-cc get feedback listing each of them.
func TestTransportCCFeedback(t *testing.T) {
	p, out := publisher(t)
	r := p.Stream(video(Stream{TransportCCID: 5}))
	receive(r, 5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	cc, ok := next(t, out, 2*time.Second, func(*rtcp.TransportLayerCC) bool { return true })
	if !ok {
		t.Fatal("no transport-cc feedback")
	}
	if cc.BaseSequenceNumber != 1 || cc.PacketStatusCount != 10 {
		t.Fatalf("feedback for %d packets from %d, want 10 from 1", cc.PacketStatusCount, cc.BaseSequenceNumber)
	}
	// A stream without the extension gets none.
	p2, out2 := publisher(t)
	receive(p2.Stream(video(Stream{})), 0, 1, 2, 3)
	if _, ok := next(t, out2, 500*time.Millisecond, func(*rtcp.TransportLayerCC) bool { return true }); ok {
		t.Fatal("transport-cc feedback for a stream without the extension")
	}
}

// Close stops every timer goroutine, the interceptors' too.
func TestCloseStopsTimers(t *testing.T) {
	defer test.CheckRoutines(t)()
	p, err := New(Config{WriteRTCP: func([]rtcp.Packet) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Stream(video(Stream{Feedback: nackFeedback, TransportCCID: 3}))
	receive(r, 3, 1, 2, 4)
	r.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
