package room

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
)

// reporter sends every connected subscriber its RTCP sender reports, and
// chooses its simulcast layers, each SenderReportInterval from one
// goroutine, which runs while anyone is
// registered: a ticker per participant woke the SFU a hundred times a
// second at 100 subscribers, each wake-up costing tens of µs here
// (docs/benchmarks.md).
type reporter struct {
	mu      sync.Mutex
	members map[*Participant]struct{}
	stop    chan struct{} // non-nil while the goroutine runs
	done    chan struct{}
}

func (r *reporter) add(p *Participant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.members == nil {
		r.members = map[*Participant]struct{}{}
	}
	r.members[p] = struct{}{}
	if r.stop == nil {
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go r.run(r.stop, r.done)
	}
}

// remove unregisters p; the last one out waits for the goroutine to end.
func (r *reporter) remove(p *Participant) {
	r.mu.Lock()
	if _, ok := r.members[p]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.members, p)
	var done chan struct{}
	if len(r.members) == 0 && r.stop != nil {
		close(r.stop)
		done, r.stop, r.done = r.done, nil, nil
	}
	r.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (r *reporter) run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(SenderReportInterval)
	defer t.Stop()
	var members []*Participant
	var pkts []rtcp.Packet
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			r.mu.Lock()
			members = members[:0]
			for p := range r.members {
				members = append(members, p)
			}
			r.mu.Unlock()
			for _, p := range members {
				pkts = p.sendSenderReports(now, pkts[:0])
				p.allocateLayers(now)
			}
			clear(members) // keep no participant alive
		}
	}
}
