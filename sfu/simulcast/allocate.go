package simulcast

// MaxLayers is the most layers of one track.
const MaxLayers = 3

// Track is one of a subscriber's simulcast video tracks, as the
// allocation sees it.
type Track struct {
	// Rates are the bits/s each layer arrives at, lowest first; 0 for a
	// layer the publisher does not send now.
	Rates [MaxLayers]float64
	// Max is the highest layer the subscriber asked for (MaxLayers-1:
	// any); Paused for none.
	Max int
}

// Allocate chooses a layer for each track (Paused for none) within budget
// bits/s: first the lowest layer of each track, in order, while it fits,
// then one step up at a time, track after track, while the step fits. So
// every track is seen before any is sharp, and a budget too small for
// any layer pauses video (the caller reserves audio first).
func Allocate(budget float64, tracks []Track) []int {
	out := make([]int, len(tracks))
	for i, t := range tracks {
		out[i] = Paused
		if l := t.next(Paused); l != Paused && t.Rates[l] <= budget {
			out[i], budget = l, budget-t.Rates[l]
		}
	}
	for stepped := true; stepped; {
		stepped = false
		for i, t := range tracks {
			if out[i] == Paused {
				continue
			}
			l := t.next(out[i])
			if l == Paused || t.Rates[l]-t.Rates[out[i]] > budget {
				continue
			}
			budget -= t.Rates[l] - t.Rates[out[i]]
			out[i], stepped = l, true
		}
	}
	return out
}

// Lowest is the lowest layer sent and allowed, or Paused.
func (t Track) Lowest() int { return t.next(Paused) }

// next is the lowest layer above from that is sent and allowed, or Paused.
func (t Track) next(from int) int {
	for l := from + 1; l <= min(t.Max, MaxLayers-1); l++ {
		if t.Rates[l] > 0 {
			return l
		}
	}
	return Paused
}

// Step is the first track, in order, whose layer in chosen could go one
// step up (a paused one: to its lowest), and the bits/s the step adds;
// ok is false when every track has the highest layer it may.
func Step(tracks []Track, chosen []int) (track int, extra float64, ok bool) {
	for i, t := range tracks {
		l := t.next(chosen[i])
		if l == Paused {
			continue
		}
		extra = t.Rates[l]
		if chosen[i] != Paused {
			extra -= t.Rates[chosen[i]]
		}
		return i, extra, true
	}
	return 0, 0, false
}
