package forward

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/racecheck"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// packets is a Source that yields raw packets, then io.EOF.
type packets struct{ raw [][]byte }

func (s *packets) Read(b []byte) (int, interceptor.Attributes, error) {
	if len(s.raw) == 0 {
		return 0, nil, io.EOF
	}
	n := copy(b, s.raw[0])
	s.raw = s.raw[1:]
	return n, nil, nil
}

// With more subscribers than one goroutine handles, Run splits the list
// among helpers: every subscriber still gets every packet, intact and in
// order, and the helpers are gone when Run returns.
func TestLargeFanOutDeliversEverythingInOrder(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("fan-out helpers need GOMAXPROCS > 1")
	}
	f := newForwarder(nil)
	var recs []*recorder
	for i := range 5*fanOutChunk + 3 {
		r := &recorder{keep: true}
		c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: webrtc.SSRC(i + 1), w: r}
		if _, err := f.NewDownTrack("v", "p", nil).Bind(c); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	src := &packets{}
	var payloads [][]byte
	for seq := range uint16(40) {
		p := []byte(fmt.Sprintf("packet %d", seq))
		payloads = append(payloads, p)
		src.raw = append(src.raw, sourcePacket(t, seq, p))
	}
	before := runtime.NumGoroutine()
	if err := f.Run(src); !errors.Is(err, io.EOF) {
		t.Fatalf("Run: %v", err)
	}
	for i, r := range recs {
		if len(r.got) != len(payloads) {
			t.Fatalf("subscriber %d got %d packets, want %d", i, len(r.got), len(payloads))
		}
		for j, p := range r.got {
			if p.SequenceNumber != uint16(j) || !bytes.Equal(p.Payload, payloads[j]) || p.SSRC != uint32(i+1) {
				t.Fatalf("subscriber %d packet %d: seq %d ssrc %d payload %q", i, j, p.SequenceNumber, p.SSRC, p.Payload)
			}
		}
	}
	if f.jobs != nil || runtime.NumGoroutine() > before {
		t.Fatalf("helpers still running after Run returned (%d goroutines, %d before)", runtime.NumGoroutine(), before)
	}
}

// The parallel fan-out allocates nothing per packet either.
func TestLargeFanOutAllocatesNothing(t *testing.T) {
	racecheck.SkipAllocs(t)
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("fan-out helpers need GOMAXPROCS > 1")
	}
	f := newForwarder(nil)
	for i := range 3 * fanOutChunk {
		c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: webrtc.SSRC(i + 1), w: &recorder{}}
		if _, err := f.NewDownTrack("v", "p", nil).Bind(c); err != nil {
			t.Fatal(err)
		}
	}
	f.parallel = true
	defer f.stopHelpers()
	raw := sourcePacket(t, 1, bytes.Repeat([]byte{0xab}, 1200))
	f.Forward(raw) // start the helpers, grow the scratch buffers
	if n := testing.AllocsPerRun(100, func() { bump(raw, 1); f.Forward(raw) }); n != 0 {
		t.Fatalf("parallel Forward allocated %.1f times per packet, want 0", n)
	}
}

// blocking is a Source that yields one packet, then waits until closed
// (a track whose packets the fast receive path has taken over).
type blocking struct {
	first []byte
	done  chan struct{}
}

func (s *blocking) Read(b []byte) (int, interceptor.Attributes, error) {
	if s.first != nil {
		n := copy(b, s.first)
		s.first = nil
		return n, nil, nil
	}
	<-s.done
	return 0, nil, io.EOF
}

// While Run waits on pion and the fast receive path delivers a long
// fan-out from another goroutine, helpers serve both; when Run returns
// they stop, and packets the fast path still delivers are forwarded
// without starting them again.
func TestFanOutFromTheFastPathAroundRun(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("fan-out helpers need GOMAXPROCS > 1")
	}
	f := newForwarder(nil)
	for i := range 2*fanOutChunk + 1 {
		c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: webrtc.SSRC(i + 1), w: &recorder{}}
		if _, err := f.NewDownTrack("v", "p", nil).Bind(c); err != nil {
			t.Fatal(err)
		}
	}
	before := runtime.NumGoroutine()
	src := &blocking{first: sourcePacket(t, 0, []byte("first")), done: make(chan struct{})}
	ran := make(chan error, 1)
	go func() { ran <- f.Run(src) }()
	delivered := make(chan struct{})
	go func() { // the fast path: packets 1..200, on its own goroutine
		defer close(delivered)
		for seq := uint16(1); seq <= 200; seq++ {
			f.ReceiveRTP([][]byte{sourcePacket(t, seq, []byte("fast"))}, []uint64{uint64(seq)}, []time.Time{time.Now()})
			if seq == 100 {
				close(src.done) // the track ends meanwhile
			}
		}
	}()
	<-delivered
	if err := <-ran; !errors.Is(err, io.EOF) {
		t.Fatalf("Run: %v", err)
	}
	if f.jobs != nil {
		t.Fatal("helpers running after Run returned")
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines left, %d before", n, before)
	}
	if got := f.cfg.Counters.PacketsIn.Load(); got != 201 {
		t.Fatalf("%d packets received, want 201", got)
	}
}
