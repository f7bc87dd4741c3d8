package room

import (
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/bwe"
	"github.com/jbcalling/platform/sfu/forward"
)

// prober is the subscriber connection's probing of its link, the
// reporter goroutine's alone but for done, which the probe's sender
// fills once its padding is out.
type prober struct {
	// busy: the last feedback showed a queue or loss on the link; set by
	// the reporter, read by the RTCP reader, which resends nothing then
	// (a retransmission into a full queue only adds to the loss).
	busy    atomic.Bool
	done    chan bwe.Probe
	running bool
	sent    *bwe.Probe // out, not judged yet
	next    time.Time
	backoff time.Duration
}

// Congestion and probing.
const (
	// congestionWindow is the run of packets the feedback is judged over
	// at each allocation.
	congestionWindow = 500 * time.Millisecond
	// congestedQueue: a link on which even the least delayed packet of
	// the window queued this long is carrying more than it can.
	congestedQueue = 60 * time.Millisecond
	congestedLoss  = 0.10
	// busyQueue and busyLoss: a link queueing or losing this much is
	// not probed, nor sent retransmissions.
	busyQueue = 20 * time.Millisecond
	busyLoss  = 0.02
	// A failed probe holds the next back, twice as long each time up to
	// probeMaxBackoff (a lifted limit is found within it).
	probeMinBackoff = 2 * time.Second
	probeMaxBackoff = 3 * time.Second
	// A probe tries probeGrowth times the estimate: twice, so that a
	// shaper's burst does not hide the limit of a link that carries a
	// little more than the estimate, and the layers are climbed in a
	// few probes. probeMaxRate bounds its padding.
	probeGrowth  = 2
	probeMaxRate = 4_000_000
	// probeTick is how often the padding goes out during a probe.
	probeTick = 5 * time.Millisecond
)

// senseCongestion cuts the estimate when the last feedback shows packets
// queueing or lost on the subscriber's link; from the first feedback on,
// the estimate grows by probes alone.
func (p *Participant) senseCongestion(now time.Time) {
	st, ok := p.cc.Recent(congestionWindow)
	if !ok {
		return
	}
	p.bwe.GrowByProbes()
	p.probe.busy.Store(st.MinQueue > busyQueue || st.LossFraction() > busyLoss)
	if st.Packets >= 5 && (st.MinQueue > congestedQueue || st.LossFraction() > congestedLoss) {
		p.log.Debug("congested", "queue", st.MinQueue, "lost", st.LossFraction(), "delivered", int(st.Delivered), "sent", int(st.Sent), "packets", st.Packets)
		p.bwe.Congested(st.Delivered, now)
		p.m.cfg.Counters.CongestionCuts.Add(1)
	}
}

// judgeProbe applies the verdict on the last probe sent, if there is
// one yet, to the estimate.
func (p *Participant) judgeProbe(now time.Time) {
	pr := &p.probe
	select {
	case got := <-pr.done:
		pr.sent = &got
	default:
	}
	if pr.sent == nil {
		return
	}
	verdict, rate := p.cc.Judge(*pr.sent, now)
	switch verdict {
	case bwe.ProbePending:
		return
	case bwe.ProbePassed:
		p.bwe.Probed(rate, now)
		p.m.cfg.Counters.ProbesPassed.Add(1)
		pr.backoff, pr.next = 0, now
	case bwe.ProbeFailed:
		pr.backoff = min(max(2*pr.backoff, probeMinBackoff), probeMaxBackoff)
		pr.next = now.Add(pr.backoff)
	}
	p.log.Debug("probe", "passed", verdict == bwe.ProbePassed, "rate", int(rate))
	pr.sent, pr.running = nil, false
}

// probeLink sends a probe, on pad's SSRC, when the estimate stands
// between the subscriber and a layer it would receive (need is the
// estimate that layer takes, sent what is sent now, in bits/s) and the
// link is not busy.
func (p *Participant) probeLink(now time.Time, need, sent float64, pad *forward.DownTrack) {
	pr := &p.probe
	if pr.running || pad == nil || need <= p.bwe.Estimate() || now.Before(pr.next) || pr.busy.Load() ||
		p.cc.ExtensionID() == 0 || !p.goStart() {
		return
	}
	pr.running = true
	p.m.cfg.Counters.Probes.Add(1)
	rate := min(max(probeGrowth*p.bwe.Estimate()-sent, 0), probeMaxRate)
	go p.sendProbe(pad, rate)
}

// sendProbe sends padding at rate bits/s on pad's SSRC for
// bwe.ProbeDuration, or until the link shows congestion, then hands the
// probe's packets to the reporter.
func (p *Participant) sendProbe(pad *forward.DownTrack, rate float64) {
	defer p.wg.Done()
	from := p.cc.Mark()
	const size = forward.MaxPadding + 40 // and its header, roughly
	t := time.NewTicker(probeTick)
	defer t.Stop()
	credit := 0.0
	for end := time.Now().Add(bwe.ProbeDuration); time.Now().Before(end) && !p.isClosed() && !p.cc.Congested(); <-t.C {
		credit += rate / 8 * probeTick.Seconds()
		for ; credit >= size; credit -= size {
			if err := pad.SendPadding(); err != nil {
				p.log.Debug("probe padding", "err", err)
				credit = 0
			}
		}
	}
	p.probe.done <- bwe.Probe{From: from, To: p.cc.Mark(), At: time.Now()}
}
