package simulcast

import (
	"github.com/jbcalling/platform/sfu/codecs"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// FuzzSwitcher drives a switcher with arbitrary layers, targets, loss,
// duplicates and reordering (bytes of the input choose them) and checks
// what a subscriber relies on: no two different packets ever go out with
// the same sequence number, and the layer changes only on a keyframe's
// first packet.
func FuzzSwitcher(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 201, 202, 17, 33, 65})
	f.Add([]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0xff, 0x00, 0x80, 0x40})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 2000 {
			ops = ops[:2000] // far from a 16-bit wrap of the output
		}
		layers := newLayers()
		s := NewSwitcher("video/VP8", 90000)
		s.SetTarget(0)
		now := time.Unix(1000, 0)
		bySeq := map[uint16]packetKey{}
		var held []struct {
			l *layer
			h rtp.Header
			p []byte
		}
		lastLayer := -1
		for _, op := range ops {
			now = now.Add(time.Duration(op%40) * time.Millisecond)
			l := layers[int(op)%3]
			switch op >> 5 {
			case 0: // a new target
				s.SetTarget(int(op)%4 - 1)
				continue
			case 1: // a frame held back, to arrive later
				hs, ps := l.frame(op&8 != 0)
				for i := range hs {
					held = append(held, struct {
						l *layer
						h rtp.Header
						p []byte
					}{l, hs[i], ps[i]})
				}
				continue
			case 2: // held packets arrive, newest first
				for i := len(held) - 1; i >= 0; i-- {
					check(t, s, held[i].l, held[i].h, held[i].p, now, bySeq, &lastLayer)
				}
				held = held[:0]
				continue
			}
			key := l.keyNext || op&16 != 0
			l.keyNext = false
			hs, ps := l.frame(key)
			for i := range hs {
				if op&4 != 0 && i == 0 {
					continue // lost
				}
				check(t, s, l, hs[i], ps[i], now, bySeq, &lastLayer)
				if op&2 != 0 { // duplicated
					check(t, s, l, hs[i], ps[i], now, bySeq, &lastLayer)
				}
			}
		}
	})
}

// packetKey names a packet the publisher sent.
type packetKey struct {
	layer int
	seq   uint16
}

func check(t *testing.T, s *Switcher, l *layer, h rtp.Header, p []byte, now time.Time, bySeq map[uint16]packetKey, lastLayer *int) {
	in := h.SequenceNumber
	pc := append([]byte(nil), p...)
	r := s.Packet(l.index, &h, pc, now)
	if r.WantKeyframe {
		l.keyNext = true
	}
	if !r.Send {
		return
	}
	d, _ := codecs.ParseVP8(pc)
	if l.index != *lastLayer && (!d.Keyframe || !d.Start) {
		t.Fatalf("switched from layer %d to %d on a packet that does not start a keyframe", *lastLayer, l.index)
	}
	*lastLayer = l.index
	k := packetKey{l.index, in}
	if prev, ok := bySeq[h.SequenceNumber]; ok && prev != k {
		t.Fatalf("sequence %d went out for layer %d packet %d and for layer %d packet %d", h.SequenceNumber, prev.layer, prev.seq, l.index, in)
	}
	bySeq[h.SequenceNumber] = k
}
