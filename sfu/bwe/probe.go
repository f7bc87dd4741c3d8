package bwe

import "time"

// A probe sends padding on top of the media for a while, at twice the
// rate the link is thought to carry, to learn whether it carries more
// before any picture depends on it. A link that does not queues the
// probe (a shaper's token bucket passes its start at once, so the rate
// is judged on its latter part) or drops some of it: the probe fails,
// and the media behind it met no more than a short queue, as the probe
// stops once feedback shows one (Congested).
const (
	// ProbeDuration is how long a probe's padding is sent for: long
	// enough to outlast a token bucket's burst at the rates probed, short
	// enough to be judged within the next allocation, a second on.
	ProbeDuration = 800 * time.Millisecond
	// ProbeMaxQueue is the most queueing a passing probe may build.
	ProbeMaxQueue = 40 * time.Millisecond
	// probeMaxLoss is the most loss a passing probe may see.
	probeMaxLoss = 0.05
	// probeDelivered is how much of the rate sent must arrive.
	probeDelivered = 0.85
	// probeTimeout: a probe whose feedback has not come by then failed.
	probeTimeout = 2 * time.Second
)

// Probe is one probe's packets: those numbered from From to To, sent by At.
type Probe struct {
	From, To uint32
	At       time.Time
}

// Verdict is a probe's outcome.
type Verdict int

// Verdicts.
const (
	ProbePending Verdict = iota
	ProbePassed
	ProbeFailed
)

// Congested reports whether the newest feedback shows packets queueing
// more than a probe may make them, or lost: a probe under way stops.
func (s *Sender) Congested() bool {
	st, ok := s.Recent(probeWatch)
	return ok && (st.MaxQueue > ProbeMaxQueue || st.LossFraction() > probeMaxLoss)
}

// probeWatch is the run of the newest packets Congested looks at.
const probeWatch = 100 * time.Millisecond

// Judge tells whether the link carried the probe's packets: delivered at
// the rate they were sent, with little queueing and loss. With ProbePassed
// comes the rate it carried, in bits/s.
func (s *Sender) Judge(p Probe, now time.Time) (Verdict, float64) {
	all, ok := s.Range(p.From, p.To)
	if !ok {
		if now.Sub(p.At) > probeTimeout {
			return ProbeFailed, 0
		}
		return ProbePending, 0
	}
	tail, _ := s.Range(p.From+(p.To-p.From)/3, p.To)
	if all.Packets < 3 || all.LossFraction() > probeMaxLoss || all.MaxQueue > ProbeMaxQueue ||
		tail.Delivered < probeDelivered*tail.Sent {
		return ProbeFailed, 0
	}
	return ProbePassed, min(all.Sent, all.Delivered)
}
