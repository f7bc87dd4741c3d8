// Package bwe measures what a subscriber's link carries from its
// transport-wide congestion control feedback (transport-cc): each packet
// the SFU sends on the connection, on any path, carries a transport-wide
// sequence number, and the subscriber reports when each arrived. Arrival
// against departure gives, for any run of packets, the rate the link
// delivered them at and the queue they met on the way (the delay beyond
// the least the path has shown): a padding probe's, or the last half
// second's.
package bwe

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// ringSize is how many of the newest packets a Sender remembers: feedback
// comes a round trip and a feedback interval after a packet left, a
// subscriber receives well under a thousand packets a second, and a probe
// at its highest rate sends under 1800 in its 800 ms. 80 KB a connection.
const ringSize = 1 << 11

// Sender numbers one subscriber connection's packets and learns from the
// subscriber's feedback about them. Next and Stamp may be called from any
// goroutine, without locks: they run once per packet sent.
type Sender struct {
	start time.Time
	id    atomic.Uint32 // the transport-cc extension's ID; 0: none
	next  atomic.Uint32 // the next packet's number, extended past 16 bits
	sent  [ringSize]sentPacket

	mu       sync.Mutex
	got      [ringSize]report
	newest   uint32 // the highest number reported + 1; 0 before any report
	baseline [2]int64
	baseAt   int64 // when baseline[1] began, µs since start
}

type sentPacket struct {
	tag atomic.Uint64 // number<<32 | size on the wire
	at  atomic.Int64  // µs since start
}

// report is what the subscriber said of one packet.
type report struct {
	n       uint32
	size    uint16
	lost    bool
	at      int64 // departure, µs since start
	arrival int64 // at the subscriber, µs on its clock
}

// NewSender returns a Sender whose packets carry no number until
// SetExtensionID names the extension.
func NewSender() *Sender {
	return &Sender{start: time.Now(), baseline: [2]int64{noBaseline, noBaseline}}
}

const noBaseline = 1 << 62

// SetExtensionID sets the transport-cc header extension's ID, as the
// subscriber negotiated it.
func (s *Sender) SetExtensionID(id uint8) { s.id.Store(uint32(id)) }

// ExtensionID is the transport-cc extension's ID (0: not negotiated).
func (s *Sender) ExtensionID() uint8 { return uint8(s.id.Load()) }

// Next numbers one packet of size bytes leaving now, and returns the
// number it carries.
func (s *Sender) Next(size int) uint16 { return s.nextAt(size, time.Now()) }

func (s *Sender) nextAt(size int, now time.Time) uint16 {
	n := s.next.Add(1) - 1
	p := &s.sent[n%ringSize]
	p.at.Store(s.since(now))
	p.tag.Store(uint64(n)<<32 | uint64(uint32(size)))
	return uint16(n)
}

// Mark is the number the next packet will get: packets sent between two
// marks are a run Range can judge.
func (s *Sender) Mark() uint32 { return s.next.Load() }

func (s *Sender) since(t time.Time) int64 { return int64(t.Sub(s.start) / time.Microsecond) }

// Stamp numbers the packet of size bytes whose RTP header is head, writing
// the number into head's transport-cc extension. A header without one
// (before the subscriber's answer named the ID) is left alone.
func (s *Sender) Stamp(head []byte, size int) {
	id := uint8(s.id.Load())
	if id == 0 {
		return
	}
	if off := extensionAt(head, id, 2); off > 0 {
		binary.BigEndian.PutUint16(head[off:], s.Next(size))
	}
}

// extensionAt is the offset in the RTP header head of the payload of
// extension id if it is n bytes long (RFC 8285), else 0.
func extensionAt(head []byte, id uint8, n int) int {
	if len(head) < 12 || head[0]&0x10 == 0 {
		return 0
	}
	off := 12 + 4*int(head[0]&0x0f)
	if off+4 > len(head) {
		return 0
	}
	profile := binary.BigEndian.Uint16(head[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(head[off+2:]))
	if end > len(head) {
		return 0
	}
	oneByte := profile == 0xbede
	if !oneByte && profile&0xfff0 != 0x1000 {
		return 0
	}
	for off += 4; off < end; {
		b := head[off]
		if b == 0 { // padding between elements
			off++
			continue
		}
		var eid uint8
		var l, at int
		if oneByte {
			if b>>4 == 15 {
				return 0 // the rest is not to be read
			}
			eid, l, at = b>>4, int(b&0x0f)+1, off+1
		} else {
			if off+2 > end {
				return 0
			}
			eid, l, at = b, int(head[off+1]), off+2
		}
		if at+l > end {
			return 0
		}
		if eid == id && l == n {
			return at
		}
		off = at + l
	}
	return 0
}
