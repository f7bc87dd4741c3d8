package room

import (
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/rtp"
)

// ActiveSpeakersInterval is how often each room's speakers are ranked;
// a room hears of a new ranking at most this often.
const ActiveSpeakersInterval = 500 * time.Millisecond

// MaxActiveSpeakers is the longest list a room gets.
const MaxActiveSpeakers = 3

// speakingLevel is the quietest smoothed level that counts as speaking:
// -40 dBov, well above a quiet room's background and below speech.
const speakingLevel = 0.01

// linearLevel maps the audio level extension's -dBov (0 to 127) to a
// linear amplitude from 0 to 1.
var linearLevel = func() (t [128]float64) {
	for i := range t {
		t[i] = math.Pow(10, -float64(i)/20)
	}
	return t
}()

// levelMeter averages one audio track's levels, as its publisher put them
// in the ssrc-audio-level header extension (RFC 6464), between rankings.
type levelMeter struct {
	extID uint8
	sum   atomic.Uint64 // linear levels × 1e6
	n     atomic.Uint64
	// smoothed is the ranker's running level (its goroutine's alone).
	smoothed float64
}

// observe reads one packet's level; the receive path calls it.
func (m *levelMeter) observe(hdr *rtp.Header) {
	ext := hdr.GetExtension(m.extID)
	if len(ext) == 0 {
		return
	}
	m.sum.Add(uint64(linearLevel[ext[0]&0x7f] * 1e6))
	m.n.Add(1)
}

// take is the mean level since the last take (0 if no packet came:
// a muted or silent publisher sends none).
func (m *levelMeter) take() float64 {
	n, sum := m.n.Swap(0), m.sum.Swap(0)
	if n == 0 {
		return 0
	}
	return float64(sum) / float64(n) / 1e6
}

// speakers ranks the metered tracks of every room while there are any,
// and tells each room when its list of speakers changes.
type speakers struct {
	mu     sync.Mutex
	tracks map[*publishedTrack]struct{}
	stop   chan struct{} // non-nil while the goroutine runs
	done   chan struct{}
	last   map[*Room][]string // the ranker goroutine's
}

func (s *speakers) add(t *publishedTrack) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tracks == nil {
		s.tracks = map[*publishedTrack]struct{}{}
	}
	s.tracks[t] = struct{}{}
	if s.stop == nil {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.run(s.stop, s.done)
	}
}

// remove unregisters t; the last one out waits for the goroutine to end.
func (s *speakers) remove(t *publishedTrack) {
	s.mu.Lock()
	if _, ok := s.tracks[t]; !ok {
		s.mu.Unlock()
		return
	}
	delete(s.tracks, t)
	var done chan struct{}
	if len(s.tracks) == 0 && s.stop != nil {
		close(s.stop)
		done, s.stop, s.done = s.done, nil, nil
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (s *speakers) run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(ActiveSpeakersInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.rank()
		}
	}
}

func (s *speakers) rank() {
	s.mu.Lock()
	tracks := make([]*publishedTrack, 0, len(s.tracks))
	for t := range s.tracks {
		tracks = append(tracks, t)
	}
	s.mu.Unlock()

	levels := map[*Room]map[string]float64{}
	for _, t := range tracks {
		m := t.meter
		m.smoothed = 0.5*m.smoothed + 0.5*m.take()
		r := t.owner.room
		if levels[r] == nil {
			levels[r] = map[string]float64{}
		}
		if m.smoothed >= speakingLevel && m.smoothed > levels[r][t.owner.id] {
			levels[r][t.owner.id] = m.smoothed
		}
	}
	if s.last == nil {
		s.last = map[*Room][]string{}
	}
	for r := range s.last {
		if levels[r] == nil {
			levels[r] = map[string]float64{} // silent now, or its speakers left
		}
	}
	for r, byID := range levels {
		list := make([]signal.Speaker, 0, len(byID))
		for id, l := range byID {
			list = append(list, signal.Speaker{ParticipantID: id, Level: math.Round(l*1000) / 1000})
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].Level != list[j].Level {
				return list[i].Level > list[j].Level
			}
			return list[i].ParticipantID < list[j].ParticipantID
		})
		if len(list) > MaxActiveSpeakers {
			list = list[:MaxActiveSpeakers]
		}
		ids := make([]string, len(list))
		for i, sp := range list {
			ids[i] = sp.ParticipantID
		}
		if slices.Equal(ids, s.last[r]) {
			continue
		}
		if len(ids) == 0 {
			delete(s.last, r)
		} else {
			s.last[r] = ids
		}
		r.mu.Lock()
		members := make([]*Participant, 0, len(r.participants))
		for _, p := range r.participants {
			members = append(members, p)
		}
		r.mu.Unlock()
		msg := &signal.ActiveSpeakers{Speakers: list}
		for _, p := range members {
			p.send(msg)
		}
	}
}
