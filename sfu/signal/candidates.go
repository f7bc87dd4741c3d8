package signal

import "sync"

// CandidateQueue holds a peer connection's gathered candidates while its
// offer or answer is being made: pion reports candidates from within
// SetLocalDescription, and a candidate of a restarted ICE generation that
// overtook its description would be dropped by the other side, which
// knows only the old credentials. Both the server and the Go client keep
// one per connection.
type CandidateQueue struct {
	mu      sync.Mutex
	holding bool
	queued  []Message
}

// Send sends m with send now, or after the description being made.
func (q *CandidateQueue) Send(m Message, send func(Message)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.holding {
		q.queued = append(q.queued, m)
		return
	}
	send(m)
}

// Hold keeps what Send is given until Release.
func (q *CandidateQueue) Hold() {
	q.mu.Lock()
	q.holding = true
	q.mu.Unlock()
}

// Release sends what was held, after the description just sent.
func (q *CandidateQueue) Release(send func(Message)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.queued {
		send(m)
	}
	q.queued, q.holding = nil, false
}
