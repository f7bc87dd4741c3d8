package srtprecv

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// indexSink checks what the fast path hands it: each packet one the
// publisher sealed, under the index it was sealed with, once.
type indexSink struct {
	t      *testing.T
	sealed map[uint64][][]byte // plaintexts by index (a publisher may seal one index twice)
	seen   map[uint64]bool
	next   uint64
}

func (s *indexSink) Extend(seq uint16) uint64 {
	if s.next == 0 {
		return uint64(seq)
	}
	top, i := s.next-1, (s.next-1)&^0xffff|uint64(seq)
	switch d := int64(seq) - int64(top&0xffff); {
	case d > 1<<15 && i >= 1<<16:
		i -= 1 << 16
	case d < -(1 << 15):
		i += 1 << 16
	}
	return i
}

func (s *indexSink) ReceiveRTP(pkts [][]byte, indices []uint64, _ []time.Time) {
	for i, p := range pkts {
		sealed := s.sealed[indices[i]]
		switch {
		case len(sealed) == 0:
			s.t.Fatalf("delivered index %#x, which the publisher never sealed", indices[i])
		case !slices.ContainsFunc(sealed, func(b []byte) bool { return bytes.Equal(b, p) }):
			s.t.Fatalf("index %#x delivered as other bytes than sealed", indices[i])
		case s.seen[indices[i]]:
			s.t.Fatalf("index %#x delivered twice", indices[i])
		case len(p) > MaxPacketSize:
			s.t.Fatalf("delivered %d bytes", len(p))
		}
		s.seen[indices[i]] = true
		s.next = max(s.next, indices[i]+1)
	}
}

// FuzzDecrypt drives the fast path's decryption with datagrams an
// attacker at the publisher's address controls: arbitrary bytes, packets
// sealed with the publisher's keys under any index (it knows its own
// keys), replays, tampered copies, in bursts. Nothing panics; the sink
// gets only packets sealed with those keys, under their own indices, each
// once; and no datagram of the kept SSRC from that address reaches pion.
func FuzzDecrypt(f *testing.F) {
	f.Add([]byte{1, 0, 1, 1, 0, 2, 2, 0, 0, 1, 0, 1})
	f.Add([]byte{1, 0xff, 0xfe, 1, 0xff, 0xff, 1, 0, 0, 3, 0, 0, 0, 3, 0x80, 96, 0, 1})
	f.Add([]byte{1, 0, 5, 4, 0, 0, 1, 0x7f, 0xff, 1, 0x80, 1, 2, 0, 2})
	const ssrc = 0xfeed
	profile := srtp.ProtectionProfileAeadAes128Gcm
	key, salt := bytes.Repeat([]byte{3}, 16), bytes.Repeat([]byte{4}, 12)
	from := netip.MustParseAddrPort("127.0.0.1:5000")
	f.Fuzz(func(t *testing.T, ops []byte) {
		m := &Mux{peers: map[netip.AddrPort]*Peer{}, toPion: make(chan *datagram, pionQueue), free: make(chan *datagram, pionQueue), closed: make(chan struct{})}
		r := &reader{m: m}
		peer, err := m.NewPeer(profile, key, salt)
		if err != nil {
			t.Fatal(err)
		}
		peer.SetAddr(from)
		s := &indexSink{t: t, sealed: map[uint64][][]byte{}, seen: map[uint64]bool{}}
		if err := peer.Add(ssrc, s); err != nil {
			t.Fatal(err)
		}
		seal, _ := srtp.CreateContext(key, salt, profile)
		var sent [][]byte
		n := 0
		flush := func() {
			r.handle(n, time.Now())
			n = 0
			for {
				select {
				case d := <-m.toPion:
					if b := d.b[:d.n]; isRTP(b) && binary.BigEndian.Uint32(b[8:12]) == ssrc {
						t.Fatalf("a datagram of the kept SSRC reached pion")
					}
					continue
				default:
				}
				break
			}
		}
		put := func(b []byte) {
			if len(b) > datagramSize {
				b = b[:datagramSize]
			}
			r.lens[n], r.froms[n] = copy(r.slots[n][:], b), from
			sent = append(sent, bytes.Clone(b))
			if n++; n == MaxBatch {
				flush()
			}
		}
		for len(ops) >= 3 {
			op, arg := ops[0], binary.BigEndian.Uint16(ops[1:3])
			ops = ops[3:]
			switch op % 6 {
			case 0: // raw bytes
				k := min(int(arg)%64, len(ops))
				put(ops[:k])
				ops = ops[k:]
			case 1, 2: // a sealed packet under index arg (cycle op/3 % 3)
				index := uint64(op/3%3)<<16 | uint64(arg)
				size := int(arg) % 1600
				p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(index), SSRC: ssrc},
					Payload: bytes.Repeat([]byte{op}, size)}
				plain, _ := p.Marshal()
				seal.SetROC(ssrc, uint32(index>>16))
				b, err := seal.EncryptRTP(nil, plain, nil)
				if err != nil {
					t.Fatal(err)
				}
				s.sealed[index] = append(s.sealed[index], plain)
				put(b)
			case 3: // a replay
				if len(sent) > 0 {
					put(sent[int(arg)%len(sent)])
				}
			case 4: // a tampered copy
				if len(sent) > 0 {
					b := bytes.Clone(sent[int(arg)%len(sent)])
					if len(b) > 0 {
						b[int(arg)%len(b)] ^= byte(op) | 1
					}
					put(b)
				}
			case 5: // the burst ends
				flush()
			}
		}
		flush()
	})
}
