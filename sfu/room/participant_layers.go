package room

import (
	"fmt"
	"time"

	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/jbcalling/platform/sfu/simulcast"
)

// SetSubscription records what the subscriber wants of one remote
// simulcast track: its highest layer (nil: any) or none (paused). The
// next allocation applies it.
func (p *Participant) SetSubscription(publisher, track string, maxLayer *int, paused bool) error {
	p.subMu.Lock()
	defer p.subMu.Unlock()
	s := p.subs[subKey{publisher, track}]
	if s == nil {
		return fmt.Errorf("%w: %q of %q is not among this participant's subscriptions", ErrUnknownTrack, track, publisher)
	}
	s.maxLayer, s.paused = simulcast.MaxLayers-1, paused
	if maxLayer != nil {
		s.maxLayer = *maxLayer
	}
	return nil
}

// noLayerTold: the subscriber was told nothing of the track yet.
const noLayerTold = -2

// noteLoss keeps a receiver report block's fraction lost (of 256) for
// the next allocation, with the time the stream's previous report came
// (the interval the fraction covers).
func (p *Participant) noteLoss(ssrc uint32, fraction uint8, now time.Time) {
	p.lossMu.Lock()
	defer p.lossMu.Unlock()
	if p.lastReport == nil {
		p.lastReport = map[uint32]time.Time{}
	}
	since, ok := p.lastReport[ssrc]
	p.lastReport[ssrc] = now
	if !ok || len(p.losses) >= maxLossReports {
		return // the first covers an unknown time
	}
	p.losses = append(p.losses, simulcast.Report{Lost: float64(fraction) / 256, Since: since})
}

// maxLossReports bounds what a subscriber's reports can make the server
// keep between two allocations.
const maxLossReports = 64

// allocateLayers updates the estimate of what the subscriber's link
// carries from the last interval's reports, chooses each simulcast
// track's layer within it after the tracks of one layer (audio first:
// they are never paused for video), and tells the subscriber of layers
// that changed. The reporter calls it each interval.
func (p *Participant) allocateLayers(now time.Time) {
	type simSub struct {
		key subKey
		s   *subscription
	}
	var (
		sims     []simSub
		tracks   []simulcast.Track // the layers sent now
		ideal    []simulcast.Track // every layer the publisher sent, at its last rate
		sent     float64           // bits since the last allocation
		reserved float64           // bits of the tracks of one layer
	)
	p.subMu.Lock()
	for k, s := range p.subs {
		octets := s.down.Octets()
		bits := float64(octets-s.octets) * 8
		s.octets = octets
		sent += bits
		if !s.down.Simulcast() {
			reserved += bits
			continue
		}
		layers := s.down.Layers()
		tr := simulcast.Track{Rates: layers.Rates(now), Max: s.maxLayer}
		if s.paused {
			tr.Max = simulcast.Paused
		}
		sims = append(sims, simSub{k, s})
		tracks = append(tracks, tr)
		tr.Rates = layers.Known()
		ideal = append(ideal, tr)
	}
	p.subMu.Unlock()
	secs := SenderReportInterval.Seconds()
	p.lossMu.Lock()
	reports := p.losses
	p.losses = nil
	p.lossMu.Unlock()
	p.bwe.Update(reports, sent/secs, now)
	p.senseCongestion(now)
	p.judgeProbe(now)
	if len(sims) == 0 {
		return
	}
	// The layers the estimate allows if the publisher sent them all, and
	// of those, the best it sends now.
	budget := p.bwe.Estimate() - reserved/secs
	best := simulcast.Allocate(budget, ideal)
	targets := simulcast.Allocate(budget, tracks)
	for i, t := range tracks {
		if b := best[i]; b != simulcast.Paused && t.Rates[b] > 0 {
			targets[i] = b
		}
	}
	p.log.Debug("simulcast layers", "estimate", int(p.bwe.Estimate()), "sent", int(sent/secs), "reserved", int(reserved/secs),
		"targets", targets, "rates", tracks)
	if f := p.m.cfg.Counters.ObserveEstimate; f != nil {
		f(p.bwe.Estimate())
	}
	for i, ss := range sims {
		d := ss.s.down
		if cur := d.Layer(); targets[i] == simulcast.Paused && tracks[i].Max != simulcast.Paused && !p.bwe.Severe() &&
			cur != simulcast.Paused && cur == tracks[i].Lowest() {
			targets[i] = cur // see Estimator.Severe
		}
		d.SetTarget(targets[i])
		p.wantLayers(ss.s.track, now, best[i], targets[i], d.Layer())
		if layer := d.Layer(); layer != ss.s.told {
			ss.s.told = layer
			p.subMu.Lock()
			if p.subs[ss.key] == ss.s {
				p.countPaused(ss.s, layer == simulcast.Paused)
			}
			p.subMu.Unlock()
			p.send(&signal.Layer{ParticipantID: ss.key.publisher, TrackID: ss.key.track, Layer: max(layer, 0), Target: max(targets[i], 0),
				Paused: layer == simulcast.Paused})
		}
	}
	need, pad := 0.0, (*forward.DownTrack)(nil)
	if i, extra, ok := simulcast.Step(ideal, targets); ok {
		need = p.bwe.Estimate() + extra
		pad = p.paddingTrack(sims[i].s.down)
	}
	p.probeLink(now, need, sent/secs, pad)
}

// paddingTrack is the track a probe pads: first, one whose layer it is to
// raise, else another video track being sent, else any track; nil if
// none has sent a packet to follow.
func (p *Participant) paddingTrack(first *forward.DownTrack) *forward.DownTrack {
	if first.Layer() != simulcast.Paused {
		return first
	}
	p.subMu.Lock()
	defer p.subMu.Unlock()
	var other *forward.DownTrack
	for _, s := range p.subs {
		switch {
		case s.down.Simulcast() && s.down.Layer() != simulcast.Paused:
			return s.down
		case !s.down.Simulcast() && s.down.Octets() > 0:
			other = s.down
		}
	}
	return other
}

// countPaused keeps s in Counters.PausedLayers while paused; subMu held.
func (p *Participant) countPaused(s *subscription, paused bool) {
	if s.counted != paused {
		s.counted = paused
		d := int64(1)
		if !paused {
			d = -1
		}
		p.m.cfg.Counters.PausedLayers.Add(d)
	}
}

// wantLayers asks for t's layers this subscriber receives, aims for, or
// could take were they sent; with a new round of allocations, it tells
// t's publisher which layers anyone wanted in the last.
func (p *Participant) wantLayers(t *publishedTrack, now time.Time, layers ...int) {
	var mask uint8
	for _, l := range layers {
		if l >= 0 && l < simulcast.MaxLayers {
			mask |= 1 << l
		}
	}
	wanted, changed := t.layers.Want(mask, now, SenderReportInterval)
	if !changed || t.mid == "" {
		return
	}
	active := make([]bool, t.nLayers)
	for l := range active {
		active[l] = wanted&(1<<l) != 0
	}
	t.owner.send(&signal.ActiveLayers{MID: t.mid, Active: active})
}
