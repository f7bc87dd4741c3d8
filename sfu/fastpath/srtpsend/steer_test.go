package srtpsend

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

// The steering program, run in x/net/bpf's VM as the kernel runs it.
func TestSteering(t *testing.T) {
	rtp := func(pt byte, ssrc uint32) []byte {
		b := make([]byte, 12, 200)
		b[0], b[1] = 0x80, pt
		binary.BigEndian.PutUint32(b[8:], ssrc)
		return append(b, make([]byte, 100)...)
	}
	for _, tc := range []struct {
		name    string
		pkt     []byte
		readers uint32
		want    int
	}{
		{"video by SSRC", rtp(96, 7), 4, 3},
		{"marker bit set", rtp(96|0x80, 9), 4, 1},
		{"audio by SSRC", rtp(111, 1<<31+2), 4, 2},
		{"one reader", rtp(96, 7), 1, 0},
		{"sender report", rtp(200, 7), 4, 0},
		{"receiver report", rtp(201, 7), 4, 0},
		{"PLI", rtp(206, 7), 4, 0},
		{"RTCP range end", rtp(223, 7), 4, 0},
		{"PT 224 is RTP", rtp(224, 6), 4, 2},
		{"STUN", append([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...), 4, 0},
		{"DTLS", append([]byte{22, 0xfe, 0xfd}, make([]byte, 20)...), 4, 0},
		{"RTP too short for an SSRC", []byte{0x80, 96, 0, 1, 0, 0, 0, 0}, 4, 0},
		{"empty", []byte{}, 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := bpf.NewVM(steering(tc.readers))
			if err != nil {
				t.Fatal(err)
			}
			got, err := vm.Run(tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("socket %d, want %d", got, tc.want)
			}
		})
	}
}
