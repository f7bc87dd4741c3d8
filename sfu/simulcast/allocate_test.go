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

// Loss over 10 % cuts the estimate, from what was sent, by half the
// fraction lost; reports that cover time before the cut settled (audio's
// come every few seconds) cut nothing more. No loss grows it, within a
// bound of what is sent, so a layer above can be tried; a try that fails
// holds the next one back longer, up to a limit; a calm link forgets the
// failed tries.
func TestEstimator(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	report := func(lost, since float64) []Report { return []Report{{Lost: lost, Since: at(since)}} }
	e := NewEstimator()
	if e.Estimate() != StartEstimate {
		t.Fatalf("start %v", e.Estimate())
	}
	e.Update(report(0.6, -1), 800_000, at(0))
	if got := e.Estimate(); got != 800_000*0.7 {
		t.Fatalf("after 60%% loss at 800 kbit/s: %v, want %v", got, 800_000*0.7)
	}
	cut := e.Estimate()
	// Audio's report, covering the seconds before the cut, and a video
	// report from before the cut settled.
	e.Update(append(report(0.5, -4), report(0.3, 0.5)...), 300_000, at(1.5))
	if e.Estimate() != cut {
		t.Fatalf("cut again by reports of before the cut: %v", e.Estimate())
	}
	e.Update(nil, 150_000, at(2.5))
	e.Update(report(0, 1.5), 150_000, at(1.9))
	if e.Estimate() != cut {
		t.Fatalf("grew within the hold: %v", e.Estimate())
	}
	e.Update(report(0, 1.5), 150_000, at(2.5)) // held since 0 for minHold
	e.Update(report(0, 2), 400_000, at(3))     // the growth not judged yet
	if got := e.Estimate(); got != 150_000*headroom {
		t.Fatalf("grew again before a report judged the last growth: %v", got)
	}
	if got := e.Estimate(); got != 150_000*headroom {
		t.Fatalf("after the hold: %v, want the bound %v", got, 150_000.0*headroom)
	}
	e.Update(report(0.3, 2.5), 300_000, at(3.5)) // a fresh report: cut
	if got := e.Estimate(); got != 300_000*0.85 {
		t.Fatalf("after a fresh report of 30%% loss: %v, want %v", got, 300_000*0.85)
	}
	// That was a failed try: the hold doubled; again, up to maxHold.
	if e.hold != 2*minHold {
		t.Fatalf("hold %v after a failed try, want %v", e.hold, 2*minHold)
	}
	for i, want := range []time.Duration{maxHold, maxHold} {
		start := at(10 + 10*float64(i))
		e.Update([]Report{{Since: start.Add(-time.Second / 2)}}, 150_000, start) // grows
		fail := start.Add(time.Second)
		e.Update([]Report{{Lost: 0.3, Since: start}}, 500_000, fail)
		if e.hold != want {
			t.Fatalf("failed try %d: hold %v, want %v", i+2, e.hold, want)
		}
		held := e.Estimate()
		e.Update(report(0, 0), 150_000, fail.Add(want-time.Millisecond))
		if e.Estimate() != held {
			t.Fatalf("failed try %d: grew within the hold", i+2)
		}
	}
	// A calm spell forgets the failures.
	e.Update(report(0, 0), 150_000, at(60))
	if e.hold != minHold {
		t.Fatalf("hold %v after a calm spell, want %v", e.hold, minHold)
	}
}

// A cut for loss over a quarter is severe (the lowest layer may give up
// its video) until a report that began after the cut settled shows the
// link coping; reports from before it settled do not clear it.
func TestSevereLossLastsUntilTheLinkCopes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	e := NewEstimator()
	e.Update([]Report{{Lost: 0.5, Since: at(-1)}}, 400_000, at(0))
	if !e.Severe() {
		t.Fatal("50 % loss: not severe")
	}
	e.Update([]Report{{Lost: 0, Since: at(0.5)}}, 150_000, at(1.2)) // began before the cut settled
	if !e.Severe() {
		t.Fatal("cleared by a report from before the cut settled")
	}
	e.Update([]Report{{Lost: 0.05, Since: at(1.5)}}, 150_000, at(2.5)) // fresh, coping
	if e.Severe() {
		t.Fatal("still severe after a fresh report of 5 % loss")
	}
	e.Update([]Report{{Lost: 0.3, Since: at(2.5)}}, 150_000, at(3.5))
	if !e.Severe() {
		t.Fatal("30 % loss again: not severe")
	}
	e.Update([]Report{{Lost: 0.15, Since: at(5)}}, 150_000, at(6))
	if e.Severe() {
		t.Fatal("a cut for 15 % loss is not severe")
	}
}

// Step names the first track whose layer could go up, and what going up
// adds: a paused track's lowest layer, else the next layer sent and
// allowed.
func TestStep(t *testing.T) {
	tracks := []Track{{Rates: qhf, Max: 0}, {Rates: [MaxLayers]float64{150_000, 0, 1_500_000}, Max: 2}, {Rates: qhf, Max: 2}}
	for _, c := range []struct {
		chosen []int
		track  int
		extra  float64
		ok     bool
	}{
		{[]int{0, 0, 0}, 1, 1_350_000, true}, // the first is at its maximum; the second skips a layer not sent
		{[]int{0, 2, Paused}, 2, 150_000, true},
		{[]int{0, 2, 1}, 2, 1_000_000, true},
		{[]int{0, 2, 2}, 0, 0, false},
	} {
		track, extra, ok := Step(tracks, c.chosen)
		if track != c.track || extra != c.extra || ok != c.ok {
			t.Errorf("Step(%v) = %d, %v, %v; want %d, %v, %v", c.chosen, track, extra, ok, c.track, c.extra, c.ok)
		}
	}
}

// With transport-cc feedback the estimate grows by probes alone, and a
// congested link cuts it below what it delivered, once per settle.
func TestEstimatorWithProbes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	e := NewEstimator()
	e.GrowByProbes()
	e.Update([]Report{{Since: t0.Add(-10 * time.Second)}}, 900_000, t0)
	if e.Estimate() != StartEstimate {
		t.Fatalf("grew from a clean report: %v", e.Estimate())
	}
	e.Probed(2_000_000, t0)
	e.Probed(1_500_000, t0) // a smaller probe lowers nothing
	if want := 2_000_000 * probedShare; e.Estimate() != want {
		t.Fatalf("after probes of 2 and 1.5 Mbit/s: %v, want %v", e.Estimate(), want)
	}
	e.Congested(300_000, t0.Add(time.Second))
	if want := 300_000 * congestedShare; e.Estimate() != want {
		t.Fatalf("congested at 300 kbit/s delivered: %v, want %v", e.Estimate(), want)
	}
	e.Congested(100_000, t0.Add(1500*time.Millisecond))
	if want := 300_000 * congestedShare; e.Estimate() != want {
		t.Fatalf("cut again before the last cut settled: %v", e.Estimate())
	}
	e.Congested(10_000, t0.Add(3*time.Second))
	if e.Estimate() != MinEstimate {
		t.Fatalf("cut below the minimum: %v", e.Estimate())
	}
}
