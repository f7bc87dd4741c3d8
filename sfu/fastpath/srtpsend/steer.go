package srtpsend

import "golang.org/x/net/bpf"

// steering is the reuseport program of the ICE port: it runs on each
// datagram's UDP payload and returns the index of the socket that gets
// it. SRTP media goes to reader SSRC mod readers, so that one track's
// packets always reach the same reader (in order, one goroutine) and the
// tracks spread over the readers; everything else, STUN, DTLS and SRTCP
// (RFC 7983, RFC 5761), goes to reader 0. The send twin, bound after the
// readers, is never chosen. A load beyond a short datagram's end ends the
// program with 0.
func steering(readers uint32) []bpf.Instruction {
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 0, Size: 1},
		/* 1 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xc0},
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x80, SkipTrue: 7}, // not RTP/RTCP: 10
		/* 3 */ bpf.LoadAbsolute{Off: 1, Size: 1},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpLessThan, Val: 192, SkipTrue: 2}, // RTP: 7
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 223, SkipTrue: 1}, // RTP: 7
		/* 6 */ bpf.RetConstant{Val: 0}, // RTCP
		/* 7 */ bpf.LoadAbsolute{Off: 8, Size: 4}, // the SSRC
		/* 8 */ bpf.ALUOpConstant{Op: bpf.ALUOpMod, Val: readers},
		/* 9 */ bpf.RetA{},
		/* 10 */ bpf.RetConstant{Val: 0},
	}
}
