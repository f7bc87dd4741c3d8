package srtpsend

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// RFC 3711 Appendix B.3's key derivation test vectors.
func TestDeriveSessionKey(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	masterKey := unhex("E1F97A0D3E018BE0D64FA32C06DE4139")
	masterSalt := unhex("0EC675AD498AFEEBB6960B3AABE6")
	for _, tc := range []struct {
		name  string
		label byte
		want  []byte
	}{
		{"cipher key", labelSRTPEncryption, unhex("C61E7A93744F39EE10734AFE3FF7A087")},
		{"cipher salt", labelSRTPSalt, unhex("30CBBC08863D8C85D49DB34A9AE1")},
		{"auth key", 0x01, unhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE" +
			"E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC256D6E919A48B610EF17C2041E47403576" +
			"6B68642C59BBFC2F34DB60DBDFB2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := deriveSessionKey(tc.label, masterKey, masterSalt, len(tc.want))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got %X\nwant %X", got, tc.want)
			}
		})
	}
}

// The direct path's own AES-GCM sealing produces, byte for byte, what
// pion/srtp's context did for the same packets under the same packet
// indices: same session keys, same IVs, through wraps, retransmissions
// from before a wrap, jumps, high rollover counters, padding, CSRCs and
// extensions, several SSRCs on one connection.
func TestGCMSealsAsPion(t *testing.T) {
	walk := func(n int, seed uint64) []uint64 {
		r := rand.New(rand.NewPCG(seed, seed))
		indices, i := make([]uint64, 0, n), r.Uint64N(1<<40)
		for range n {
			switch x := r.IntN(100); {
			case x < 85:
				i++
			case x < 93:
				i -= r.Uint64N(300) // a retransmission
			case x < 98:
				i += r.Uint64N(2000) // loss upstream
			default:
				i += 30000 + r.Uint64N(5000) // a far jump
			}
			indices = append(indices, i)
		}
		return indices
	}
	const cycle = 1 << 16
	for _, tc := range []struct {
		name    string
		indices []uint64
	}{
		{"in order across a wrap", []uint64{65530, 65531, 65532, 65533, 65534, 65535, cycle, cycle + 1, cycle + 2}},
		{"retransmission from before the wrap", []uint64{65534, 65535, cycle, cycle + 1, 65535, 65534, cycle + 2}},
		{"the last rollover counter", []uint64{(1<<32-1)*cycle + 3, (1<<32-1)*cycle + 4, (1<<32-1)*cycle + 2}},
		{"random walk", walk(5000, 1)},
		{"another random walk", walk(5000, 2)},
	} {
		for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm} {
			t.Run(tc.name+"/"+profile.String(), func(t *testing.T) {
				p := newPeer(t, profile)
				c, err := NewConn(newSocket(t), profile, p.key, p.salt)
				if err != nil {
					t.Fatal(err)
				}
				if c.gcm == nil {
					t.Fatal("an AEAD profile is sealed by pion, not gcmKeys")
				}
				ref, err := srtp.CreateContext(p.key, p.salt, profile)
				if err != nil {
					t.Fatal(err)
				}
				streams := []*Stream{c.NewStream(), c.NewStream()}
				buf, want := make([]byte, slotSize), make([]byte, slotSize)
				for i, index := range tc.indices {
					ssrc, seq := uint32(7+i%2), uint16(index) // two tracks interleaved
					h, pl := testHeader(ssrc, seq, i), payload(seq, 40+i%900)
					plain, err := (&rtp.Packet{Header: *h, Payload: pl}).Marshal()
					if err != nil {
						t.Fatal(err)
					}
					// The fan-out's header, before putHeader gives it
					// this subscriber's SSRC and payload type.
					tmpl := *h
					tmpl.SSRC, tmpl.PayloadType = 0xdeadbeef, 127
					head, body := split(&tmpl, pl)
					got, err := streams[i%2].seal(buf, head, ssrc, h.PayloadType, index, body)
					if err != nil {
						t.Fatalf("packet %d (index %#x): %v", i, index, err)
					}
					ref.SetROC(ssrc, uint32(index>>16)) // pion then takes that rollover counter as is
					exp, err := ref.EncryptRTP(want[:0], plain, nil)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, exp) {
						t.Fatalf("packet %d (ssrc %d seq %d): sealed differently from pion/srtp\ngot  %x\nwant %x", i, ssrc, seq, got, exp)
					}
				}
			})
		}
	}
}

// testHeader varies what a header can carry: marker, CSRCs, one-byte
// extensions, padding.
func testHeader(ssrc uint32, seq uint16, i int) *rtp.Header {
	h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(i) * 3000, SSRC: ssrc, Marker: i%3 == 0}
	if i%5 == 1 {
		h.CSRC = []uint32{1, 2}
	}
	if i%4 != 0 {
		_ = h.SetExtension(3, []byte{0x80 | 42})
	}
	if i%7 == 2 {
		h.Padding, h.PaddingSize = true, byte(1+i%200)
	}
	return h
}

func TestSealRefusesIndicesBeyond48Bits(t *testing.T) {
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	c, err := NewConn(newSocket(t), srtp.ProtectionProfileAeadAes128Gcm, p.key, p.salt)
	if err != nil {
		t.Fatal(err)
	}
	head, body := split(testHeader(1, 0, 0), payload(0, 10))
	buf := make([]byte, slotSize)
	if _, err := c.NewStream().seal(buf, head, 1, 96, 1<<48, body); !errors.Is(err, ErrIndex) {
		t.Fatalf("index 2^48: %v, want ErrIndex", err)
	}
	if _, err := c.NewStream().seal(buf, head, 1, 96, 1<<48-1, body); err != nil {
		t.Fatalf("the last index: %v", err)
	}
}
