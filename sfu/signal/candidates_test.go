package signal

import (
	"slices"
	"testing"
)

// While held, candidates wait; released, they go out in order after
// whatever was sent in between (the description).
func TestCandidateQueueOrder(t *testing.T) {
	var q CandidateQueue
	var sent []string
	send := func(m Message) { sent = append(sent, m.(*Candidate).Target) }
	q.Send(&Candidate{Target: "a"}, send)
	q.Hold()
	q.Send(&Candidate{Target: "b"}, send)
	q.Send(&Candidate{Target: "c"}, send)
	sent = append(sent, "offer")
	q.Release(send)
	q.Send(&Candidate{Target: "d"}, send)
	if want := []string{"a", "offer", "b", "c", "d"}; !slices.Equal(sent, want) {
		t.Fatalf("sent %v, want %v", sent, want)
	}
}
