package room

import (
	"fmt"
	"time"

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

// noteLoss keeps the worst fraction lost (of 256) a receiver report gave
// since the last allocation.
func (p *Participant) noteLoss(fraction uint8) {
	v := int32(fraction) + 1
	for {
		old := p.worstLoss.Load()
		if old >= v || p.worstLoss.CompareAndSwap(old, v) {
			return
		}
	}
}

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
		tracks   []simulcast.Track
		sent     float64 // bits since the last allocation
		reserved float64 // bits of the tracks of one layer
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
	}
	p.subMu.Unlock()
	secs := SenderReportInterval.Seconds()
	p.bwe.Update(float64(p.worstLoss.Swap(0)-1)/256, sent/secs, now)
	if len(sims) == 0 {
		return
	}
	targets := simulcast.Allocate(p.bwe.Estimate()-reserved/secs, tracks)
	for i, ss := range sims {
		d := ss.s.down
		d.SetTarget(targets[i])
		if layer := d.Layer(); layer != ss.s.told {
			ss.s.told = layer
			p.send(&signal.Layer{ParticipantID: ss.key.publisher, TrackID: ss.key.track, Layer: max(layer, 0), Target: max(targets[i], 0),
				Paused: layer == simulcast.Paused})
		}
	}
}
