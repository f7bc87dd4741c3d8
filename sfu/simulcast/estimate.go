package simulcast

import "time"

// Estimator is one subscriber connection's estimate of the bandwidth its
// link carries, from the loss its receiver reports show against what was
// sent (the loss-based half of Google Congestion Control): heavy loss
// brings the estimate down to what got through, no loss lets it grow
// past what is sent so that a higher layer can be tried. A try that
// brings loss holds the next one back longer, so a link at its limit is
// not probed every second. Not safe for concurrent use.
type Estimator struct {
	est       float64 // bits/s
	hold      time.Duration
	holdUntil time.Time
	lastLoss  time.Time // the last report over lossLow
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
	growth      = 1.5
	headroom    = 4
	minHold     = 2 * time.Second
	maxHold     = 16 * time.Second
	// After this long without loss, a failed try no longer counts.
	calm = 10 * time.Second
)

// NewEstimator returns an estimator at StartEstimate.
func NewEstimator() *Estimator { return &Estimator{est: StartEstimate, hold: minHold} }

// Estimate is the bandwidth to allocate, in bits/s.
func (e *Estimator) Estimate() float64 { return e.est }

// Update takes one interval's reports: loss is the highest fraction lost
// any receiver report gave (negative when none came), sent the bits/s
// sent over the interval.
func (e *Estimator) Update(loss, sent float64, now time.Time) {
	switch {
	case loss < 0:
		return
	case loss > lossHigh:
		e.est = max(sent*(1-0.5*loss), MinEstimate)
		e.lastLoss = now
		e.holdUntil = now.Add(e.hold)
		e.hold = min(2*e.hold, maxHold)
	case loss > lossLow:
		e.lastLoss = now
	default:
		if now.Sub(e.lastLoss) > calm {
			e.hold = minHold
		}
		if !now.Before(e.holdUntil) {
			// Growth within a bound of what is sent, not from an estimate
			// nothing tested: enough above it to try the next layer (a
			// few times the one below), no more.
			e.est = max(e.est, min(max(sent, MinEstimate)*headroom, e.est*growth))
		}
	}
}
