// Package srtpsend sends a subscriber's media straight from the SFU's ICE
// UDP port: each forwarded packet is marshalled and SRTP-encrypted in
// place into a batch slot, and a whole fan-out leaves in one sendmmsg.
//
// pion's per-subscriber write path (interceptor chain, SRTP session lock,
// buffer pool, ICE and mux lookups, one sendto per packet) cost three times
// a plain UDP send per forwarded packet (docs/benchmarks.md). pion still
// owns ICE, DTLS, RTCP and every connection this package cannot serve
// (ICE-TCP, DTLS client role); the SFU falls back to it there.
//
// Datagrams leave from a send-only twin of the ICE port's sockets (see
// Listen), on Linux only; elsewhere the Port has no send socket and pion
// writes everything.
package srtpsend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// Sentinel errors.
var (
	ErrNoAddress = errors.New("srtpsend: no selected UDP address")
	ErrTooLarge  = errors.New("srtpsend: packet larger than a batch slot")
	ErrClosed    = errors.New("srtpsend: socket closed")
	ErrIndex     = errors.New("srtpsend: SRTP packet index beyond 2^48")
)

// slotSize holds the largest RTP packet (the MTU) plus the SRTP tag.
const slotSize = 1500 + 64

// batchSize is the most datagrams one sendmmsg carries; a longer fan-out
// is sent in several calls.
const batchSize = 64

// Port is the SFU's ICE UDP port: the sockets srtprecv reads, all bound
// to the same address and port, and the socket direct sends leave from.
type Port struct {
	// Readers share the port (SO_REUSEPORT); a reuseport program
	// spreads media among them by SSRC (see steering).
	Readers []*net.UDPConn
	// Send is nil when the port could not be shared (not Linux, or a
	// kernel without reuseport programs): then there is one reader, and
	// pion writes every packet. Unshared says why.
	Send     *Socket
	Unshared error
}

// Listen opens the ICE port on addr with readers reader sockets (at least
// one) and a send socket, each with bufSize kernel buffers (capped by
// net.core.rmem_max and wmem_max). If the port cannot be shared it falls
// back to one plain reader (see Port).
func Listen(addr *net.UDPAddr, readers, bufSize int) (*Port, error) {
	p, err := listen(addr, max(1, readers), bufSize)
	if err != nil {
		return nil, err
	}
	for _, r := range p.Readers {
		_ = r.SetReadBuffer(bufSize)
		_ = r.SetWriteBuffer(bufSize)
	}
	return p, nil
}

// Close closes every socket of the port.
func (p *Port) Close() error {
	var errs []error
	if p.Send != nil {
		errs = append(errs, p.Send.Close())
	}
	for _, r := range p.Readers {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// Socket sends from the ICE port: a twin of the readers bound to the same
// address and port, so that the 5-tuple matches ICE's pair, which Go's
// netpoller never watches. Every datagram sent from a watched socket frees
// write space once delivered, and the kernel then wakes the thread blocked
// in epoll_wait for nothing: measured, half of the SFU's wake-ups under
// fan-out (docs/benchmarks.md).
type Socket struct {
	twin *twin
	// Counters of datagrams and send calls (metrics), and of the
	// datagrams sent as segments of a larger send (see Sender).
	Datagrams, Calls, Segmented atomic.Uint64
}

// Segmenting reports whether the kernel takes segmented sends (UDP GSO),
// so that a burst's copies to one subscriber leave in one send (Sender).
func (s *Socket) Segmenting() bool { return s.twin.segmenting() }

// Close closes the send socket (the ICE socket is the mux's).
func (s *Socket) Close() error { return s.twin.close() }

// WriteTo sends one datagram from the ICE port without waiting: pion's
// own (STUN, DTLS, RTCP), which srtprecv passes here so that the ICE
// socket itself never sends, and retransmissions.
func (s *Socket) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	a := s.twin.reach(netip.AddrPortFrom(to.Addr().Unmap(), to.Port()))
	if !a.IsValid() {
		return 0, fmt.Errorf("srtpsend: %s: not the socket's address family", to)
	}
	s.Datagrams.Add(1)
	s.Calls.Add(1)
	return s.twin.sendOne(b, a)
}

// Datagram is one datagram for a Sender: To must be in the socket's
// family (an IPv4 address is mapped on an IPv6 socket by the caller).
type Datagram struct {
	B  []byte
	To netip.AddrPort
}

// Sender sends datagrams from a Socket in as few sendmmsg calls as the
// kernel takes. Consecutive datagrams to the same address, all the size of
// the first but a shorter last, go as one segmented send (UDP GSO) where
// the kernel can: its send path, a third of the SFU's CPU under fan-out,
// then runs once for them (docs/benchmarks.md). It belongs to one
// goroutine: it keeps the calls' arguments.
type Sender struct {
	sock *Socket
	args *mmsgArgs
}

// NewSender returns a Sender on s.
func (s *Socket) NewSender() *Sender { return &Sender{sock: s} }

// Send sends ds without waiting and returns how many left, and the first
// error: a datagram the kernel refuses (too large, say) is skipped and the
// others still go; a full send buffer drops the rest, as a full NIC queue
// would.
func (snd *Sender) Send(ds []Datagram) (int, error) {
	if snd.args == nil {
		snd.args = new(mmsgArgs)
	}
	sent := 0
	var first error
	for next := 0; next < len(ds); {
		chunk := ds[next:min(len(ds), next+batchSize)]
		n, tried, calls, segmented, err := snd.sock.twin.send(snd.args, chunk)
		snd.sock.Calls.Add(uint64(calls))
		snd.sock.Segmented.Add(uint64(segmented))
		snd.sock.Datagrams.Add(uint64(n))
		sent, next = sent+n, next+tried
		if first == nil {
			first = err
		}
		if tried < len(chunk) { // a socket error: the rest would fail too
			break
		}
	}
	return sent, first
}

// Conn is one subscriber connection's direct path: its SRTP keys and the
// remote address ICE selected. It is shared by that connection's Streams.
type Conn struct {
	sock    *Socket
	key     []byte
	salt    []byte
	profile srtp.ProtectionProfile
	gcm     *gcmKeys                       // nil: pion seals (the AES-CM-HMAC profiles)
	dst     atomic.Pointer[netip.AddrPort] // in the socket's family

	// One SRTP context per SSRC, kept for the connection's life like
	// pion's session (a reused transceiver sends a new track on the same
	// SSRC). Which index each packet is sealed under is the caller's
	// (rtpindex.Outbound): this package keeps no packet index of its own.
	mu       sync.Mutex // creating contexts
	contexts sync.Map   // uint32 → *ssrcContext

	stamper Stamper // set before the first packet; nil: none
}

// Stamper numbers each packet a connection sends, in its header (the
// transport-wide sequence number of congestion control feedback), given
// the packet's size on the wire.
type Stamper interface {
	Stamp(head []byte, size int)
}

// tagSize is the AES-GCM profiles' tag (the HMAC ones' is 10 bytes): the
// size a Stamper is told adds it.
const tagSize = 16

// SetStamper has st number every packet c seals from now on; call it
// before the first.
func (c *Conn) SetStamper(st Stamper) { c.stamper = st }

type ssrcContext struct {
	ssrc uint32
	mu   sync.Mutex    // the forwarder and the retransmitter encrypt
	iv   [12]byte      // with gcm: seal's scratch
	ctx  *srtp.Context // without
	hdr  rtp.Header    // without: pion parses the header into it
}

// context returns ssrc's SRTP context, made on first use.
func (c *Conn) context(ssrc uint32) (*ssrcContext, error) {
	if v, ok := c.contexts.Load(ssrc); ok {
		return v.(*ssrcContext), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.contexts.Load(ssrc); ok {
		return v.(*ssrcContext), nil
	}
	sc := &ssrcContext{ssrc: ssrc}
	if c.gcm == nil {
		ctx, err := srtp.CreateContext(c.key, c.salt, c.profile)
		if err != nil {
			return nil, fmt.Errorf("srtpsend: %w", err)
		}
		sc.ctx = ctx
	}
	c.contexts.Store(ssrc, sc)
	return sc, nil
}

// NewConn returns a direct path for a connection whose local SRTP master
// key and salt (the SFU's, as the DTLS server) are given.
func NewConn(sock *Socket, profile srtp.ProtectionProfile, key, salt []byte) (*Conn, error) {
	// Fail now rather than per packet if pion cannot use these keys.
	if _, err := srtp.CreateContext(key, salt, profile); err != nil {
		return nil, fmt.Errorf("srtpsend: %w", err)
	}
	gcm, err := newGCMKeys(profile, key, salt)
	if err != nil {
		return nil, err
	}
	return &Conn{sock: sock, key: key, salt: salt, profile: profile, gcm: gcm}, nil
}

// SealsAEAD reports whether the connection's profile is AES-GCM, which
// this package seals itself (gcmKeys); pion/srtp seals the others.
func (c *Conn) SealsAEAD() bool { return c.gcm != nil }

// SetAddr points the connection at the remote UDP address of ICE's
// selected pair; an invalid address stops direct sends (ErrNoAddress).
func (c *Conn) SetAddr(a netip.AddrPort) {
	if !a.IsValid() {
		c.dst.Store(nil)
		return
	}
	a = c.sock.twin.reach(netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))
	if !a.IsValid() {
		c.dst.Store(nil) // another family than the socket's
		return
	}
	c.dst.Store(&a)
}

// Stream is one subscriber track's way out on a Conn (a DownTrack's),
// used by the forwarder's goroutines and, for retransmissions, by the
// subscriber's RTCP reader.
type Stream struct {
	conn *Conn
	// last is the context of the SSRC last sent: a stream keeps one SSRC,
	// and the connection's map lookup was 3 % of the SFU's CPU.
	last atomic.Pointer[ssrcContext]
	mu   sync.Mutex     // guards one
	one  [slotSize]byte // a lone packet's buffer (retransmissions)
}

// NewStream returns a stream on c.
func (c *Conn) NewStream() *Stream { return &Stream{conn: c} }

// putHeader writes into dst the RTP header head as one subscriber receives
// it, with that subscriber's ssrc, payload type pt and sequence number
// seq: a fan-out marshals the header once and patches each copy.
func putHeader(dst, head []byte, ssrc uint32, pt uint8, seq uint16) {
	copy(dst, head)
	dst[1] = dst[1]&0x80 | pt&0x7f
	binary.BigEndian.PutUint16(dst[2:4], seq)
	binary.BigEndian.PutUint32(dst[8:12], ssrc)
}

// seal writes head (for ssrc and pt, see putHeader) and body, the payload
// and any padding, into buf, encrypted with the context of ssrc under
// SRTP packet index index (its low 16 bits the sequence number).
func (s *Stream) seal(buf, head []byte, ssrc uint32, pt uint8, index uint64, body []byte) ([]byte, error) {
	hl := len(head)
	n := hl + len(body)
	switch {
	case hl < 12:
		return nil, errShortHeader
	case n > 1500:
		return nil, ErrTooLarge
	case index >= 1<<48:
		return nil, ErrIndex
	}
	sc := s.last.Load()
	if sc == nil || sc.ssrc != ssrc {
		var err error
		if sc, err = s.conn.context(ssrc); err != nil {
			return nil, err
		}
		s.last.Store(sc)
	}
	seq, roc := uint16(index), uint32(index>>16)
	putHeader(buf, head, ssrc, pt, seq)
	if st := s.conn.stamper; st != nil {
		st.Stamp(buf[:hl], n+tagSize)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.ctx != nil {
		copy(buf[hl:], body)
		// pion would guess the rollover counter from the sequence number;
		// set so, the next packet's is exactly roc.
		sc.ctx.SetROC(ssrc, roc)
		return sc.ctx.EncryptRTP(buf[:n], buf[:n], &sc.hdr)
	}
	// Sealed from where the body is: no copy.
	return s.conn.gcm.seal(buf, hl, ssrc, roc, seq, body, &sc.iv), nil
}

var errShortHeader = errors.New("srtpsend: RTP header shorter than 12 bytes")

// WriteRTP sends one packet now (a retransmission, outside any batch):
// head for ssrc and pt (see putHeader), then body, the payload and any
// padding, under SRTP packet index index.
func (s *Stream) WriteRTP(head []byte, ssrc uint32, pt uint8, index uint64, body []byte) error {
	dst := s.conn.dst.Load()
	if dst == nil {
		return ErrNoAddress
	}
	s.mu.Lock() // one buffer
	defer s.mu.Unlock()
	out, err := s.seal(s.one[:], head, ssrc, pt, index, body)
	if err != nil {
		return err
	}
	_, err = s.conn.sock.WriteTo(out, *dst)
	return err
}

// Batch collects one goroutine's datagrams of a fan-out; Flush sends them.
// A Batch belongs to one goroutine and allocates only when first used.
type Batch struct {
	snd     Sender
	bufs    [][slotSize]byte
	ds      []Datagram
	touched uint64 // what Touch loaded, kept so the loads are not dropped
}

// Touch loads what Add for s and ssrc will read first (the stream's
// connection, its address, the SRTP context, the session keys' holder),
// so that a fan-out can bring many subscribers' state into the cache at
// once before it seals the first copy (docs/benchmarks.md).
func (b *Batch) Touch(s *Stream, ssrc uint32) {
	c := s.conn
	sum := uint64(ssrc)
	if d := c.dst.Load(); d != nil {
		sum += uint64(d.Port())
	}
	if sc := s.last.Load(); sc != nil {
		sum += uint64(sc.ssrc)
	}
	if c.gcm != nil {
		sum += uint64(c.gcm.salt[0])
	}
	b.touched += sum
}

// Add encrypts one packet for s into the batch (flushing first if the
// batch is full or belongs to another socket): head is its marshalled RTP
// header, sent with s's subscriber's ssrc and payload type pt (see
// putHeader) under SRTP packet index index, and body its payload and any
// padding. It returns ErrNoAddress while s's connection has no selected
// address.
func (b *Batch) Add(s *Stream, head []byte, ssrc uint32, pt uint8, index uint64, body []byte) error {
	dst := s.conn.dst.Load()
	if dst == nil {
		return ErrNoAddress
	}
	if b.snd.sock != s.conn.sock || len(b.ds) == batchSize {
		if err := b.Flush(); err != nil {
			return err
		}
		b.snd.sock = s.conn.sock
	}
	if b.bufs == nil {
		b.bufs = make([][slotSize]byte, batchSize)
		b.ds = make([]Datagram, 0, batchSize)
	}
	out, err := s.seal(b.bufs[len(b.ds)][:], head, ssrc, pt, index, body)
	if err != nil {
		return err
	}
	b.ds = append(b.ds, Datagram{B: out, To: *dst})
	return nil
}

// Len is the number of datagrams waiting.
func (b *Batch) Len() int { return len(b.ds) }

// Flush sends every waiting datagram. A datagram that cannot be sent is
// lost (NACKs recover video): alone if the kernel refuses it, with the
// rest of the batch if the socket's buffer is full (Sender.Send).
func (b *Batch) Flush() error {
	if len(b.ds) == 0 {
		return nil
	}
	_, err := b.snd.Send(b.ds)
	clear(b.ds)
	b.ds = b.ds[:0]
	return err
}
