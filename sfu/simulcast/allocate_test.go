package simulcast

import (
	"slices"
	"testing"
	"time"
)

var qhf = [MaxLayers]float64{150_000, 500_000, 1_500_000}

// Every track first gets its lowest layer, then tracks step up in turn
// while the step fits; what the subscriber asked for and what the
// publisher sends bound the choice; too little for any layer pauses.
func TestAllocate(t *testing.T) {
	for _, c := range []struct {
		name   string
		budget float64
		tracks []Track
		want   []int
	}{
		{"plenty", 10e6, []Track{{Rates: qhf, Max: 2}, {Rates: qhf, Max: 2}}, []int{2, 2}},
		{"each seen before any is sharp", 1.2e6, []Track{{Rates: qhf, Max: 2}, {Rates: qhf, Max: 2}}, []int{1, 1}},
		{"one step more", 2.2e6, []Track{{Rates: qhf, Max: 2}, {Rates: qhf, Max: 2}}, []int{2, 1}},
		{"asked for less", 10e6, []Track{{Rates: qhf, Max: 0}, {Rates: qhf, Max: Paused}}, []int{0, Paused}},
		{"only the low layer fits", 300_000, []Track{{Rates: qhf, Max: 2}}, []int{0}},
		{"nothing fits", 100_000, []Track{{Rates: qhf, Max: 2}}, []int{Paused}},
		{"second track does not fit", 200_000, []Track{{Rates: qhf, Max: 2}, {Rates: qhf, Max: 2}}, []int{0, Paused}},
		{"publisher stopped the top layer", 10e6, []Track{{Rates: [MaxLayers]float64{150_000, 500_000, 0}, Max: 2}}, []int{1}},
		{"publisher sends only the top layer", 10e6, []Track{{Rates: [MaxLayers]float64{0, 0, 1_500_000}, Max: 2}}, []int{2}},
		{"no layer sent yet", 10e6, []Track{{Max: 2}}, []int{Paused}},
	} {
		if got := Allocate(c.budget, c.tracks); !slices.Equal(got, c.want) {
			t.Errorf("%s: Allocate(%v) = %v, want %v", c.name, c.budget, got, c.want)
		}
	}
}

// Loss over 10 % brings the estimate down to about what got through and
// holds growth back, each time longer; no loss grows it, within a bound
// of what is sent, so a layer above can be tried; a calm link forgets
// the failed tries.
func TestEstimator(t *testing.T) {
	t0 := time.Unix(0, 0)
	e := NewEstimator()
	if e.Estimate() != StartEstimate {
		t.Fatalf("start %v", e.Estimate())
	}
	e.Update(0.3, 400_000, t0)
	if got := e.Estimate(); got != 400_000*0.85 {
		t.Fatalf("after 30%% loss at 400 kbit/s: %v, want %v", got, 400_000*0.85)
	}
	low := e.Estimate()
	e.Update(0, 150_000, t0.Add(time.Second)) // within the hold
	if e.Estimate() != low {
		t.Fatalf("grew within the hold: %v", e.Estimate())
	}
	e.Update(-1, 150_000, t0.Add(3*time.Second)) // no report: no change
	if e.Estimate() != low {
		t.Fatalf("changed without a report: %v", e.Estimate())
	}
	now := t0.Add(3 * time.Second)
	for range 5 {
		e.Update(0, 150_000, now)
		now = now.Add(time.Second)
	}
	if got := e.Estimate(); got != 150_000*headroom {
		t.Fatalf("after 5 s clean at 150 kbit/s: %v, want the bound %v", got, 150_000.0*headroom)
	}
	// A second failure, soon after the first, holds longer.
	e.Update(0.2, 500_000, now)
	failed := now
	e.Update(0, 150_000, failed.Add(3*time.Second))
	if e.Estimate() != 500_000*0.9 {
		t.Fatalf("grew 3 s after a second failure: %v", e.Estimate())
	}
	e.Update(0, 150_000, failed.Add(5*time.Second))
	if e.Estimate() <= 500_000*0.9 {
		t.Fatalf("still held 5 s after the second failure: %v", e.Estimate())
	}
	if e.hold != 4*minHold {
		t.Fatalf("hold %v after two failures, want %v", e.hold, 4*minHold)
	}
	e.Update(0, 150_000, failed.Add(5*time.Second+calm+time.Second))
	if e.hold != minHold {
		t.Fatalf("hold %v after a calm spell, want %v", e.hold, minHold)
	}
}
