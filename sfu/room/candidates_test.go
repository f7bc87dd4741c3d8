package room

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// A candidate's ICE generation is its usernameFragment, or, from pion,
// the candidate line's ufrag attribute.
func TestCandidateUfrag(t *testing.T) {
	u := "fromField"
	for _, tc := range []struct {
		c    webrtc.ICECandidateInit
		want string
	}{
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host ufrag abcd"}, "abcd"},
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1694498815 1.2.3.4 5000 typ srflx raddr 10.0.0.1 rport 5000 generation 0 ufrag efgh network-cost 10"}, "efgh"},
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host ufrag abcd", UsernameFragment: &u}, "fromField"},
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host"}, ""},
		{webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 2130706431 ufrag 5000 typ host"}, ""}, // an address, not the attribute
		{webrtc.ICECandidateInit{Candidate: "garbage"}, ""},
	} {
		if got := candidateUfrag(tc.c); got != tc.want {
			t.Errorf("candidateUfrag(%q) = %q, want %q", tc.c.Candidate, got, tc.want)
		}
	}
	if got := iceUfrag("v=0\r\na=ice-ufrag:XyZ\r\na=ice-pwd:p\r\n"); got != "XyZ" {
		t.Errorf("iceUfrag = %q", got)
	}
}
