package room

import "github.com/jbcalling/platform/sfu/signal"

// An agent publishes one track per (speaker, language); it may publish
// that many more than a person.
const maxAgentTracks = 64

// wants reports whether p receives t; see wantsLocked.
func (r *Room) wants(p *Participant, t *publishedTrack) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wantsLocked(p, t)
}

// wantsLocked reports whether p receives t: a translation only by those
// who want its language (never its own speaker), and a speaker's own
// voice not by those who get it translated into the language they want.
// Everything else goes to everyone. r.mu is held.
func (r *Room) wantsLocked(p *Participant, t *publishedTrack) bool {
	switch {
	case t.source == signal.SourceTranslation:
		return p.translateTo == t.lang && p.id != t.translationOf
	case t.source != signal.SourceMicrophone || p.translateTo == "" || p.translateTo == t.owner.language:
		return true
	}
	for _, a := range r.participants {
		if !a.agent {
			continue
		}
		for _, tr := range a.tracks {
			if tr.source == signal.SourceTranslation && tr.translationOf == t.owner.id && tr.lang == p.translateTo && !tr.ended.Load() {
				return false
			}
		}
	}
	return true
}

// reconcile brings p's subscriptions in line with wantsLocked after the
// room's translations or languages changed, and renegotiates once.
func (p *Participant) reconcile() {
	if p.isClosed() {
		return
	}
	r := p.room
	r.mu.Lock()
	want := map[subKey]*publishedTrack{}
	for _, o := range r.othersLocked(p) {
		for _, t := range o.tracks {
			if !t.ended.Load() && r.wantsLocked(p, t) {
				want[subKey{o.id, t.id}] = t
			}
		}
	}
	r.mu.Unlock()
	p.subMu.Lock()
	var drop []subKey
	for k := range p.subs {
		if want[k] == nil {
			drop = append(drop, k)
		}
	}
	p.subMu.Unlock()
	changed := false
	for _, t := range want {
		if p.addSubscription(t) {
			changed = true
		}
	}
	for _, k := range drop {
		p.unsubscribe(k.publisher, k.track) // renegotiates
	}
	if changed && len(drop) == 0 {
		p.negotiate()
	}
}
