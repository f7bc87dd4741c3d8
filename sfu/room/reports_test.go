package room

import (
	"testing"

	"github.com/pion/transport/v4/test"
)

// The reporter's goroutine runs while anyone is registered and has ended
// when the last one leaves; removing twice, or someone never added, is
// harmless; a new member starts it again.
func TestReporterRunsWhileAnyoneIsRegistered(t *testing.T) {
	defer test.CheckRoutines(t)()
	var r reporter
	a, b := &Participant{subs: map[subKey]*subscription{}}, &Participant{subs: map[subKey]*subscription{}}
	r.add(a)
	r.add(b)
	running := r.stop
	if running == nil {
		t.Fatal("no goroutine with two members")
	}
	r.remove(a)
	r.remove(a)
	if r.stop != running {
		t.Fatal("the goroutine stopped with a member left")
	}
	r.remove(b)
	if r.stop != nil {
		t.Fatal("the goroutine still runs with no member")
	}
	r.remove(&Participant{})
	r.add(a)
	if r.stop == nil {
		t.Fatal("no goroutine after a new member")
	}
	r.remove(a)
}
