package room

import (
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/simulcast"
)

// subscribe adds t to p's subscriber connection and renegotiates.
func (p *Participant) subscribe(t *publishedTrack) {
	if p.addSubscription(t) {
		p.negotiate()
	}
}

// subscribeAll adds tracks without negotiating: a joiner gets all the
// existing tracks in its first offer.
func (p *Participant) subscribeAll(tracks []*publishedTrack) {
	for _, t := range tracks {
		p.addSubscription(t)
	}
}

// addSubscription adds t's DownTrack to the subscriber connection and
// reports whether it did.
func (p *Participant) addSubscription(t *publishedTrack) bool {
	key := subKey{t.owner.id, t.id}
	p.subMu.Lock()
	if p.isClosed() || t.ended.Load() || p.subs[key] != nil {
		p.subMu.Unlock()
		return false
	}
	var down *forward.DownTrack
	if t.layers != nil {
		if down = t.layers.NewDownTrack(t.id, t.owner.id, p.subIndex); down == nil {
			p.subMu.Unlock()
			return false
		}
		// The lowest layer starts soonest and fits any link; the
		// allocation raises it within a report interval.
		down.SetTarget(0)
	} else {
		down = t.fwd.NewDownTrack(t.id, t.owner.id, p.subIndex)
	}
	down.SetTransportCC(p.cc)
	sender, err := p.sub.AddTrack(down)
	if err != nil {
		p.subMu.Unlock()
		p.log.Warn("subscribing", "track", t.id, "err", err)
		return false
	}
	p.subs[key] = &subscription{sender: sender, down: down, track: t, maxLayer: simulcast.MaxLayers - 1, told: noLayerTold}
	if s := p.subPath.NewStream(); s != nil {
		down.SetDirect(s)
	}
	p.subMu.Unlock()

	if p.goStart() {
		go p.readSubscriberRTCP(sender, down)
	}
	return true
}

// trackFor is down if set, else the subscription whose SSRC is ssrc.
func (p *Participant) trackFor(down *forward.DownTrack, ssrc uint32) *forward.DownTrack {
	if down != nil {
		return down
	}
	p.subMu.Lock()
	defer p.subMu.Unlock()
	for _, s := range p.subs {
		if got, ok := s.down.SSRC(); ok && got == ssrc {
			return s.down
		}
	}
	return nil
}

func (p *Participant) unsubscribe(publisher, track string) {
	key := subKey{publisher, track}
	p.subMu.Lock()
	s := p.subs[key]
	delete(p.subs, key)
	if s != nil {
		p.countPaused(s, false)
	}
	p.subMu.Unlock()
	if s == nil {
		return
	}
	s.down.Close()
	if p.isClosed() {
		return
	}
	if err := p.sub.RemoveTrack(s.sender); err != nil {
		p.log.Debug("removing track", "err", err)
	}
	p.negotiate()
}
