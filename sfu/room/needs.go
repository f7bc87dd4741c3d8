package room

import (
	"slices"
	"sort"

	"github.com/jbcalling/platform/sfu/signal"
)

// Needs lists the rooms where someone wants another participant's speech
// in a language that participant does not speak, by name. A speaker who
// declared no language may speak anything, so asking for any language in
// their room is a need.
func (m *Manager) Needs() []signal.RoomNeed {
	m.mu.Lock()
	rooms := make([]*Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		rooms = append(rooms, r)
	}
	m.mu.Unlock()
	var out []signal.RoomNeed
	for _, r := range rooms {
		if n, ok := r.need(); ok {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Room < out[j].Room })
	return out
}

func (r *Room) need() (signal.RoomNeed, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := signal.RoomNeed{Room: r.name}
	for _, listener := range r.participants {
		if listener.agent {
			n.Agents++
			continue
		}
		if listener.translateTo == "" || slices.Contains(n.Wanted, listener.translateTo) {
			continue
		}
		for _, speaker := range r.participants {
			if speaker != listener && !speaker.agent && speaker.language != listener.translateTo {
				n.Wanted = append(n.Wanted, listener.translateTo)
				break
			}
		}
	}
	sort.Strings(n.Wanted)
	return n, len(n.Wanted) > 0
}
