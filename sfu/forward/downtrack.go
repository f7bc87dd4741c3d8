package forward

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/bwe"
	"github.com/jbcalling/platform/sfu/codecs"

	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

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
	cc       *bwe.Sender    // the subscriber connection's transport-cc numbers; nil: none
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
	// sim, for a subscriber of one of several layers, is its switcher's.
	sim *simDown

	padMu   sync.Mutex // SendPadding's scratch
	padHdr  rtp.Header
	padCC   [2]byte
	padHead [headSize]byte
	padBody [MaxPadding]byte
}

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

// shapeKey is what makes a shape: the forwarded extensions, the profile,
// and the ID of the transport-cc extension each copy gets its own number
// in (0: none), placed first so that the copy's number is found at once.
type shapeKey struct {
	ext     []extMap
	profile uint16
	cc      uint8
}

// shape is how some of a track's subscribers receive its headers: which
// extensions, under which IDs, in which profile. A track's subscribers
// almost always negotiated the same (the SFU wrote their offers), so a
// fan-out rewrites and marshals each packet's header once per shape, and
// each copy only patches its SSRC and payload type in (in srtpsend).
type shape struct {
	shapeKey
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
	cc  [2]byte // the transport-cc number's payload
}

// header is src as sh's subscribers receive it but for SSRC and payload
// type: its extensions under their IDs (payloads and CSRCs stay shared,
// read-only).
func (h *headerScratch) header(sh *shape, src *rtp.Header) *rtp.Header {
	hdr := &h.hdr
	*hdr = *src
	hdr.Extension, hdr.ExtensionProfile, hdr.Extensions = true, sh.profile, h.ext[:0]
	if sh.cc != 0 {
		h.cc = [2]byte{} // the direct path numbers each copy; pion's, stampPion
		_ = hdr.SetExtension(sh.cc, h.cc[:])
	}
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
	codec, ok := codecs.Match(d.f.cfg.Codec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, ErrCodecNotNegotiated
	}
	var ext []extMap
	profile := uint16(rtp.ExtensionProfileOneByte)
	var cc uint8
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.TransportCCURI && d.cc != nil && e.ID > 0 && e.ID < 256 {
			cc = uint8(e.ID)
			d.cc.SetExtensionID(cc)
			if e.ID > 14 {
				profile = rtp.ExtensionProfileTwoByte
			}
		}
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
	if s := d.sim; s != nil {
		// Its layers' shapes are theirs (join); this one marshals
		// retransmissions.
		b.shape = &shape{shapeKey: shapeKey{ext: ext, profile: profile, cc: cc}}
		d.bound.Store(b)
		s.mu.Lock()
		d.joinLayers()
		s.mu.Unlock()
		return codec, nil
	}
	d.f.add(d, b, shapeKey{ext: ext, profile: profile, cc: cc})
	d.f.attached()
	return codec, nil
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.Close()
	d.bound.Store(nil)
	return nil
}

// Close stops forwarding to this subscriber (also done by Unbind).
func (d *DownTrack) Close() {
	if d.sim != nil {
		d.leaveLayers()
		return
	}
	d.f.remove(d)
}

// shapeIn is d's shape in f's fan-out, nil if it has none there.
func (d *DownTrack) shapeIn(f *Forwarder) *shape {
	if d.sim != nil {
		return d.sim.shapes[f.layer].Load()
	}
	if b := d.bound.Load(); b != nil {
		return b.shape
	}
	return nil
}

// RequestKeyframe asks the publisher of what d receives for a keyframe
// (the subscriber's PLI or FIR); throttled by its forwarder.
func (d *DownTrack) RequestKeyframe() {
	f := d.f
	if d.sim != nil {
		if f = d.sim.layers.Layer(d.Layer()); f == nil {
			return
		}
	}
	f.RequestKeyframe()
}

// SetDirect sends this subscriber's packets through s from now on. The
// move is one way (nil is ignored): pion's SRTP context for the SSRC
// stopped where the direct path took over, and would seal again indices
// the direct path used.
func (d *DownTrack) SetDirect(s *srtpsend.Stream) {
	if s != nil {
		d.direct.Store(s)
	}
}

// send writes one new packet of source under the next index b.out gives
// it: on the direct path head (the packet's header for shape sh) and o's
// body, into batch; else through pion, which wants the header parsed,
// rewritten by hdr. A connection with a direct path never gives its media back to pion,
// not even while it has no address: pion's SRTP context would seal again
// indices the direct path used.
func (d *DownTrack) send(b *binding, source uint64, sh *shape, head []byte, o *outPacket, batch *srtpsend.Batch, hdr *headerScratch) bool {
	s := d.direct.Load()
	via := rtpindex.ViaPion
	if s != nil {
		via = rtpindex.ViaDirect
	}
	index, err := b.out.Next(source, o.index, via)
	if err != nil {
		d.f.cfg.Counters.IndexRefusals.Add(1)
		return false
	}
	return d.seal(s, b, sh, head, o, index, batch, hdr)
}

// seal sends o under index on the direct path s (into batch, or at once
// when batch is nil), or through pion when s is nil.
func (d *DownTrack) seal(s *srtpsend.Stream, b *binding, sh *shape, head []byte, o *outPacket, index uint64, batch *srtpsend.Batch, hdr *headerScratch) bool {
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
	h := hdr.header(sh, o.src)
	h.SSRC, h.PayloadType, h.SequenceNumber = b.ssrc, b.pt, uint16(index)
	d.stampPion(h, hdr.cc[:], h.MarshalSize()+len(o.body))
	n, err := b.ws.WriteRTP(h, o.payload)
	return err == nil && n > 0
}

// stampPion gives a packet pion is to write, of size bytes, with header
// h whose transport-cc extension's payload is num, its transport-cc
// number (on the direct path the connection numbers each copy as it
// seals it).
func (d *DownTrack) stampPion(h *rtp.Header, num []byte, size int) {
	if d.cc != nil && h.GetExtension(d.cc.ExtensionID()) != nil {
		binary.BigEndian.PutUint16(num, d.cc.Next(size+srtpOverhead))
	}
}

// srtpOverhead is what SRTP adds to a packet (a 16-byte AES-GCM tag, or a
// 10-byte HMAC one): the size transport-cc feedback is judged by.
const srtpOverhead = 16

// SetTransportCC numbers the packets this track sends in the subscriber
// connection's transport-wide sequence, s, once the subscriber negotiated
// the extension; it must come before the track is bound.
func (d *DownTrack) SetTransportCC(s *bwe.Sender) { d.cc = s }

func (d *DownTrack) write(o *outPacket, batch *srtpsend.Batch) bool {
	b := d.bound.Load()
	if b != nil && d.sim != nil {
		return d.writeLayer(b, o, batch)
	}
	if b == nil || b.shape.gen != o.gen || b.shape.heads[o.i] == nil {
		return false // bound after the packet's headers were made, or a header too long
	}
	key := o.key
	ok := d.send(b, b.source, b.shape, b.shape.heads[o.i], o, batch, &d.hdr)
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
	var rtpTime uint32
	if d.sim != nil {
		if rtpTime, ok = d.simSenderReport(now); !ok {
			return sr, false
		}
	} else {
		f := d.f
		f.srMu.Lock()
		ts, at := f.lastTS, f.lastArrival
		f.srMu.Unlock()
		// Signed: a packet may have arrived after now was read.
		rtpTime = ts + uint32(int64(now.Sub(at))*int64(f.cfg.Codec.ClockRate)/int64(time.Second))
	}
	return rtcp.SenderReport{
		SSRC:        b.ssrc,
		NTPTime:     ntpTime(now),
		RTPTime:     rtpTime,
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
