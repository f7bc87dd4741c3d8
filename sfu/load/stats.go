package load

import (
	"sort"
	"time"
)

// histogram counts durations in buckets of 1 µs up to 1 ms, 100 µs up to
// 100 ms and 10 ms up to 10 s: fine where the latency target is (≤ 1 ms),
// coarse where it no longer matters, and small enough for one per reader.
type histogram struct {
	counts [3000]uint32
	n      uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	us := d.Microseconds()
	switch {
	case us < 0:
		return 0
	case us < 1000:
		return int(us)
	case us < 100_000:
		return 1000 + int((us-1000)/100)
	case us < 10_000_000:
		return 1990 + int((us-100_000)/10_000)
	default:
		return 2999
	}
}

// upperBound is the largest duration bucket i holds.
func upperBound(i int) time.Duration {
	switch {
	case i < 1000:
		return time.Duration(i+1) * time.Microsecond
	case i < 1990:
		return time.Duration(1000+(i-1000+1)*100) * time.Microsecond
	default:
		return time.Duration(100_000+(i-1990+1)*10_000) * time.Microsecond
	}
}

func (h *histogram) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the upper bound of the bucket holding quantile q (0 < q ≤ 1),
// never above the largest sample.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return min(upperBound(i), h.max)
		}
	}
	return h.max
}

// seqTracker counts unique packets of one RTP stream by extended sequence
// number, so duplicates (retransmissions that raced the original) are not
// counted twice and loss = expected - received.
type seqTracker struct {
	started  bool
	first    int64
	highest  int64
	received int64
	seen     [64]uint64 // the last 4096 sequence numbers
}

const seqWindow = 64 * 64

func (s *seqTracker) bit(ext int64) (word int, mask uint64) {
	i := uint64(ext) % seqWindow
	return int(i / 64), 1 << (i % 64)
}

func (s *seqTracker) add(seq uint16) {
	if !s.started {
		s.started, s.first, s.highest, s.received = true, int64(seq), int64(seq), 1
		w, m := s.bit(int64(seq))
		s.seen[w] |= m
		return
	}
	ext := s.highest + int64(int16(seq-uint16(s.highest)))
	switch {
	case ext > s.highest:
		for i := s.highest + 1; i < ext && i <= s.highest+seqWindow; i++ {
			w, m := s.bit(i)
			s.seen[w] &^= m
		}
		w, m := s.bit(ext)
		s.seen[w] &^= m
		s.highest = ext
	case s.highest-ext >= seqWindow || ext < s.first:
		return // older than the window (or than the first packet): ignore
	}
	w, m := s.bit(ext)
	if s.seen[w]&m != 0 {
		return // duplicate
	}
	s.seen[w] |= m
	s.received++
}

// expected is the number of packets from the first to the highest.
func (s *seqTracker) expected() int64 {
	if !s.started {
		return 0
	}
	return s.highest - s.first + 1
}

// Summary is a distribution of durations in milliseconds.
type Summary struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50Ms"`
	P95 float64 `json:"p95Ms"`
	P99 float64 `json:"p99Ms,omitempty"`
	Max float64 `json:"maxMs"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (h *histogram) summary() Summary {
	return Summary{N: int(h.n), P50: ms(h.quantile(0.5)), P95: ms(h.quantile(0.95)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
}

// summarize exact samples (join times: few of them).
func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return Summary{N: len(s), P50: ms(at(0.5)), P95: ms(at(0.95)), Max: ms(s[len(s)-1])}
}
