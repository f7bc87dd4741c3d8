package bwe

import (
	"encoding/binary"
	"time"
)

// baselineSpan is how long the least one-way delay seen stays the
// baseline: long enough to remember an empty queue while the link is
// busy, short enough to follow a route that changed. Two halves of it
// are kept.
const baselineSpan = 10 * time.Second

// Feedback takes one RTCP packet (not a compound), if it is transport-cc
// feedback, and reports whether it was. Numbers the Sender does not
// remember (too old, or never sent) are skipped; malformed feedback is
// read as far as it makes sense.
func (s *Sender) Feedback(pkt []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return walkFeedback(pkt, s.noteLocked)
}

// IsFeedback reports whether the RTCP packet at the start of pkt is
// transport-cc feedback (RTPFB, FMT 15).
func IsFeedback(pkt []byte) bool {
	return len(pkt) >= 2 && pkt[0]>>6 == 2 && pkt[1] == 205 && pkt[0]&0x1f == 15
}

// walkFeedback calls note for each packet a transport-cc feedback packet
// reports on (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1),
// in order: its number, its arrival in µs on the subscriber's clock, or
// lost. It reads the bytes in place: a subscriber sends one every 50 to
// 100 ms, and pion's parser allocates for every packet reported on.
func walkFeedback(pkt []byte, note func(seq uint16, arrival int64, lost bool)) bool {
	if !IsFeedback(pkt) || len(pkt) < 4 {
		return false
	}
	n := 4 * (int(binary.BigEndian.Uint16(pkt[2:4])) + 1)
	if n > len(pkt) || n < 20 {
		return true
	}
	w := feedbackWalk{b: pkt[:n], note: note} // padding, if any, follows the deltas read
	w.left = int(binary.BigEndian.Uint16(w.b[14:16]))
	if !w.findDeltas() {
		return true
	}
	w.seq = binary.BigEndian.Uint16(w.b[12:14])
	w.arrival = (int64(w.b[16])<<16 | int64(w.b[17])<<8 | int64(w.b[18])) * 64000
	for off := 20; w.left > 0 && w.chunk(binary.BigEndian.Uint16(w.b[off:])); off += 2 {
	}
	return true
}

// feedbackWalk is walkFeedback's place in one feedback packet.
type feedbackWalk struct {
	b       []byte
	deltas  int    // where the next receive delta is
	seq     uint16 // the next packet's number
	arrival int64  // the last arrival, µs
	left    int    // packets still to report
	note    func(seq uint16, arrival int64, lost bool)
}

// findDeltas finds where the receive deltas begin, after the chunks;
// false when the chunks do not fit.
func (w *feedbackWalk) findDeltas() bool {
	w.deltas = 20
	for seen := 0; seen < w.left; w.deltas += 2 {
		if w.deltas+2 > len(w.b) {
			return false
		}
		seen += chunkLength(binary.BigEndian.Uint16(w.b[w.deltas:]))
	}
	return true
}

// chunk reports the packets one status chunk covers; false when the
// deltas run out.
func (w *feedbackWalk) chunk(c uint16) bool {
	switch {
	case c&0x8000 == 0: // run length: a symbol, repeated
		for range min(int(c&0x1fff), w.left) {
			if !w.symbol(c >> 13 & 3) {
				return false
			}
		}
	case c&0x4000 == 0: // a vector of 14 one-bit symbols
		for i := 13; i >= 0 && w.left > 0; i-- {
			if !w.symbol(c >> i & 1) {
				return false
			}
		}
	default: // a vector of 7 two-bit symbols
		for i := 6; i >= 0 && w.left > 0; i-- {
			if !w.symbol(c >> (2 * i) & 3) {
				return false
			}
		}
	}
	return true
}

// symbol reports the next packet: 0 lost, 1 received after a small
// delta, 2 after a large or negative one.
func (w *feedbackWalk) symbol(sym uint16) bool {
	lost := false
	switch sym {
	case 0:
		lost = true
	case 1:
		if w.deltas+1 > len(w.b) {
			return false
		}
		w.arrival += int64(w.b[w.deltas]) * 250
		w.deltas++
	case 2:
		if w.deltas+2 > len(w.b) {
			return false
		}
		w.arrival += int64(int16(binary.BigEndian.Uint16(w.b[w.deltas:]))) * 250
		w.deltas += 2
	}
	w.note(w.seq, w.arrival, lost)
	w.seq++
	w.left--
	return true
}

// chunkLength is how many packets a packet status chunk reports on.
func chunkLength(c uint16) int {
	switch {
	case c&0x8000 == 0:
		return int(c & 0x1fff)
	case c&0x4000 == 0:
		return 14
	default:
		return 7
	}
}

// noteLocked records the subscriber's report of the packet numbered seq.
func (s *Sender) noteLocked(seq uint16, arrival int64, lost bool) {
	next := s.next.Load()
	n := next + uint32(int32(int16(seq-uint16(next))))
	p := &s.sent[n%ringSize]
	tag := p.tag.Load()
	if uint32(tag>>32) != n || n >= next {
		return
	}
	r := &s.got[n%ringSize]
	if r.n == n && !r.lost && lost {
		return // reported received already: a later report of loss is stale
	}
	*r = report{n: n, at: p.at.Load(), arrival: arrival, size: uint16(min(uint32(tag), 0xffff)), lost: lost}
	if n+1 > s.newest || s.newest-n > 1<<31 {
		s.newest = n + 1
	}
	if lost {
		return
	}
	half := int64(baselineSpan/2) / int64(time.Microsecond)
	if r.at-s.baseAt > half {
		s.baseline[0], s.baseline[1], s.baseAt = s.baseline[1], noBaseline, r.at
	}
	s.baseline[1] = min(s.baseline[1], arrival-r.at)
}

// Stats describe a run of packets by what their feedback said.
type Stats struct {
	// Packets reported on, and of those, Lost.
	Packets, Lost int
	// Sent and Delivered are bits/s: the packets' sizes over the span of
	// their departures and of their arrivals (each span's first packet
	// excluded).
	Sent, Delivered float64
	// The least and the most queueing delay a received packet met: its
	// one-way delay beyond the least seen lately.
	MinQueue, MaxQueue time.Duration
}

// LossFraction is Lost of Packets (0 of none).
func (st Stats) LossFraction() float64 {
	if st.Packets == 0 {
		return 0
	}
	return float64(st.Lost) / float64(st.Packets)
}

// Range describes the packets numbered from to to (to excluded, numbers
// from Mark), and reports whether feedback covered the last of them.
func (s *Sender) Range(from, to uint32) (Stats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if to-from > ringSize || s.newest < to {
		return Stats{}, false
	}
	return s.statsLocked(from, to), true
}

// Recent describes the packets sent over window before the newest one
// the subscriber reported on; ok is false before any report.
func (s *Sender) Recent(window time.Duration) (st Stats, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	to := s.newest
	if to == 0 {
		return st, false
	}
	last := s.got[(to-1)%ringSize]
	from := to - 1
	for from > 0 && to-from < ringSize {
		r := &s.got[(from-1)%ringSize]
		if r.n != from-1 || last.at-r.at > int64(window/time.Microsecond) {
			break
		}
		from--
	}
	return s.statsLocked(from, to), true
}

func (s *Sender) statsLocked(from, to uint32) Stats {
	var st Stats
	base := min(s.baseline[0], s.baseline[1])
	firstAt, lastAt, firstArr, lastArr := int64(noBaseline), int64(-noBaseline), int64(noBaseline), int64(-noBaseline)
	var sentBytes, gotBytes, firstSize, firstArrSize int
	st.MinQueue = time.Duration(noBaseline)
	for n := from; n != to; n++ {
		r := &s.got[n%ringSize]
		if r.n != n || r.size == 0 {
			continue
		}
		st.Packets++
		sentBytes += int(r.size)
		if r.at < firstAt {
			firstAt, firstSize = r.at, int(r.size)
		}
		lastAt = max(lastAt, r.at)
		if r.lost {
			st.Lost++
			continue
		}
		gotBytes += int(r.size)
		if r.arrival < firstArr {
			firstArr, firstArrSize = r.arrival, int(r.size)
		}
		lastArr = max(lastArr, r.arrival)
		q := time.Duration(r.arrival-r.at-base) * time.Microsecond
		st.MinQueue, st.MaxQueue = min(st.MinQueue, q), max(st.MaxQueue, q)
	}
	if st.Packets == st.Lost {
		st.MinQueue = 0
	}
	if lastAt > firstAt {
		st.Sent = float64(sentBytes-firstSize) * 8 / (float64(lastAt-firstAt) / 1e6)
	}
	if lastArr > firstArr {
		st.Delivered = float64(gotBytes-firstArrSize) * 8 / (float64(lastArr-firstArr) / 1e6)
	}
	return st
}
