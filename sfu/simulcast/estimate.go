package simulcast

import "time"

// Estimator is one subscriber connection's estimate of the bandwidth its
// link carries, from the loss its receiver reports show against what was
// sent (the loss-based half of Google Congestion Control): heavy loss
// cuts the estimate (to what was sent, less half the fraction lost), no
// loss lets it grow past what is sent so that a higher layer can be
// tried. A report that covers time before the last cut says nothing of
// the rate cut to, and cuts nothing: browsers report audio every few
// seconds. A try that
// brings loss holds the next one back longer, so a link at its limit is
// not tried every few seconds. Not safe for concurrent use.
type Estimator struct {
	est        float64 // bits/s
	hold       time.Duration
	holdUntil  time.Time
	lastCut    time.Time
	severe     bool      // the last cut was for severe loss, and no fresh report since says less
	lastLoss   time.Time // the last report over lossLow
	lastGrowth time.Time
	// probed: the estimate grows only by probes that passed (Probed), as
	// the connection has transport-cc feedback to judge them.
	probed bool
}

// Report is one receiver report block's loss: the fraction lost of the
// packets expected since the stream's previous report, at Since.
type Report struct {
	Lost  float64
	Since time.Time
}

// Estimator limits.
const (
	// StartEstimate is what a new connection is assumed to carry: a
	// middle layer, which a link that cannot take it drops within a
	// report or two.
	StartEstimate = 1_000_000
	// MinEstimate keeps audio (and a low layer's try) always possible.
	MinEstimate = 50_000
	lossHigh    = 0.10
	lossLow     = 0.02
	lossSevere  = 0.25
	growth      = 2
	headroom    = 4
	// settle is how long a cut takes to show: the switch to a lower
	// layer waits for its keyframe, and the link's queue drains.
	settle  = time.Second
	minHold = 2 * time.Second
	maxHold = 6 * time.Second
	// A cut this soon after the estimate grew is a failed try.
	tryWindow = 3 * time.Second
	// After this long without loss, failed tries no longer count.
	calm = 10 * time.Second
)

// NewEstimator returns an estimator at StartEstimate.
func NewEstimator() *Estimator { return &Estimator{est: StartEstimate, hold: minHold} }

// Severe reports whether the last cut was for loss over a quarter and no
// report since it settled showed the link coping: a link that loses that
// much even at the lowest layer must give up video; less, when a
// keyframe's burst overflows a slow link's queue, or a link that lost
// much once and carries the layer it has now, is no reason to freeze the
// picture.
func (e *Estimator) Severe() bool { return e.severe }

// Estimate is the bandwidth to allocate, in bits/s.
func (e *Estimator) Estimate() float64 { return e.est }

// GrowByProbes stops the estimate growing from receiver reports: it grows
// by Probed from now on, once the link showed it carries more.
func (e *Estimator) GrowByProbes() { e.probed = true }

// Probed raises the estimate to probedShare of rate, in bits/s, which a
// probe showed the link carries: layers chosen to fill all of it would
// queue on it at their next keyframe.
func (e *Estimator) Probed(rate float64, now time.Time) {
	if r := rate * probedShare; r > e.est {
		e.est, e.lastGrowth = r, now
	}
}

// probedShare of what a probe delivered is what the layers may take.
const probedShare = 0.9

// Congested cuts the estimate below the rate the link delivered, in
// bits/s, when packets queue on the way (what transport-cc feedback
// shows before any loss), at most once per settle: a cut takes that long
// to show.
func (e *Estimator) Congested(delivered float64, now time.Time) {
	if now.Sub(e.lastCut) < settle {
		return
	}
	e.est = max(min(e.est, delivered*congestedShare), MinEstimate)
	e.lastCut = now
}

// congestedShare of what a congested link delivered leaves it time to
// drain its queue.
const congestedShare = 0.85

// Update takes one interval's reports and the bits/s sent over it.
func (e *Estimator) Update(reports []Report, sent float64, now time.Time) {
	if len(reports) == 0 {
		return
	}
	// fresh: the loss of reports that began after the last cut settled;
	// judged: some report began after the last growth settled.
	worst, fresh, anyFresh, judged := 0.0, 0.0, false, false
	for _, r := range reports {
		worst = max(worst, r.Lost)
		if !r.Since.Before(e.lastCut.Add(settle)) {
			fresh, anyFresh = max(fresh, r.Lost), true
		}
		judged = judged || !r.Since.Before(e.lastGrowth.Add(settle))
	}
	if anyFresh && fresh <= lossHigh {
		e.severe = false
	}
	switch {
	case fresh > lossHigh:
		e.severe = fresh > lossSevere
		e.lastLoss = now
		e.est = max(min(e.est, sent)*(1-0.5*fresh), MinEstimate)
		e.lastCut = now
		if now.Sub(e.lastGrowth) < tryWindow {
			e.hold = min(2*e.hold, maxHold)
		}
		e.holdUntil = now.Add(e.hold)
	case worst > lossLow:
		e.lastLoss = now
	default:
		if now.Sub(e.lastLoss) > calm {
			e.hold = minHold
		}
		if e.probed || now.Before(e.holdUntil) || !judged {
			return // held, or the last growth not judged yet
		}
		// Growth within a bound of what is sent, not from an estimate
		// nothing tested: enough above it to try the next layer (a few
		// times the one below), no more.
		if next := min(max(sent, MinEstimate)*headroom, e.est*growth); next > e.est {
			e.est, e.lastGrowth = next, now
		}
	}
}
