package room

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/transport/v4/test"
)

// The reporter's goroutine runs while anyone is registered and has ended
// when the last one leaves; removing twice, or someone never added, is
// harmless; a new member starts it again.
func TestReporterRunsWhileAnyoneIsRegistered(t *testing.T) {
	defer test.CheckRoutines(t)()
	var r reporter
	a, b := &Participant{subs: map[subKey]*subscription{}}, &Participant{subs: map[subKey]*subscription{}}
	r.add(a)
	r.add(b)
	running := r.stop
	if running == nil {
		t.Fatal("no goroutine with two members")
	}
	r.remove(a)
	r.remove(a)
	if r.stop != running {
		t.Fatal("the goroutine stopped with a member left")
	}
	r.remove(b)
	if r.stop != nil {
		t.Fatal("the goroutine still runs with no member")
	}
	r.remove(&Participant{})
	r.add(a)
	if r.stop == nil {
		t.Fatal("no goroutine after a new member")
	}
	r.remove(a)
}

// Compound RTCP with a NACK, PLI or FIR, or a receiver report block (the
// round trip and the loss, even none: the bandwidth estimate grows on
// reports of no loss), is parsed; SDES alone, and a receiver report with
// no block, are not, and a malformed length does not loop or panic.
func TestHasFeedback(t *testing.T) {
	marshal := func(pkts ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rr := &rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}}
	sdes := &rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"receiver report", marshal(rr), true},
		{"report and SDES", marshal(rr, sdes), true},
		{"receiver report without blocks, and SDES", marshal(&rtcp.ReceiverReport{SSRC: 1}, sdes), false},
		{"SDES", marshal(sdes), false},
		{"report echoing a sender report", marshal(&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, LastSenderReport: 7}}}), true},
		{"report and NACK", marshal(rr, &rtcp.TransportLayerNack{MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 9}}}), true},
		{"report, SDES and PLI", marshal(rr, sdes, &rtcp.PictureLossIndication{MediaSSRC: 2}), true},
		{"FIR", marshal(&rtcp.FullIntraRequest{MediaSSRC: 2, FIR: []rtcp.FIREntry{{SSRC: 2}}}), true},
		{"truncated", marshal(rr)[:6], false},
		{"empty", nil, false},
	} {
		if got := hasFeedback(tc.pkt); got != tc.want {
			t.Errorf("%s: hasFeedback = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The round trip is the report's arrival less the echoed sender report's
// time and the receiver's delay, in NTP's 1/65536 s.
func TestRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 250_000_000)
	const unixToNTP = 2208988800
	mid := func(t time.Time) uint32 {
		secs := uint64(t.Unix() + unixToNTP)
		frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
		return uint32((secs<<32 | frac) >> 16)
	}
	sent := now.Add(-180 * time.Millisecond)
	r := rtcp.ReceptionReport{LastSenderReport: mid(sent), Delay: uint32(30 * 65536 / 1000)} // held 30 ms
	rtt, ok := roundTrip(r, now)
	if !ok || rtt < 148*time.Millisecond || rtt > 152*time.Millisecond {
		t.Fatalf("round trip %v (%v), want 150ms", rtt, ok)
	}
	if _, ok := roundTrip(rtcp.ReceptionReport{}, now); ok {
		t.Fatal("a report echoing no sender report gave a round trip")
	}
	if _, ok := roundTrip(rtcp.ReceptionReport{LastSenderReport: mid(now.Add(time.Second))}, now); ok {
		t.Fatal("a sender report from the future gave a round trip")
	}
}
