package fastpath

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/webrtc/v4"
)

type fakePairs struct {
	pair   *webrtc.ICECandidatePair
	change func(*webrtc.ICECandidatePair)
}

func (f *fakePairs) OnSelectedCandidatePairChange(fn func(*webrtc.ICECandidatePair)) { f.change = fn }
func (f *fakePairs) GetSelectedCandidatePair() (*webrtc.ICECandidatePair, error) {
	return f.pair, nil
}

func pair(proto webrtc.ICEProtocol, localPort uint16, remote string) *webrtc.ICECandidatePair {
	ap := netip.MustParseAddrPort(remote)
	return &webrtc.ICECandidatePair{
		Local:  &webrtc.ICECandidate{Protocol: proto, Port: localPort},
		Remote: &webrtc.ICECandidate{Protocol: proto, Address: ap.Addr().String(), Port: ap.Port()},
	}
}

// A fast connection follows its ICE pair from address to address on the
// port; when the pair moves to one the fast paths cannot serve (ICE-TCP,
// another socket) media stops there and the connection is reported lost,
// once, instead of going back to pion.
func TestFollowReportsALostPath(t *testing.T) {
	port, err := Listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 1, 1<<16, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer port.mux.Close()
	defer port.Close()
	local := uint16(port.localPort())
	ice := &fakePairs{pair: pair(webrtc.ICEProtocolUDP, local, "10.0.0.1:5000")}
	var set []netip.AddrPort
	lost := 0
	port.follow(ice, func(a netip.AddrPort) { set = append(set, a) }, func() { lost++ })
	ice.change(pair(webrtc.ICEProtocolUDP, local, "10.0.0.2:6000")) // a new address: still fast
	ice.change(pair(webrtc.ICEProtocolTCP, local, "10.0.0.2:6001"))
	ice.change(pair(webrtc.ICEProtocolUDP, local+1, "10.0.0.2:6000")) // another socket
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:5000"), netip.MustParseAddrPort("10.0.0.2:6000"), {}, {}}
	if len(set) != len(want) {
		t.Fatalf("addresses set: %v, want %v", set, want)
	}
	for i := range want {
		if set[i] != want[i] {
			t.Fatalf("addresses set: %v, want %v", set, want)
		}
	}
	if lost != 2 {
		t.Fatalf("lost called %d times, want 2 (Publisher and Subscriber report the first only)", lost)
	}
}
