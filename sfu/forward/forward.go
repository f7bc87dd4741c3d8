// Package forward is the SFU's hot path: one Forwarder reads one incoming
// track and writes every packet to the DownTracks of its subscribers.
//
// Per packet it allocates nothing: the reader goroutine owns one receive
// buffer and one parsed rtp.Packet, the subscriber list is a copy-on-write
// slice loaded with one atomic read, the header is rewritten (extension
// IDs) and marshalled once per shape of subscriber (see shape), and each
// copy only patches in its SSRC and payload type.
package forward

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/codecs"

	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Sentinel errors.
var (
	ErrCodecNotNegotiated = errors.New("forward: subscriber did not negotiate the track's codec")
	ErrClosed             = errors.New("forward: forwarder closed")
)

// ForwardedExtensions are the header extensions passed from publishers to
// subscribers (mapped to the subscriber's IDs); all others are dropped
// because they describe the publisher's hop (mid, rid, transport-cc).
var ForwardedExtensions = []string{
	"urn:ietf:params:rtp-hdrext:ssrc-audio-level",
	"urn:3gpp:video-orientation",
}

// MaxPacketSize is the receive buffer size; RTP over UDP never exceeds the
// MTU.
const MaxPacketSize = 1500

// Source is where a Forwarder reads packets; *webrtc.TrackRemote is one.
type Source interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// Counters are totals shared by all forwarders (read by the metrics).
type Counters struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut atomic.Uint64
	KeyframeRequests                         atomic.Uint64
	// Retransmissions answered NACKs from the track's history.
	Retransmissions atomic.Uint64
	// Dropped incoming packets: Replayed were forwarded already (or
	// arrived too late to tell), Oversize exceed MaxPacketSize.
	Replayed, Oversize atomic.Uint64
	// IndexRefusals are copies not sent because their subscriber's SRTP
	// index could not be given safely (rtpindex.Outbound).
	IndexRefusals atomic.Uint64
	// Unsent are copies for a direct subscriber whose connection had no
	// UDP address (they are never handed to pion: see DownTrack.send).
	Unsent atomic.Uint64
	// LayerSwitches: subscribers of simulcast tracks moved to another
	// layer (at its keyframe).
	LayerSwitches atomic.Uint64
}

// Config configures a Forwarder.
type Config struct {
	// Codec of the incoming track.
	Codec webrtc.RTPCodecParameters
	// Extensions are the incoming track's negotiated header extensions.
	Extensions []webrtc.RTPHeaderExtensionParameter
	// RequestKeyframe asks the publisher for a keyframe (sends a PLI). The
	// Forwarder throttles calls to one per KeyframeInterval.
	RequestKeyframe func()
	// KeyframeInterval is the throttle; 0 means 500 ms. A new subscriber's
	// request is sent sooner (after a fifth of it) when the publisher has
	// answered the last request with a keyframe, and dropped while a
	// request is still unanswered: the keyframe on its way serves it too.
	KeyframeInterval time.Duration
	// Counters, if set, receive packet and byte totals.
	Counters *Counters
	// Observe, if set, sees every packet before it is forwarded, with its
	// parsed header and arrival time (the SFU's feedback to the
	// publisher); it must not keep raw or hdr.
	Observe func(raw []byte, hdr *rtp.Header, arrival time.Time)
}

// Forwarder fans one incoming track out to its subscribers.
type Forwarder struct {
	cfg  Config
	kind webrtc.RTPCodecType
	ext  []srcExt // the incoming track's forwarded extensions
	// layer is its place in a simulcast track (Layers), 0 alone.
	layer int
	// received counts the bytes that arrived, for the layer's rate.
	received atomic.Uint64

	mu     sync.Mutex // serializes writers of downs and shapes
	downs  atomic.Pointer[[]*DownTrack]
	shapes atomic.Pointer[[]*shape] // of downs' bindings, each once

	lastKeyframe atomic.Int64 // unix nanos of the last keyframe request sent
	isKey        func([]byte) bool
	awaiting     atomic.Bool  // a keyframe was requested and none forwarded since
	lastKeySeen  atomic.Int64 // unix nanos of the last keyframe forwarded
	lastAttach   atomic.Int64 // unix nanos of the last subscriber bound
	retrying     atomic.Bool  // a deferred request for attached subscribers is pending
	ended        atomic.Bool  // Run returned: no more retries
	now          func() time.Time
	after        func(time.Duration, func())

	buf [MaxPacketSize]byte // Run's

	// inMu serializes ReceiveRTP: packets come from Run's goroutine
	// (pion's receive path) or the fast receive path's, and at the moment
	// a track moves from one to the other, from both.
	inMu  sync.Mutex
	gen   uint64                // of the burst being written (outPacket.gen)
	pkts  [burstSize]rtp.Packet // the burst, parsed
	outs  [burstSize]outPacket  // the burst as the fan-out writes it
	one   [1][]byte             // a lone packet as a burst (Run, Forward)
	oneAt [1]time.Time          // its arrival
	batch srtpsend.Batch        // direct sends of the receiving goroutine
	// The incoming packets' SRTP indices, each accepted once, whichever
	// receive path delivered it.
	win rtpindex.Window

	// Video packets kept for retransmission: one copy per track, shared
	// by its subscribers (nil for audio, which negotiates no NACK).
	hist *history

	// The newest packet's RTP timestamp and arrival, for sender reports.
	srMu        sync.Mutex
	lastTS      uint32
	lastArrival time.Time

	// Helpers for long subscriber lists, guarded by inMu like the rest of
	// the receive side.
	parallel bool
	helpers  int
	jobs     chan fanJob
	results  chan fanResult
	helperWG sync.WaitGroup
}

type srcExt struct {
	id  uint8
	uri string
}

// New returns a Forwarder for a track with the given codec.
func New(cfg Config) *Forwarder {
	if cfg.KeyframeInterval == 0 {
		cfg.KeyframeInterval = 500 * time.Millisecond
	}
	if cfg.Counters == nil {
		cfg.Counters = &Counters{}
	}
	f := &Forwarder{cfg: cfg, kind: kindOf(cfg.Codec.MimeType), isKey: codecs.KeyframeDetector(cfg.Codec.MimeType), now: time.Now,
		after: func(d time.Duration, fn func()) { time.AfterFunc(d, fn) }}
	if f.kind == webrtc.RTPCodecTypeVideo {
		f.hist = &history{}
	}
	for _, e := range cfg.Extensions {
		if e.ID > 0 && e.ID < 256 && forwarded(e.URI) {
			f.ext = append(f.ext, srcExt{id: uint8(e.ID), uri: e.URI})
		}
	}
	empty, none := []*DownTrack{}, []*shape{}
	f.downs.Store(&empty)
	f.shapes.Store(&none)
	return f
}

func forwarded(uri string) bool {
	for _, u := range ForwardedExtensions {
		if u == uri {
			return true
		}
	}
	return false
}

func kindOf(mime string) webrtc.RTPCodecType {
	if strings.HasPrefix(strings.ToLower(mime), "audio/") {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

// Codec is the incoming track's codec.
func (f *Forwarder) Codec() webrtc.RTPCodecParameters { return f.cfg.Codec }

// Kind is audio or video.
func (f *Forwarder) Kind() webrtc.RTPCodecType { return f.kind }

// Subscribers is the number of bound DownTracks.
func (f *Forwarder) Subscribers() int { return len(*f.downs.Load()) }

// Run reads src until it fails (the publisher left or its connection
// closed) and forwards every packet. Call it from the track's one reader
// goroutine.
func (f *Forwarder) Run(src Source) error {
	f.inMu.Lock()
	f.parallel = runtime.GOMAXPROCS(0) > 1
	f.inMu.Unlock()
	defer f.end()
	for {
		n, _, err := src.Read(f.buf[:])
		if err != nil {
			return err
		}
		f.receiveOne(f.buf[:n], f.now())
	}
}

// end stops the fan-out's helpers when Run returns. A packet the fast
// receive path still delivers after that (until its track is removed
// there) is forwarded without them: none start again.
func (f *Forwarder) end() {
	f.inMu.Lock()
	defer f.inMu.Unlock()
	f.ended.Store(true)
	f.parallel = false
	f.stopHelpers()
}

// Forward writes one raw RTP packet to every subscriber, as if it arrived
// now through pion.
func (f *Forwarder) Forward(raw []byte) { f.receiveOne(raw, f.now()) }

// receiveOne forwards a packet pion decrypted: its index is estimated
// here, as pion's SRTP context estimated it.
func (f *Forwarder) receiveOne(raw []byte, arrival time.Time) {
	f.inMu.Lock()
	defer f.inMu.Unlock()
	f.one[0], f.oneAt[0] = raw, arrival
	f.receive(f.one[:], nil, f.oneAt[:])
	f.one[0] = nil
}

// Extend is the SRTP packet index the track expects for sequence number
// seq (srtprecv.Sink): the fast receive path decrypts with its rollover
// counter, so that both receive paths follow one estimate.
func (f *Forwarder) Extend(seq uint16) uint64 { return f.win.Extend(seq) }

// burstSize is the most packets of a burst written to the subscribers
// together; a longer burst is written in parts.
const burstSize = 16

// ReceiveRTP writes raw RTP packets that were read back to back (a burst,
// in order, each with its SRTP index, as authenticated, and its arrival)
// to every subscriber (srtprecv.Sink): each subscriber's copies of the
// burst are made one after another, so that they leave together, as one
// segmented send where the kernel can (srtpsend.Sender). Malformed,
// oversized and replayed packets are dropped.
func (f *Forwarder) ReceiveRTP(pkts [][]byte, indices []uint64, arrivals []time.Time) {
	f.inMu.Lock()
	defer f.inMu.Unlock()
	for len(pkts) > 0 {
		n := min(len(pkts), burstSize)
		f.receive(pkts[:n], indices[:n], arrivals[:n])
		pkts, indices, arrivals = pkts[n:], indices[n:], arrivals[n:]
	}
}

// receive writes a burst of at most burstSize packets; indices are their
// SRTP indices, or nil to estimate them; inMu held.
func (f *Forwarder) receive(pkts [][]byte, indices []uint64, arrivals []time.Time) {
	c := f.cfg.Counters
	n := 0 // packets kept, parsed into f.pkts[:n]
	var lastArrival time.Time
	var bytesIn uint64
	for i, raw := range pkts {
		if len(raw) > MaxPacketSize {
			c.Oversize.Add(1)
			continue
		}
		p := &f.pkts[n]
		if err := p.Unmarshal(raw); err != nil {
			continue
		}
		var index uint64
		if indices != nil {
			index = indices[i]
		} else {
			index = f.win.Extend(p.SequenceNumber)
		}
		// The one replay check every receive path passes: a packet
		// forwarded twice would be a second packet for indices the
		// subscribers' keys already sealed.
		if uint16(index) != p.SequenceNumber || !f.win.Accept(index) {
			c.Replayed.Add(1)
			continue
		}
		if f.cfg.Observe != nil {
			f.cfg.Observe(raw, &p.Header, arrivals[i])
		}
		// Before the subscriber list is loaded: a subscriber added after
		// this check misses the keyframe's start, and its request is then
		// sent.
		key := f.isKey != nil && f.isKey(p.Payload)
		if key {
			f.lastKeySeen.Store(f.now().UnixNano())
			f.awaiting.Store(false)
		}
		c.PacketsIn.Add(1)
		c.BytesIn.Add(uint64(len(raw)))
		bytesIn += uint64(len(raw))
		if f.hist != nil {
			f.hist.add(index, raw)
		}
		f.outs[n].set(raw, p)
		f.outs[n].key, f.outs[n].i, f.outs[n].index, f.outs[n].from = key, n, index, f
		lastArrival = arrivals[i]
		n++
	}
	if n == 0 {
		return
	}
	f.received.Add(bytesIn)
	f.srMu.Lock()
	f.lastTS, f.lastArrival = f.pkts[n-1].Timestamp, lastArrival
	f.srMu.Unlock()
	// Every shape's headers before the subscriber list is loaded: a
	// subscriber whose shape is newer than this burst's headers then
	// misses the burst, as if it had been added just after it.
	f.gen++
	outs := f.outs[:n]
	for i := range outs {
		outs[i].gen = f.gen
	}
	for _, sh := range *f.shapes.Load() {
		for i := range outs {
			sh.heads[i] = sh.hdr.marshal(sh, &f.pkts[i].Header, &sh.bufs[i])
		}
		sh.gen = f.gen
	}
	downs := *f.downs.Load()
	var sent, bytes uint64
	if f.parallel && len(downs) >= 2*fanOutChunk {
		sent, bytes = f.fanOut(downs, outs)
	} else {
		sent, bytes = writeAll(downs, outs, &f.batch)
	}
	if sent > 0 {
		c.PacketsOut.Add(sent)
		c.BytesOut.Add(bytes)
	}
}

// add binds d with b, whose header shape is key's (the track's existing
// shape for it if it has one), and joins the fan-out.
func (f *Forwarder) add(d *DownTrack, b *binding, key shapeKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b.shape = f.shapeOf(key)
	d.bound.Store(b)
	f.setDowns(append(f.without(d), d))
}

// join adds the simulcast DownTrack d, with a shape of key's, to the
// fan-out of this layer.
func (f *Forwarder) join(d *DownTrack, key shapeKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d.sim.shapes[f.layer].Store(f.shapeOf(key))
	f.setDowns(append(f.without(d), d))
}

// shapeOf is the track's shape for key, or a new one; f.mu held.
func (f *Forwarder) shapeOf(key shapeKey) *shape {
	for _, sh := range *f.shapes.Load() {
		if sh.profile == key.profile && sh.cc == key.cc && slices.Equal(sh.ext, key.ext) {
			return sh
		}
	}
	return &shape{shapeKey: key}
}

func (f *Forwarder) remove(d *DownTrack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setDowns(f.without(d))
}

// without is a copy of the subscriber list without d; f.mu held.
func (f *Forwarder) without(d *DownTrack) []*DownTrack {
	old := *f.downs.Load()
	next := make([]*DownTrack, 0, len(old)+1)
	for _, o := range old {
		if o != d {
			next = append(next, o)
		}
	}
	return next
}

// setDowns stores the subscriber list and the shapes its subscribers'
// headers take, no others: subscribers that come and go with other
// extension IDs leave no shape behind to marshal for; f.mu held.
func (f *Forwarder) setDowns(downs []*DownTrack) {
	var shapes []*shape
	for _, d := range downs {
		if sh := d.shapeIn(f); sh != nil && !slices.Contains(shapes, sh) {
			shapes = append(shapes, sh)
		}
	}
	f.shapes.Store(&shapes)
	f.downs.Store(&downs)
}
