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

	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
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
	f := &Forwarder{cfg: cfg, kind: kindOf(cfg.Codec.MimeType), isKey: keyframeDetector(cfg.Codec.MimeType), now: time.Now,
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
		if f.hist != nil {
			f.hist.add(index, raw)
		}
		f.outs[n].set(raw, p)
		f.outs[n].key, f.outs[n].i, f.outs[n].index = key, n, index
		lastArrival = arrivals[i]
		n++
	}
	if n == 0 {
		return
	}
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

// fanOutChunk is the fewest subscribers worth handing to a helper
// goroutine, and a list is split from twice that. Each incoming packet
// then costs two hand-offs; with the port's readers forwarding different
// tracks in parallel, splitting 200 subscribers cost 6-17 % more CPU per
// forwarded packet for no measurable latency gain (docs/benchmarks.md),
// so only a track whose fan-out alone takes several milliseconds per
// packet (≈ 7 µs a copy) is split.
const fanOutChunk = 256

type fanJob struct {
	downs []*DownTrack
	outs  []outPacket
}

type fanResult struct{ sent, bytes uint64 }

// outPacket is one incoming packet as the fan-out writes it.
type outPacket struct {
	gen     uint64      // which shapes' headers are this packet's
	i       int         // its place in the burst: its header in a shape's heads
	index   uint64      // its SRTP index at the publisher
	key     bool        // a keyframe's
	size    int         // as received
	src     *rtp.Header // as received
	payload []byte      // without padding (pion's path)
	body    []byte      // payload and padding, as received (the direct path)
}

// set points o at raw, which p was parsed from.
func (o *outPacket) set(raw []byte, p *rtp.Packet) {
	o.size, o.src, o.payload = len(raw), &p.Header, p.Payload
	o.body = raw[len(raw)-len(p.Payload)-int(p.PaddingSize):]
}

// writeAll writes a burst to downs, subscriber by subscriber: into batch
// for subscribers with a direct path, sent as the batch fills and at the
// end, through pion for the others. It returns the copies and bytes sent.
func writeAll(downs []*DownTrack, outs []outPacket, batch *srtpsend.Batch) (sent, bytes uint64) {
	touch(downs, batch)
	for _, d := range downs {
		for i := range outs {
			if d.write(&outs[i], batch) {
				sent++
				bytes += uint64(outs[i].size)
			}
		}
	}
	if batch.Len() > 0 {
		_ = batch.Flush() // a failed send is a lost packet; NACKs recover video
	}
	return sent, bytes
}

// touch reads the state each direct copy needs, for every subscriber,
// before the copies are made: between packets the load on the machine
// evicts it, and in the copy loop each subscriber's chain of cache misses
// (track, binding, stream, connection, address, SRTP context) waits
// behind the previous subscriber's encryption, where here the misses of
// many subscribers overlap (docs/benchmarks.md).
func touch(downs []*DownTrack, batch *srtpsend.Batch) {
	for _, d := range downs {
		if b, s := d.bound.Load(), d.direct.Load(); b != nil && s != nil {
			batch.Touch(s, b.ssrc)
		}
	}
}

// fanOut splits a long subscriber list between this goroutine and up to
// GOMAXPROCS-1 helpers, and returns when every part is written: one
// track's fan-out is otherwise capped at one core, and the last subscriber
// waits for all the writes before it. Each DownTrack is written by one
// goroutine per packet, and the packet is not touched until all finish.
func (f *Forwarder) fanOut(downs []*DownTrack, outs []outPacket) (sent, bytes uint64) {
	if f.jobs == nil {
		f.startHelpers(runtime.GOMAXPROCS(0) - 1)
	}
	parts := min(f.helpers+1, len(downs)/fanOutChunk)
	size := (len(downs) + parts - 1) / parts
	for i := 1; i < parts; i++ {
		f.jobs <- fanJob{downs: downs[i*size : min(len(downs), (i+1)*size)], outs: outs}
	}
	sent, bytes = writeAll(downs[:size], outs, &f.batch)
	for i := 1; i < parts; i++ {
		r := <-f.results
		sent, bytes = sent+r.sent, bytes+r.bytes
	}
	return sent, bytes
}

func (f *Forwarder) startHelpers(n int) {
	f.jobs, f.results, f.helpers = make(chan fanJob), make(chan fanResult), n
	for range n {
		f.helperWG.Add(1)
		go func() {
			defer f.helperWG.Done()
			var batch srtpsend.Batch
			for j := range f.jobs {
				sent, bytes := writeAll(j.downs, j.outs, &batch)
				f.results <- fanResult{sent, bytes}
			}
		}()
	}
}

func (f *Forwarder) stopHelpers() {
	if f.jobs != nil {
		close(f.jobs)
		f.helperWG.Wait()
		f.jobs = nil
	}
}

// RequestKeyframe asks the publisher for a keyframe (a subscriber's PLI or
// FIR) unless one was asked for within the throttle interval. Audio tracks
// ignore it.
func (f *Forwarder) RequestKeyframe() { f.requestKeyframe(false) }

// requestKeyframe for a subscriber that attaches: it has no keyframe yet,
// so unless one is already on its way it is asked for after only a fifth
// of the throttle interval, and a throttled request is retried when the
// throttle allows unless a keyframe went by meanwhile. Dropping it for the
// whole interval left late joiners black until the publisher's next
// periodic keyframe (seconds, measured with sfuload).
func (f *Forwarder) requestKeyframe(attach bool) {
	if f.kind != webrtc.RTPCodecTypeVideo || f.cfg.RequestKeyframe == nil {
		return
	}
	now := f.now().UnixNano()
	last := f.lastKeyframe.Load()
	gap := int64(f.cfg.KeyframeInterval)
	if attach && f.isKey != nil && !f.awaiting.Load() {
		gap /= 5
	}
	if now-last < gap || !f.lastKeyframe.CompareAndSwap(last, now) {
		if attach && f.isKey != nil {
			f.retryAttach(time.Duration(gap - (now - last)))
		}
		return
	}
	f.awaiting.Store(true)
	f.cfg.Counters.KeyframeRequests.Add(1)
	f.cfg.RequestKeyframe()
}

// attached asks for a keyframe for a subscriber that has none.
func (f *Forwarder) attached() {
	f.lastAttach.Store(f.now().UnixNano())
	f.requestKeyframe(true)
}

// retryAttach asks again after wait if a subscriber attached after the
// last keyframe went by; one retry is pending at a time.
func (f *Forwarder) retryAttach(wait time.Duration) {
	if !f.retrying.CompareAndSwap(false, true) {
		return
	}
	f.after(max(wait, 0)+time.Millisecond, func() {
		f.retrying.Store(false)
		if f.lastAttach.Load() > f.lastKeySeen.Load() && !f.ended.Load() && f.Subscribers() > 0 {
			f.requestKeyframe(true)
		}
	})
}

// add binds d with b, whose header shape is ext and profile (the
// track's existing shape for them if it has one), and joins the fan-out.
func (f *Forwarder) add(d *DownTrack, b *binding, ext []extMap, profile uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b.shape = &shape{ext: ext, profile: profile}
	for _, sh := range *f.shapes.Load() {
		if sh.profile == profile && slices.Equal(sh.ext, ext) {
			b.shape = sh
			break
		}
	}
	d.bound.Store(b)
	f.setDowns(append(f.without(d), d))
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
		if b := d.bound.Load(); b != nil && !slices.Contains(shapes, b.shape) {
			shapes = append(shapes, b.shape)
		}
	}
	f.shapes.Store(&shapes)
	f.downs.Store(&downs)
}

// DownTrack is one subscriber's copy of a forwarded track: a
// webrtc.TrackLocal added to that subscriber's peer connection. It joins
// the Forwarder's fan-out when pion binds it and leaves when unbound.
type DownTrack struct {
	// What every copy reads comes first, in one cache line.
	bound atomic.Pointer[binding]
	// direct, once the subscriber's connection has one, is where packets
	// go instead of pion's write path.
	direct atomic.Pointer[srtpsend.Stream]
	// Sent so far, for sender reports.
	packets, octets atomic.Uint32
	f               *Forwarder

	id       string
	streamID string
	book     *rtpindex.Book // the subscriber connection's outbound indices
	hdr      headerScratch  // pion's path: used only by the goroutine writing this track

	resendMu sync.Mutex // retransmissions come from the RTCP reader
	rbuf     [MaxPacketSize]byte
	rpkt     rtp.Packet
	rhdr     headerScratch
	rhead    [headSize]byte
	// When each of the newest indices was last resent (unix nanos), by
	// index modulo rtpindex.RingSize; resendMu held.
	resentAt    [rtpindex.RingSize]int64
	resentIndex [rtpindex.RingSize]uint64
	// rtt is the subscriber's round trip, from its receiver reports.
	rtt atomic.Int64
}

// Retransmission limits: a NACK names up to thousands of packets in a few
// bytes (136 bytes asked for 512, 581 KB), so each NACK is answered for at
// most MaxResendPerNACK packets, each packet at most once per round trip
// (minResendGap before one is measured), within the subscriber's budget.
const (
	MaxResendPerNACK = 64
	minResendGap     = 100 * time.Millisecond
)

// ResendBudget bounds one subscriber's retransmissions across its tracks:
// a token bucket of packets. Safe for concurrent use.
type ResendBudget struct {
	mu          sync.Mutex
	rate, burst float64
	tokens      float64
	last        time.Time
}

// NewResendBudget allows rate retransmissions a second, burst at once.
func NewResendBudget(rate, burst float64) *ResendBudget {
	return &ResendBudget{rate: rate, burst: burst, tokens: burst}
}

// take spends one retransmission, if the budget has it.
func (b *ResendBudget) take(now time.Time) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// SetRTT records the subscriber's round trip, which spaces resends of one
// packet.
func (d *DownTrack) SetRTT(rtt time.Duration) { d.rtt.Store(int64(rtt)) }

type binding struct {
	// waitKey: no keyframe has reached this subscriber yet; asked: one was
	// requested once its transport delivered. Both belong to the
	// forwarder's goroutine once the binding is stored.
	waitKey, asked bool

	ssrc  uint32
	pt    uint8
	ws    webrtc.TrackLocalWriter
	shape *shape
	// out gives each copy its SRTP index on the subscriber's SSRC; source
	// is this binding's id there.
	out    *rtpindex.Outbound
	source uint64
}

type extMap struct{ in, out uint8 }

// shape is how some of a track's subscribers receive its headers: which
// extensions, under which IDs, in which profile. A track's subscribers
// almost always negotiated the same (the SFU wrote their offers), so a
// fan-out rewrites and marshals each packet's header once per shape, and
// each copy only patches its SSRC and payload type in (in srtpsend).
type shape struct {
	ext     []extMap
	profile uint16
	// The current burst's headers (nil where one did not marshal), written
	// by the receiving goroutine before the fan-out reads them: gen is the
	// burst's (outPacket.gen).
	heads [burstSize][]byte
	gen   uint64
	hdr   headerScratch
	bufs  [burstSize][headSize]byte
}

// headSize holds any header the SFU forwards: 12 bytes, 15 CSRCs, the
// extension block with the forwarded extensions' payloads (at most 255
// bytes each) and their alignment.
const headSize = 12 + 15*4 + 4 + 2*(2+255) + 3

// headerScratch rewrites a source header for a shape: one goroutine's.
type headerScratch struct {
	hdr rtp.Header
	ext []rtp.Extension
}

// header is src as sh's subscribers receive it but for SSRC and payload
// type: its extensions under their IDs (payloads and CSRCs stay shared,
// read-only).
func (h *headerScratch) header(sh *shape, src *rtp.Header) *rtp.Header {
	hdr := &h.hdr
	*hdr = *src
	hdr.Extension, hdr.ExtensionProfile, hdr.Extensions = true, sh.profile, h.ext[:0]
	for _, m := range sh.ext {
		if payload := src.GetExtension(m.in); payload != nil {
			_ = hdr.SetExtension(m.out, payload) // a payload too long for the profile is dropped
		}
	}
	h.ext = hdr.Extensions[:0] // grown, for the next packet
	if len(hdr.Extensions) == 0 {
		hdr.Extension, hdr.ExtensionProfile = false, 0
	}
	return hdr
}

// marshal is header marshalled into dst (nil if it does not fit).
func (h *headerScratch) marshal(sh *shape, src *rtp.Header, dst *[headSize]byte) []byte {
	n, err := h.header(sh, src).MarshalTo(dst[:])
	if err != nil {
		return nil
	}
	return dst[:n]
}

// NewDownTrack returns a track for one subscriber with the given ids
// (the publisher's track id and participant id). book is the subscriber
// connection's, shared by all its tracks, which may come to send on one
// SSRC in turn; nil gives the track a book of its own.
func (f *Forwarder) NewDownTrack(id, streamID string, book *rtpindex.Book) *DownTrack {
	if book == nil {
		book = rtpindex.NewBook()
	}
	return &DownTrack{f: f, id: id, streamID: streamID, book: book}
}

// Forwarder is the track's source.
func (d *DownTrack) Forwarder() *Forwarder { return d.f }

// SSRC is the subscriber's SSRC for the track, once pion bound it.
func (d *DownTrack) SSRC() (uint32, bool) {
	if b := d.bound.Load(); b != nil {
		return b.ssrc, true
	}
	return 0, false
}

// ID implements webrtc.TrackLocal.
func (d *DownTrack) ID() string { return d.id }

// RID implements webrtc.TrackLocal (no simulcast).
func (d *DownTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal.
func (d *DownTrack) StreamID() string { return d.streamID }

// Kind implements webrtc.TrackLocal.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.f.kind }

// Bind implements webrtc.TrackLocal: it picks the subscriber's payload type
// for the source codec, maps header extensions, starts forwarding and asks
// for a keyframe so the subscriber does not wait for the next one.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := matchCodec(d.f.cfg.Codec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, ErrCodecNotNegotiated
	}
	var ext []extMap
	profile := uint16(rtp.ExtensionProfileOneByte)
	for _, e := range ctx.HeaderExtensions() {
		if !forwarded(e.URI) || e.ID <= 0 || e.ID > 255 {
			continue
		}
		for _, in := range d.f.ext {
			if in.uri == e.URI {
				ext = append(ext, extMap{in: in.id, out: uint8(e.ID)})
				if e.ID > 14 {
					profile = rtp.ExtensionProfileTwoByte
				}
			}
		}
	}
	ssrc := uint32(ctx.SSRC())
	b := &binding{ssrc: ssrc, pt: uint8(codec.PayloadType), ws: ctx.WriteStream(), waitKey: d.f.isKey != nil,
		out: d.book.Stream(ssrc), source: d.book.NewSource()}
	d.f.add(d, b, ext, profile)
	d.f.attached()
	return codec, nil
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.f.remove(d)
	d.bound.Store(nil)
	return nil
}

// Close stops forwarding to this subscriber (also done by Unbind).
func (d *DownTrack) Close() { d.f.remove(d) }

// SetDirect sends this subscriber's packets through s from now on. The
// move is one way (nil is ignored): pion's SRTP context for the SSRC
// stopped where the direct path took over, and would seal again indices
// the direct path used.
func (d *DownTrack) SetDirect(s *srtpsend.Stream) {
	if s != nil {
		d.direct.Store(s)
	}
}

// send writes one new packet under the next index b.out gives it: on the
// direct path head (the packet's header for b's shape) and o's body, into
// batch; else through pion, which wants the header parsed, rewritten by
// hdr. A connection with a direct path never gives its media back to pion,
// not even while it has no address: pion's SRTP context would seal again
// indices the direct path used.
func (d *DownTrack) send(b *binding, head []byte, o *outPacket, batch *srtpsend.Batch, hdr *headerScratch) bool {
	s := d.direct.Load()
	via := rtpindex.ViaPion
	if s != nil {
		via = rtpindex.ViaDirect
	}
	index, err := b.out.Next(b.source, o.index, via)
	if err != nil {
		d.f.cfg.Counters.IndexRefusals.Add(1)
		return false
	}
	return d.seal(s, b, head, o, index, batch, hdr)
}

// seal sends o under index on the direct path s (into batch, or at once
// when batch is nil), or through pion when s is nil.
func (d *DownTrack) seal(s *srtpsend.Stream, b *binding, head []byte, o *outPacket, index uint64, batch *srtpsend.Batch, hdr *headerScratch) bool {
	if s != nil {
		var err error
		if batch != nil {
			err = batch.Add(s, head, b.ssrc, b.pt, index, o.body)
		} else {
			err = s.WriteRTP(head, b.ssrc, b.pt, index, o.body)
		}
		if errors.Is(err, srtpsend.ErrNoAddress) {
			d.f.cfg.Counters.Unsent.Add(1)
		}
		return err == nil
	}
	h := hdr.header(b.shape, o.src)
	h.SSRC, h.PayloadType, h.SequenceNumber = b.ssrc, b.pt, uint16(index)
	n, err := b.ws.WriteRTP(h, o.payload)
	return err == nil && n > 0
}

func (d *DownTrack) write(o *outPacket, batch *srtpsend.Batch) bool {
	b := d.bound.Load()
	if b == nil || b.shape.gen != o.gen || b.shape.heads[o.i] == nil {
		return false // bound after the packet's headers were made, or a header too long
	}
	key := o.key
	ok := d.send(b, b.shape.heads[o.i], o, batch, &d.hdr)
	if ok {
		d.packets.Add(1)
		d.octets.Add(uint32(len(o.payload)))
	}
	// pion drops packets (n 0, no error) until the subscriber's DTLS-SRTP
	// is up; a keyframe requested at Bind often comes back before that.
	// So the first packet that gets through, if not a keyframe, asks
	// again: else the subscriber waits for the next periodic keyframe.
	if ok && b.waitKey {
		if key {
			b.waitKey = false
		} else if !b.asked {
			b.asked = true
			d.f.attached()
		}
	}
	return ok
}

// Resend answers a subscriber's NACK from the track's history and returns
// how many packets it sent again: each under the index it was first sent
// with, with the same bytes, on the same path. Packets no longer kept, or
// first sent by another track or path, are skipped (the subscriber then
// asks for a keyframe); so are those beyond the limits above (budget may
// be nil: no budget).
func (d *DownTrack) Resend(nack *rtcp.TransportLayerNack, budget *ResendBudget) int {
	b, h := d.bound.Load(), d.f.hist
	if b == nil || h == nil {
		return 0
	}
	d.resendMu.Lock()
	defer d.resendMu.Unlock()
	now := d.f.now()
	gap := max(time.Duration(d.rtt.Load()), minResendGap)
	sent, tried, stop := 0, 0, false
	for _, pair := range nack.Nacks {
		if stop {
			break
		}
		pair.Range(func(seq uint16) bool {
			if tried == MaxResendPerNACK {
				stop = true
				return false
			}
			index, source, src, via, err := b.out.Sent(seq)
			if err != nil || source != b.source {
				return true
			}
			slot := index % rtpindex.RingSize
			if d.resentIndex[slot] == index+1 && now.UnixNano()-d.resentAt[slot] < int64(gap) {
				return true // resent within a round trip: that copy is on its way
			}
			tried++
			if !budget.take(now) {
				stop = true
				return false
			}
			d.resentIndex[slot], d.resentAt[slot] = index+1, now.UnixNano()
			s := d.direct.Load()
			if (s != nil) != (via == rtpindex.ViaDirect) {
				return true
			}
			n, ok := h.get(src, d.rbuf[:])
			if !ok || d.rpkt.Unmarshal(d.rbuf[:n]) != nil {
				return true
			}
			head := d.rhdr.marshal(b.shape, &d.rpkt.Header, &d.rhead)
			if head == nil {
				return true
			}
			var o outPacket
			o.set(d.rbuf[:n], &d.rpkt)
			if d.seal(s, b, head, &o, index, nil, &d.rhdr) {
				sent++
			}
			return true
		})
	}
	d.f.cfg.Counters.Retransmissions.Add(uint64(sent))
	return sent
}

// SenderReport describes what this subscriber was sent, for the RTCP
// sender report browsers use to sync audio with video and measure the
// round trip: the SFU's clock now against the track's RTP clock, derived
// from the newest packet's timestamp and arrival. ok is false before the
// first packet.
func (d *DownTrack) SenderReport(now time.Time) (sr rtcp.SenderReport, ok bool) {
	b := d.bound.Load()
	packets := d.packets.Load()
	if b == nil || packets == 0 {
		return sr, false
	}
	f := d.f
	f.srMu.Lock()
	ts, at := f.lastTS, f.lastArrival
	f.srMu.Unlock()
	// Signed: a packet may have arrived after now was read.
	ticks := int64(now.Sub(at)) * int64(f.cfg.Codec.ClockRate) / int64(time.Second)
	return rtcp.SenderReport{
		SSRC:        b.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     ts + uint32(ticks),
		PacketCount: packets,
		OctetCount:  d.octets.Load(),
	}, true
}

// ntpTime is t in NTP's 32.32 fixed-point seconds since 1900.
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2208988800
	secs := uint64(t.Unix() + unixToNTP)
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

// history keeps the last historySize packets of a track by SRTP index
// for retransmission: by the whole index, so that a resend always carries
// the bytes first sent under it, never those of a packet a sequence
// number cycle later.
type history struct {
	mu    sync.Mutex
	index [historySize]uint64
	size  [historySize]uint16 // 0: empty slot
	data  [historySize][MaxPacketSize]byte
}

// historySize covers ~2.7 s of a 1.5 Mbit/s track (190 packets/s): more
// than any NACK round trip worth answering.
const historySize = 512

func (h *history) add(index uint64, raw []byte) {
	i := index % historySize
	h.mu.Lock()
	h.index[i], h.size[i] = index, uint16(copy(h.data[i][:], raw))
	h.mu.Unlock()
}

func (h *history) get(index uint64, dst []byte) (int, bool) {
	i := index % historySize
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.size[i] == 0 || h.index[i] != index {
		return 0, false
	}
	return copy(dst, h.data[i][:h.size[i]]), true
}

// matchCodec finds the subscriber's parameters for the source codec: the
// same MIME type, and for H264 the same packetization mode and profile.
func matchCodec(src webrtc.RTPCodecParameters, offered []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i, c := range offered {
		if !strings.EqualFold(c.MimeType, src.MimeType) {
			continue
		}
		if c.SDPFmtpLine == src.SDPFmtpLine {
			return c, true
		}
		if fmtpCompatible(src, c) && fallback == nil {
			fallback = &offered[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

func fmtpCompatible(a, b webrtc.RTPCodecParameters) bool {
	switch strings.ToLower(a.MimeType) {
	case "video/h264":
		return fmtp(a.SDPFmtpLine, "packetization-mode", "0") == fmtp(b.SDPFmtpLine, "packetization-mode", "0") &&
			strings.EqualFold(prefix(fmtp(a.SDPFmtpLine, "profile-level-id", "42001f"), 4), prefix(fmtp(b.SDPFmtpLine, "profile-level-id", "42001f"), 4))
	case "video/vp9":
		return fmtp(a.SDPFmtpLine, "profile-id", "0") == fmtp(b.SDPFmtpLine, "profile-id", "0")
	}
	return true
}

func prefix(s string, n int) string {
	if len(s) < n {
		return s
	}
	return s[:n]
}

func fmtp(line, key, def string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return def
}
