package forward

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/jbcalling/platform/sfu/simulcast"
	"github.com/pion/rtp"
)

// Layers is one simulcast track: a Forwarder for each layer (RTP stream)
// its publisher sends, lowest first. A subscriber's DownTrack from
// NewDownTrack receives one layer at a time (SetTarget).
type Layers struct {
	mu   sync.Mutex
	fwds [simulcast.MaxLayers]*Forwarder
	// The layers' rates, measured over at least rateWindow; known is
	// each one's last rate above zero (a layer the publisher paused).
	sampled time.Time
	bytes   [simulcast.MaxLayers]uint64
	rates   [simulcast.MaxLayers]float64
	known   [simulcast.MaxLayers]float64
	// The layers the subscribers want sent (bits by layer): what they
	// asked for since the round began (wanting), and the last round's.
	round   time.Time
	wanting uint8
	wanted  uint8
}

// rateWindow is the shortest interval a layer's rate is measured over.
const rateWindow = 500 * time.Millisecond

// NewLayers returns a track with no layers yet.
func NewLayers() *Layers { return &Layers{wanted: 1<<simulcast.MaxLayers - 1} }

// Set makes f the track's layer (0 the lowest).
func (l *Layers) Set(layer int, f *Forwarder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.layer = layer
	l.fwds[layer] = f
	l.bytes[layer], l.rates[layer] = f.received.Load(), 0
}

// Remove takes f out, if it is still the layer's forwarder.
func (l *Layers) Remove(f *Forwarder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fwds[f.layer] == f {
		l.fwds[f.layer], l.rates[f.layer] = nil, 0
	}
}

// Layer is the forwarder of layer, nil if the publisher has none.
func (l *Layers) Layer(layer int) *Forwarder {
	if layer < 0 || layer >= simulcast.MaxLayers {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fwds[layer]
}

// Rates are the bits/s each layer the publisher sends now takes (see
// Known), measured at most rateWindow ago: 0 for a layer it does not send.
func (l *Layers) Rates(now time.Time) [simulcast.MaxLayers]float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := now.Sub(l.sampled); d >= rateWindow {
		for i, f := range l.fwds {
			if f == nil {
				continue
			}
			b := f.received.Load()
			if !l.sampled.IsZero() {
				l.rates[i] = float64(b-l.bytes[i]) * 8 / d.Seconds()
				if l.rates[i] > 0 {
					l.known[i] = max(l.rates[i], l.known[i]*knownDecay)
				}
			}
			l.bytes[i] = b
		}
		l.sampled = now
	}
	var sent [simulcast.MaxLayers]float64
	for i, r := range l.rates {
		if r > 0 {
			sent[i] = l.known[i]
		}
	}
	return sent
}

// knownDecay is how much of a layer's known rate is left one measurement
// on: a layer the publisher resumes takes a few seconds to reach its rate
// again, and what it is about to take is what counts.
const knownDecay = 0.95

// Known are the layers' rates of late, at their peak, decaying slowly: what
// a layer the publisher paused would take again (0 for one never
// received).
func (l *Layers) Known() [simulcast.MaxLayers]float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.known
}

// Want records that a subscriber wants the layers of mask (bit n: layer
// n) sent, in the round of the subscribers' allocations that now belongs
// to (rounds last a second, less a margin). When now starts a new round,
// it returns the layers wanted in the one before, the lowest always among
// them, and whether they changed: the publisher need not encode the
// others.
func (l *Layers) Want(mask uint8, now time.Time, round time.Duration) (wanted uint8, changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unmeasured() {
		// The publisher sends every layer to begin with; what the
		// subscribers want is known once every layer was measured.
		l.round, l.wanting = time.Time{}, 0
		return 0, false
	}
	switch {
	case l.round.IsZero():
		l.round = now
	case now.Sub(l.round) >= round*3/4:
		wanted = l.wanting | 1
		changed = wanted != l.wanted
		l.wanted, l.wanting, l.round = wanted, 0, now
	}
	l.wanting |= mask
	return wanted, changed
}

// unmeasured reports whether a layer that arrived has no rate yet; l.mu
// held.
func (l *Layers) unmeasured() bool {
	for i, f := range l.fwds {
		if f != nil && l.known[i] == 0 {
			return true
		}
	}
	return false
}

// NewDownTrack returns a track for one subscriber, paused until its first
// SetTarget; see Forwarder.NewDownTrack. It needs a layer, for the
// codec its subscriber negotiates: nil if the publisher has none yet.
func (l *Layers) NewDownTrack(id, streamID string, book *rtpindex.Book) *DownTrack {
	var first *Forwarder
	for i := range simulcast.MaxLayers {
		if first = l.Layer(i); first != nil {
			break
		}
	}
	if first == nil {
		return nil
	}
	d := first.NewDownTrack(id, streamID, book)
	d.sim = &simDown{layers: l, sw: simulcast.NewSwitcher(first.cfg.Codec.MimeType, first.cfg.Codec.ClockRate)}
	d.sim.current.Store(simulcast.Paused)
	return d
}

// simDown is a simulcast DownTrack's own: its switcher, the layers it
// joined, and scratch to rewrite each copy in.
type simDown struct {
	layers *Layers
	// Its shape in each layer joined, read by that layer's fan-out.
	shapes  [simulcast.MaxLayers]atomic.Pointer[shape]
	current atomic.Int32 // the switcher's current layer, for the room

	// mu guards the rest: around a switch two layers' goroutines write.
	mu      sync.Mutex
	sw      *simulcast.Switcher
	joined  [simulcast.MaxLayers]*Forwarder
	source  uint64 // the current layer's source id in the subscriber's book
	sources [4]layerSource
	next    int           // in sources
	h       rtp.Header    // the copy's header, rewritten
	hdr     headerScratch // pion's path
	head    [headSize]byte
	body    [MaxPacketSize]byte
	out     outPacket
}

// layerSource is how one source id's packets were rewritten: a
// retransmission under one of its indices must carry the same bytes.
type layerSource struct {
	id  uint64
	f   *Forwarder
	off simulcast.Offsets
}

// SetTarget chooses the layer this subscriber receives (simulcast.Paused:
// none); the switch happens at that layer's next keyframe, which is asked
// for. A DownTrack of one layer ignores it.
func (d *DownTrack) SetTarget(layer int) {
	s := d.sim
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Even for the same target: a layer's forwarder may have been
	// replaced (the publisher's stream began again), and d must follow.
	s.sw.SetTarget(layer)
	s.current.Store(int32(s.sw.Current()))
	d.joinLayers()
}

// Layer is the layer being sent (simulcast.Paused for none); 0 for a
// DownTrack of one layer.
func (d *DownTrack) Layer() int {
	if d.sim == nil {
		return 0
	}
	return int(d.sim.current.Load())
}

// Target is the layer asked for (Layer for a DownTrack of one layer).
func (d *DownTrack) Target() int {
	if d.sim == nil {
		return 0
	}
	d.sim.mu.Lock()
	defer d.sim.mu.Unlock()
	return d.sim.sw.Target()
}

// Simulcast reports whether d receives one of several layers.
func (d *DownTrack) Simulcast() bool { return d.sim != nil }

// joinLayers keeps d in the fan-out of its current and target layers
// only; s.mu held.
func (d *DownTrack) joinLayers() {
	s := d.sim
	b := d.bound.Load()
	cur, target := s.sw.Current(), s.sw.Target()
	for l := range simulcast.MaxLayers {
		var f *Forwarder
		if b != nil && (l == cur || l == target) {
			f = s.layers.Layer(l)
		}
		if s.joined[l] == f {
			continue
		}
		if old := s.joined[l]; old != nil {
			old.remove(d)
			s.shapes[l].Store(nil)
		}
		s.joined[l] = f
		if f != nil {
			f.join(d, b.shape.shapeKey)
			if l != cur {
				f.attached() // its keyframe, to switch at
			}
		}
	}
}

// leaveLayers takes d out of every layer's fan-out.
func (d *DownTrack) leaveLayers() {
	s := d.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	for l, f := range s.joined {
		if f != nil {
			f.remove(d)
			s.joined[l] = nil
			s.shapes[l].Store(nil)
		}
	}
}

// writeLayer is write for a simulcast DownTrack: the switcher decides,
// and the copy is rewritten in d's scratch (timestamp, VP8 descriptor)
// and sent under the current layer's source.
func (d *DownTrack) writeLayer(b *binding, o *outPacket, batch *srtpsend.Batch) bool {
	s := d.sim
	f := o.from
	sh := s.shapes[f.layer].Load()
	if sh == nil || sh.gen != o.gen || sh.heads[o.i] == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h = *o.src
	h := &s.h
	n := copy(s.body[:], o.body)
	payload := s.body[:len(o.payload)]
	r := s.sw.Packet(f.layer, h, payload, f.now())
	if r.WantKeyframe {
		f.requestKeyframe(true)
	}
	if !r.Send {
		return false
	}
	if r.Switched {
		s.source = d.book.NewSource()
		s.sources[s.next] = layerSource{id: s.source, f: f, off: s.sw.Offsets()}
		s.next = (s.next + 1) % len(s.sources)
		s.current.Store(int32(f.layer))
		f.cfg.Counters.LayerSwitches.Add(1)
		d.joinLayers() // out of the layer left
	}
	head := s.head[:copy(s.head[:], sh.heads[o.i])]
	binary.BigEndian.PutUint32(head[4:8], h.Timestamp)
	s.out = outPacket{index: o.index, key: o.key, size: o.size, src: h, payload: payload, body: s.body[:n]}
	ok := d.send(b, s.source, sh, head, &s.out, batch, &s.hdr)
	if ok {
		d.packets.Add(1)
		d.octets.Add(uint32(len(payload)))
	}
	return ok
}

// layerOf is the forwarder and rewrite of a source d sent, for a
// retransmission.
func (d *DownTrack) layerOf(source uint64) (layerSource, bool) {
	s := d.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ls := range s.sources {
		if ls.id == source && ls.f != nil {
			return ls, true
		}
	}
	return layerSource{}, false
}

// simSenderReport is the RTP time of a simulcast DownTrack's output now.
func (d *DownTrack) simSenderReport(now time.Time) (uint32, bool) {
	s := d.sim
	s.mu.Lock()
	ts, at, ok := s.sw.Last()
	s.mu.Unlock()
	if !ok {
		return 0, false
	}
	return ts + uint32(int64(now.Sub(at))*int64(d.f.cfg.Codec.ClockRate)/int64(time.Second)), true
}

// Layers is the simulcast track d receives one layer of; nil for a
// DownTrack of one layer.
func (d *DownTrack) Layers() *Layers {
	if d.sim == nil {
		return nil
	}
	return d.sim.layers
}

// Octets is the payload bytes sent so far (mod 2^32).
func (d *DownTrack) Octets() uint32 { return d.octets.Load() }
