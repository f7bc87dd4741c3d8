package bwe

import (
	"time"

	"github.com/pion/rtcp"
)

// baselineSpan is how long the least one-way delay seen stays the
// baseline: long enough to remember an empty queue while the link is
// busy, short enough to follow a route that changed. Two halves of it
// are kept.
const baselineSpan = 10 * time.Second

// Feedback takes one transport-cc feedback packet from the subscriber.
// Numbers the Sender does not remember (too old, or never sent) are
// skipped.
func (s *Sender) Feedback(fb *rtcp.TransportLayerCC) {
	s.mu.Lock()
	defer s.mu.Unlock()
	arrival := int64(fb.ReferenceTime) * 64000 // µs on the subscriber's clock
	seq, left := fb.BaseSequenceNumber, int(fb.PacketStatusCount)
	deltas := fb.RecvDeltas
	note := func(symbol uint16) {
		lost := symbol == rtcp.TypeTCCPacketNotReceived
		if !lost && symbol != rtcp.TypeTCCPacketReceivedWithoutDelta {
			if len(deltas) == 0 {
				lost = true // malformed: a received packet without its delta
			} else {
				arrival += deltas[0].Delta
				deltas = deltas[1:]
			}
		}
		s.noteLocked(seq, arrival, lost)
		seq++
		left--
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for i := uint16(0); i < c.RunLength && left > 0; i++ {
				note(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range c.SymbolList {
				if left == 0 {
					break
				}
				note(sym)
			}
		}
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
	*r = report{n: n, at: p.at.Load(), arrival: arrival, size: int(uint32(tag)), lost: lost}
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
		sentBytes += r.size
		if r.at < firstAt {
			firstAt, firstSize = r.at, r.size
		}
		lastAt = max(lastAt, r.at)
		if r.lost {
			st.Lost++
			continue
		}
		gotBytes += r.size
		if r.arrival < firstArr {
			firstArr, firstArrSize = r.arrival, r.size
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
