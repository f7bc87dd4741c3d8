package room

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
)

// ErrNotAgent: only agents send captions, so nobody can put words in
// another participant's mouth.
var ErrNotAgent = errors.New("room: captions come from agents only")

// SetLanguages records what p speaks and wants and tells the others.
func (p *Participant) SetLanguages(language, translateTo string) {
	r := p.room
	r.mu.Lock()
	p.language, p.translateTo = language, translateTo
	others := r.othersLocked(p)
	r.mu.Unlock()
	for _, o := range others {
		o.send(&signal.Languages{ParticipantID: p.id, Language: language, TranslateTo: translateTo})
	}
	// Who hears which translation, and whose own voice, may change.
	p.reconcile()
	for _, o := range others {
		o.reconcile()
	}
}

// SendData relays an app message (chat, captions) from p to the others in
// its room, or to those to names, stamped with p's id and the server's
// time. Through the signalling connections it is reliable and ordered
// per sender, like the rest of the room's messages.
func (p *Participant) SendData(topic string, payload json.RawMessage, to []string) error {
	if topic == signal.TopicCaptions && !p.agent {
		return ErrNotAgent
	}
	r := p.room
	r.mu.Lock()
	var targets []*Participant
	if len(to) == 0 {
		targets = r.othersLocked(p)
	} else {
		for _, id := range to {
			o := r.participants[id]
			if o == nil {
				r.mu.Unlock()
				return fmt.Errorf("%w: %q", ErrUnknownParticipant, id)
			}
			if o != p && !slices.Contains(targets, o) {
				targets = append(targets, o)
			}
		}
	}
	r.mu.Unlock()
	msg := &signal.Data{From: p.id, TS: time.Now().UnixMilli(), Topic: topic, Payload: payload, To: to}
	for _, o := range targets {
		o.send(msg)
	}
	return nil
}
