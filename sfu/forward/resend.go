package forward

import (
	"time"

	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/jbcalling/platform/sfu/simulcast"
	"github.com/pion/rtcp"
	"golang.org/x/time/rate"
)

// Retransmission limits: a NACK names up to thousands of packets in a few
// bytes (136 bytes asked for 512, 581 KB), so each NACK is answered for at
// most MaxResendPerNACK packets, each packet at most once per round trip
// (minResendGap before one is measured), within the subscriber's budget.
const (
	MaxResendPerNACK = 64
	minResendGap     = 100 * time.Millisecond
)

// ResendBudget bounds one subscriber's retransmissions across its tracks:
// a token bucket of packets. Safe for concurrent use.
type ResendBudget struct{ bucket *rate.Limiter }

// NewResendBudget allows perSecond retransmissions a second, burst at once.
func NewResendBudget(perSecond float64, burst int) *ResendBudget {
	return &ResendBudget{bucket: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// take spends one retransmission, if the budget has it.
func (b *ResendBudget) take(now time.Time) bool {
	return b == nil || b.bucket.AllowN(now, 1)
}

// SetRTT records the subscriber's round trip, which spaces resends of one
// packet.
func (d *DownTrack) SetRTT(rtt time.Duration) { d.rtt.Store(int64(rtt)) }

// Resend answers a subscriber's NACK from the track's history and returns
// how many packets it sent again: each under the index it was first sent
// with, with the same bytes, on the same path. Packets no longer kept, or
// first sent by another track or path, are skipped (the subscriber then
// asks for a keyframe); so are those beyond the limits above (budget may
// be nil: no budget).
func (d *DownTrack) Resend(nack *rtcp.TransportLayerNack, budget *ResendBudget) int {
	b := d.bound.Load()
	if b == nil || d.f.hist == nil {
		return 0
	}
	d.resendMu.Lock()
	defer d.resendMu.Unlock()
	now := d.f.now()
	gap := max(time.Duration(d.rtt.Load()), minResendGap)
	sent, tried, stop := 0, 0, false
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			if tried == MaxResendPerNACK {
				stop = true
				return false
			}
			switch d.resendOne(b, seq, now, gap, budget) {
			case resendSent:
				sent++
				tried++
			case resendTried:
				tried++
			case resendOverBudget:
				stop = true
				return false
			}
			return true
		})
		if stop {
			break
		}
	}
	d.f.cfg.Counters.Retransmissions.Add(uint64(sent))
	return sent
}

type resendResult int

const (
	resendSkipped    resendResult = iota // not kept, not ours, or resent within a round trip
	resendTried                          // tried, and counted, but not sent
	resendSent                           // sent again
	resendOverBudget                     // the subscriber's budget is spent: no more
)

// resendOne sends the packet the subscriber numbered seq again, under
// its index, if it may; resendMu held.
func (d *DownTrack) resendOne(b *binding, seq uint16, now time.Time, gap time.Duration, budget *ResendBudget) resendResult {
	index, source, src, via, err := b.out.Sent(seq)
	if err != nil {
		return resendSkipped
	}
	h, off := d.f.hist, simulcast.Offsets{}
	if d.sim != nil {
		ls, ok := d.layerOf(source)
		if !ok {
			return resendSkipped
		}
		h, off = ls.f.hist, ls.off
	} else if source != b.source {
		return resendSkipped
	}
	slot := index % rtpindex.RingSize
	if d.resentIndex[slot] == index+1 && now.UnixNano()-d.resentAt[slot] < int64(gap) {
		return resendSkipped // resent within a round trip: that copy is on its way
	}
	if !budget.take(now) {
		return resendOverBudget
	}
	d.resentIndex[slot], d.resentAt[slot] = index+1, now.UnixNano()
	s := d.direct.Load()
	if (s != nil) != (via == rtpindex.ViaDirect) {
		return resendTried
	}
	n, ok := h.get(src, d.rbuf[:])
	if !ok || d.rpkt.Unmarshal(d.rbuf[:n]) != nil {
		return resendTried
	}
	if d.sim != nil {
		simulcast.Rewrite(off, &d.rpkt.Header, d.rpkt.Payload)
	}
	head := d.rhdr.marshal(b.shape, &d.rpkt.Header, &d.rhead)
	if head == nil {
		return resendTried
	}
	var o outPacket
	o.set(d.rbuf[:n], &d.rpkt)
	if d.seal(s, b, b.shape, head, &o, index, nil, &d.rhdr) {
		return resendSent
	}
	return resendTried
}
