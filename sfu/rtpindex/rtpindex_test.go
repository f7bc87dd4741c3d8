package rtpindex

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

func TestExtend(t *testing.T) {
	for _, c := range []struct {
		next uint64
		seq  uint16
		want uint64
	}{
		{0, 65530, 65530},                   // the first packet is in cycle 0
		{65531, 3, 1<<16 | 3},               // across the wrap
		{1<<16 | 4, 65534, 65534},           // a late packet from before the wrap
		{1<<16 | 4, 5, 1<<16 | 5},           // in order
		{100, 40000, 40000},                 // cycle 0 has no cycle before it
		{1<<16 | 40000, 7300, 1<<16 | 7300}, // 32699 back: the same cycle
		{1<<16 | 40000, 7000, 2<<16 | 7000}, // 32999 back: the next
		{5<<16 | 100, 60000, 4<<16 | 60000},
	} {
		if got := extend(c.next, c.seq); got != c.want {
			t.Errorf("extend(%#x, %d) = %#x, want %#x", c.next, c.seq, got, c.want)
		}
	}
}

// windowModel is Window's contract, written plainly.
type windowModel struct {
	accepted map[uint64]bool
	highest  uint64
	any      bool
}

func (m *windowModel) accept(i uint64) bool {
	if i >= MaxIndex || m.accepted[i] || (m.any && i+WindowSize <= m.highest) {
		return false
	}
	m.accepted[i] = true
	if !m.any || i > m.highest {
		m.highest, m.any = i, true
	}
	return true
}

// Every index is accepted at most once, exactly when the model accepts
// it, and Extend always lands within half a cycle of the highest.
func TestWindowProperties(t *testing.T) {
	for round := range 200 {
		r := rand.New(rand.NewPCG(uint64(round), 1))
		var w Window
		m := windowModel{accepted: map[uint64]bool{}}
		base := r.Uint64N(1 << 20)
		for range 3000 {
			var i uint64
			switch r.IntN(6) {
			case 0: // a duplicate or a late one
				i = base - r.Uint64N(2*WindowSize)
			case 1: // a jump
				i = base + r.Uint64N(1<<15)
			case 2: // out of the range
				i = MaxIndex + r.Uint64N(3)
			default:
				i = base + r.Uint64N(4)
			}
			if i > base && i < MaxIndex {
				base = i
			}
			if got, want := w.Accept(i), m.accept(i); got != want {
				t.Fatalf("round %d: Accept(%#x) = %v, model %v (highest %#x)", round, i, got, want, m.highest)
			}
			seq := uint16(r.Uint32())
			e := w.Extend(seq)
			if uint16(e) != seq {
				t.Fatalf("Extend(%d) = %#x: other low bits", seq, e)
			}
			if m.any {
				d := int64(e) - int64(m.highest)
				if d > 1<<15 && e >= 1<<16 || d < -(1<<15) { // cycle 0 has none before it
					t.Fatalf("Extend(%d) = %#x, %d from the highest %#x", seq, e, d, m.highest)
				}
			}
		}
	}
}

// outboundCheck drives an Outbound and checks, whatever the calls, that
// no index is handed out twice for a fresh packet and that Sent reports
// only what Next handed out.
type outboundCheck struct {
	t     testing.TB
	o     Outbound
	given map[uint64]sealed
}

func newOutboundCheck(t testing.TB) *outboundCheck {
	return &outboundCheck{t: t, given: map[uint64]sealed{}}
}

func (c *outboundCheck) next(source, src uint64, via Via) {
	i, err := c.o.Next(source, src, via)
	if err != nil {
		return
	}
	if i >= MaxIndex {
		c.t.Fatalf("Next gave index %#x, beyond 2^48", i)
	}
	if prev, dup := c.given[i]; dup {
		c.t.Fatalf("index %#x given twice: for source %d index %#x (%d), then source %d index %#x (%d)",
			i, prev.source, prev.src, prev.via, source, src, via)
	}
	c.given[i] = sealed{index: i + 1, source: source, src: src, via: via}
}

func (c *outboundCheck) pad(via Via) {
	i, err := c.o.Pad(via)
	if err != nil {
		return
	}
	if prev, dup := c.given[i]; dup {
		c.t.Fatalf("padding given index %#x, given before to source %d index %#x", i, prev.source, prev.src)
	}
	c.given[i] = sealed{index: i + 1, source: padding, via: via}
}

func (c *outboundCheck) sent(seq uint16) {
	i, source, src, via, err := c.o.Sent(seq)
	if err != nil {
		return
	}
	g, ok := c.given[i]
	if !ok || uint16(i) != seq || g.source != source || g.src != src || g.via != via {
		c.t.Fatalf("Sent(%d) = index %#x source %d src %#x via %d; Next gave %+v (%v)", seq, i, source, src, via, g, ok)
	}
}

func TestOutboundProperties(t *testing.T) {
	for round := range 200 {
		r := rand.New(rand.NewPCG(uint64(round), 2))
		c := newOutboundCheck(t)
		source, src := uint64(1), r.Uint64N(1<<16)
		for range 3000 {
			switch r.IntN(10) {
			case 0:
				source++
				src = r.Uint64N(1 << 17)
			case 1:
				c.next(source-r.Uint64N(2), src-r.Uint64N(600), Via(1+r.IntN(2))) // stale source, late or repeated
			case 2:
				c.sent(uint16(r.Uint32()))
			case 3:
				c.sent(uint16(src + c.o.offset - r.Uint64N(RingSize+10)))
			case 4:
				c.pad(Via(1 + r.IntN(2)))
			default:
				src += r.Uint64N(3)
				c.next(source, src, Via(1+r.IntN(2)))
			}
		}
	}
}

func TestOutboundContinuesAcrossSources(t *testing.T) {
	var o Outbound
	for i := range uint64(3) {
		if got, err := o.Next(1, 1000+i, ViaPion); err != nil || got != 1000+i {
			t.Fatalf("first source: %d, %v", got, err)
		}
	}
	// A reused SSRC: the next track's numbering continues after 1002.
	if got, err := o.Next(2, 77, ViaDirect); err != nil || got != 1003 {
		t.Fatalf("second source's first packet: %d, %v", got, err)
	}
	if _, err := o.Next(2, 76, ViaDirect); !errors.Is(err, ErrReused) {
		t.Fatalf("a late packet of the second source where the first sent: %v", err)
	}
	if _, err := o.Next(1, 1003, ViaPion); !errors.Is(err, ErrStale) {
		t.Fatalf("the replaced source: %v", err)
	}
	// A packet that arrives late takes its place if it is free...
	if got, err := o.Next(2, 80, ViaDirect); err != nil || got != 1006 {
		t.Fatalf("%d, %v", got, err)
	}
	if got, err := o.Next(2, 79, ViaDirect); err != nil || got != 1005 {
		t.Fatalf("a late packet: %d, %v", got, err)
	}
	// ...once.
	if _, err := o.Next(2, 79, ViaDirect); !errors.Is(err, ErrReused) {
		t.Fatalf("the same packet again: %v", err)
	}
	if i, source, src, via, err := o.Sent(uint16(1005)); err != nil || i != 1005 || source != 2 || src != 79 || via != ViaDirect {
		t.Fatalf("Sent(1005) = %d %d %d %d %v", i, source, src, via, err)
	}
	if _, _, _, _, err := o.Sent(uint16(1004)); !errors.Is(err, ErrNotSent) {
		t.Fatalf("Sent of a gap: %v", err)
	}
	late := uint64(80)
	late -= RingSize + 1 // modulo 2^64, as the offset is
	if _, err := o.Next(2, late, ViaDirect); !errors.Is(err, ErrTooOld) {
		t.Fatalf("far behind: %v", err)
	}
	var end Outbound
	if _, err := end.Next(1, MaxIndex, ViaDirect); !errors.Is(err, ErrExhausted) {
		t.Fatalf("index 2^48: %v", err)
	}
}

func TestPaddingTakesTheNextIndexAndMediaFollowsIt(t *testing.T) {
	var o Outbound
	if _, err := o.Pad(ViaDirect); !errors.Is(err, ErrNotSent) {
		t.Fatalf("padding before any packet: %v", err)
	}
	for src := uint64(500); src < 503; src++ {
		if _, err := o.Next(1, src, ViaDirect); err != nil {
			t.Fatal(err)
		}
	}
	// 500..502 went out as 500..502; a packet of 503 is late.
	for want := uint64(503); want < 505; want++ {
		if got, err := o.Pad(ViaDirect); err != nil || got != want {
			t.Fatalf("padding: %d, %v; want %d", got, err, want)
		}
	}
	if got, err := o.Next(1, 503, ViaDirect); err != nil || got != 505 {
		t.Fatalf("the media after the padding: %d, %v; want 505", got, err)
	}
	if _, err := o.Next(1, 501, ViaDirect); !errors.Is(err, ErrReused) {
		t.Fatalf("a late packet whose place padding took: %v", err)
	}
	if i, source, _, via, err := o.Sent(504); err != nil || i != 504 || source != padding || via != ViaDirect {
		t.Fatalf("Sent(504) = %d %d %d %v: want padding", i, source, via, err)
	}
}

func TestBookKeepsStreamsAndOrdersSources(t *testing.T) {
	b := NewBook()
	if five, again, six := b.Stream(5), b.Stream(5), b.Stream(6); five != again || five == six {
		t.Fatal("one Outbound per SSRC")
	}
	if x, y := b.NewSource(), b.NewSource(); y <= x {
		t.Fatalf("sources %d then %d", x, y)
	}
}

// FuzzIndices drives a Window and an Outbound with arbitrary calls and
// checks both contracts: no index accepted twice, none handed out twice,
// Sent reporting only what was handed out.
func FuzzIndices(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 0, 2, 1, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 3, 0, 0})
	f.Add([]byte{4, 0, 0, 1, 0, 10, 0, 0, 1, 0, 9, 2, 0, 9, 3, 0, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var w Window
		m := windowModel{accepted: map[uint64]bool{}}
		c := newOutboundCheck(t)
		source, base := uint64(1), uint64(0)
		for len(ops) >= 3 {
			op, arg := ops[0], uint64(binary.BigEndian.Uint16(ops[1:3]))
			ops = ops[3:]
			switch op % 7 {
			case 0: // an incoming packet by sequence number
				i := w.Extend(uint16(arg))
				if got, want := w.Accept(i), m.accept(i); got != want {
					t.Fatalf("Accept(%#x) = %v, model %v", i, got, want)
				}
			case 1: // an incoming packet by raw index, far jumps included
				i := arg << (arg % 33)
				if got, want := w.Accept(i), m.accept(i); got != want {
					t.Fatalf("Accept(%#x) = %v, model %v", i, got, want)
				}
			case 2:
				base += arg % 300
				c.next(source, base, Via(1+arg%2))
			case 3:
				c.next(source-arg%2, base-arg%700, Via(1+arg/2%2))
			case 4:
				source++
				base = arg << (arg % 20)
			case 5:
				c.sent(uint16(arg))
			case 6:
				c.pad(Via(1 + arg%2))
			}
		}
	})
}
