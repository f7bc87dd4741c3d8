// Package rtpindex keeps the two invariants SRTP's security rests on, for
// every path a packet takes through the SFU (pion's or the fast paths):
//
//   - Window, one per incoming SSRC: the packet index (ROC<<16 | SEQ,
//     RFC 3711 §3.3.1) is estimated in one place, and each index is
//     accepted once. A replayed or too old packet is dropped whichever
//     receive path delivered it, also across a hand-over between paths,
//     where each path's own SRTP replay window starts empty.
//   - Outbound, one per SSRC of a subscriber connection: an index is
//     sealed for one packet only. A new packet gets an index never sealed
//     before on that SSRC, a retransmission only the index its original
//     had, for the same source packet, on the same path. AES-GCM with one
//     key and one nonce used for two different messages gives away the
//     authentication key, and with it the power to forge packets to that
//     subscriber.
//
// Indices are 48-bit (RFC 3711 §9.2 allows no more packets per SSRC and
// key); an index reaching 2^48 is refused.
package rtpindex

import (
	"errors"
	"sync"
	"sync/atomic"
)

// MaxIndex is one past the highest SRTP packet index.
const MaxIndex = 1 << 48

// WindowSize is how far behind the highest accepted index a packet may
// arrive and still be forwarded. pion's SRTP replay window is 64; video
// keyframes reorder little, but a retransmitted packet a sender resends
// late must still get through.
const WindowSize = 1024

// Window estimates one incoming SSRC's packet indices and accepts each
// once. Extend may be called from any goroutine; Accept from one at a
// time (the forwarder's receive lock).
type Window struct {
	next atomic.Uint64 // highest accepted index + 1; 0 before the first
	seen [WindowSize / 64]uint64
}

// Extend is the packet index of a packet with sequence number seq: the
// index with those low 16 bits closest to the highest accepted one
// (RFC 3711 Appendix A), within the rollover counter's range.
func (w *Window) Extend(seq uint16) uint64 {
	return extend(w.next.Load(), seq)
}

// Nearest is the index with low 16 bits seq closest to ref, a known
// index of the same stream (within the rollover counter's range).
func Nearest(ref uint64, seq uint16) uint64 { return extend(ref+1, seq) }

// extend estimates seq's index against next (highest index sent or
// received + 1; 0: none yet, the stream starts in cycle 0).
func extend(next uint64, seq uint16) uint64 {
	if next == 0 {
		return uint64(seq)
	}
	const half, full = 1 << 15, 1 << 16
	top := next - 1
	i := top&^(full-1) | uint64(seq)
	switch d := int64(seq) - int64(top&(full-1)); {
	case d > half && i >= full: // before the last wrap
		i -= full
	case d < -half: // after the next wrap
		i += full
	}
	return i
}

// Accept records index i as received and reports whether it is new:
// false for an index already accepted, one WindowSize or more below the
// highest, or one past the 48-bit range.
func (w *Window) Accept(i uint64) bool {
	if i >= MaxIndex {
		return false
	}
	next := w.next.Load()
	switch {
	case i >= next:
		// The indices between the old highest and i were not received:
		// clear them, as they reuse the bits of ones now too old.
		if i-next >= WindowSize {
			clear(w.seen[:])
		} else {
			for j := next; j < i; j++ {
				w.seen[j/64%(WindowSize/64)] &^= 1 << (j % 64)
			}
		}
		w.next.Store(i + 1)
	case next-1-i >= WindowSize:
		return false
	case w.seen[i/64%(WindowSize/64)]&(1<<(i%64)) != 0:
		return false
	}
	w.seen[i/64%(WindowSize/64)] |= 1 << (i % 64)
	return true
}

// Via is the path a packet was sealed on. A retransmission must take the
// path of its original: pion and the fast path marshal padding
// differently, and only one of them may seal for a connection at a time.
type Via uint8

// The sealing paths.
const (
	ViaPion Via = iota + 1
	ViaDirect
)

// Sentinel errors of Outbound.
var (
	// ErrStale: a packet from a source that an SSRC no longer forwards.
	ErrStale = errors.New("rtpindex: packet from a replaced source")
	// ErrTooOld: the packet's index is too far behind the newest sent
	// to tell whether it was sealed already.
	ErrTooOld = errors.New("rtpindex: index too far behind the newest sent")
	// ErrReused: the index was sealed already, for another packet.
	ErrReused = errors.New("rtpindex: index already sealed for another packet")
	// ErrExhausted: the SSRC sent 2^48 packets under its key.
	ErrExhausted = errors.New("rtpindex: SRTP packet index exhausted")
	// ErrNotSent: a retransmission of an index that was not sealed, or is
	// no longer remembered.
	ErrNotSent = errors.New("rtpindex: index not sent, or no longer remembered")
)

// RingSize is how many of the newest indices an Outbound remembers: a
// retransmission or a late packet further behind is refused. It covers
// the forwarder's retransmission history.
const RingSize = 512

// Book holds the Outbound of each SSRC of one subscriber connection, kept
// for the connection's life: a reused transceiver sends another track on
// the same SSRC under the same keys.
type Book struct {
	mu      sync.Mutex
	streams map[uint32]*Outbound
	sources uint64
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{streams: map[uint32]*Outbound{}} }

// Stream is ssrc's Outbound, made on first use.
func (b *Book) Stream(ssrc uint32) *Outbound {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := b.streams[ssrc]
	if o == nil {
		o = &Outbound{}
		b.streams[ssrc] = o
	}
	return o
}

// NewSource returns an id for a new source of packets (a track bound to
// an SSRC): ids grow, so a source replaced on an SSRC is refused there.
func (b *Book) NewSource() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sources++
	return b.sources
}

// Outbound maps one subscriber SSRC's packets to packet indices and
// remembers which packet each of the newest RingSize indices carried.
type Outbound struct {
	mu     sync.Mutex
	next   uint64 // highest index sealed + 1; 0 before the first
	source uint64 // the source now sent on this SSRC
	offset uint64 // its index = its source's index + offset (mod 2^64)
	ring   [RingSize]sealed
}

// sealed is one index's packet: its source and index there, and path.
type sealed struct {
	index  uint64 // + 1: zero is an empty slot
	source uint64
	src    uint64
	via    Via
}

// Next returns the index under which the packet with index src of source
// is sealed on path via, and records it. A new source continues right
// after the newest index sent (the first keeps its source's numbering), so
// the subscriber sees one stream whose rollover counter it can follow. A
// packet that arrives after newer ones were sent takes the index its
// place gives it if that index was never sealed; it is refused
// (ErrReused) if it was, and if it is too far behind to know (ErrTooOld).
func (o *Outbound) Next(source, src uint64, via Via) (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case source < o.source:
		return 0, ErrStale
	case source > o.source:
		o.source = source
		o.offset = 0
		if o.next > 0 {
			o.offset = o.next - src
		}
	}
	i := src + o.offset
	switch {
	case i >= MaxIndex:
		return 0, ErrExhausted
	case i >= o.next:
		o.next = i + 1
	case o.next-i > RingSize:
		return 0, ErrTooOld
	default:
		if s := &o.ring[i%RingSize]; s.index == i+1 {
			return 0, ErrReused // even the same packet: a fresh send is never a repeat
		}
	}
	o.ring[i%RingSize] = sealed{index: i + 1, source: source, src: src, via: via}
	return i, nil
}

// Pad returns the index of a packet of no source (padding the SFU makes
// up, to probe the link), sealed on path via: the one after the newest
// index sent. The current source's later packets follow it, and one of
// its packets that arrives late and would take an index already sealed
// is refused (Next: ErrReused). ErrNotSent before the SSRC's first packet:
// padding cannot come first, as the subscriber's rollover counter starts
// from that packet.
func (o *Outbound) Pad(via Via) (uint64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.next == 0 {
		return 0, ErrNotSent
	}
	i := o.next
	if i >= MaxIndex {
		return 0, ErrExhausted
	}
	o.next = i + 1
	o.offset++
	o.ring[i%RingSize] = sealed{index: i + 1, source: padding, via: via}
	return i, nil
}

// padding is the source of the packets Pad gives indices: Book's ids
// begin at 1.
const padding = 0

// Sent is what was sealed under the index with sequence number seq (a
// retransmission request names only those 16 bits): the index, its
// source, its index there and its path. ErrNotSent if no such index is
// remembered.
func (o *Outbound) Sent(seq uint16) (index, source, src uint64, via Via, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.next == 0 {
		return 0, 0, 0, 0, ErrNotSent
	}
	i := extend(o.next, seq)
	s := o.ring[i%RingSize]
	if s.index != i+1 || i >= o.next || o.next-i > RingSize {
		return 0, 0, 0, 0, ErrNotSent
	}
	return i, s.source, s.src, s.via, nil
}
