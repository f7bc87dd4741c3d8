// Package srtpsend sends a subscriber's media straight from the SFU's ICE
// UDP socket: each forwarded packet is marshalled and SRTP-encrypted in
// place into a batch slot, and a whole fan-out leaves in one sendmmsg.
//
// pion's per-subscriber write path (interceptor chain, SRTP session lock,
// buffer pool, ICE and mux lookups, one sendto per packet) cost three times
// a plain UDP send per forwarded packet (docs/benchmarks.md). pion still
// owns ICE, DTLS, RTCP and every connection this package cannot serve
// (ICE-TCP, DTLS client role); the SFU falls back to it there.
package srtpsend

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Sentinel errors.
var (
	ErrNoAddress = errors.New("srtpsend: no selected UDP address")
	ErrTooLarge  = errors.New("srtpsend: packet larger than a batch slot")
)

// slotSize holds the largest RTP packet (the MTU) plus the SRTP tag.
const slotSize = 1500 + 64

// batchSize is the most datagrams one sendmmsg carries; a longer fan-out
// is sent in several calls.
const batchSize = 64

// Socket is where direct sends leave from: the SFU's ICE UDP socket (the
// one the ICE mux reads), or its twin on the same address and port (see
// Listen), so that the 5-tuple matches ICE's pair.
type Socket struct {
	conn  *net.UDPConn
	batch interface {
		WriteBatch([]ipv4.Message, int) (int, error)
	}
	twin    *twin // nil: send from conn
	twinErr error // why there is no twin, from Listen
	// Counters of datagrams and sendmmsg calls (metrics).
	Datagrams, Calls atomic.Uint64
}

// NewSocket sends from the ICE mux's UDP socket itself.
func NewSocket(conn *net.UDPConn) *Socket {
	s := &Socket{conn: conn}
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil && a.IP != nil && !a.IP.IsUnspecified() {
		s.batch = ipv6.NewPacketConn(conn)
	} else {
		s.batch = ipv4.NewPacketConn(conn)
	}
	return s
}

// Twin reports whether sends leave from a twin socket (Listen), and if
// not, why.
func (s *Socket) Twin() (bool, error) { return s.twin != nil, s.twinErr }

// Close closes the twin socket, if any (the ICE socket is the mux's).
func (s *Socket) Close() error {
	if s.twin != nil {
		return s.twin.close()
	}
	return nil
}

// WriteTo sends one datagram from the ICE port: pion's own (STUN, DTLS,
// RTCP) when srtprecv passes them here, so that the ICE socket itself
// never sends either.
func (s *Socket) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	s.Datagrams.Add(1)
	s.Calls.Add(1)
	if t := s.twin; t != nil {
		if a := t.reach(to); a.IsValid() {
			return t.sendOne(b, a)
		}
	}
	return s.conn.WriteToUDPAddrPort(b, to)
}

// dest is a remote address as both send paths want it.
type dest struct {
	udp *net.UDPAddr
	ap  netip.AddrPort // in the twin's family
}

// Conn is one subscriber connection's direct path: its SRTP keys and the
// remote address ICE selected. It is shared by that connection's Streams.
type Conn struct {
	sock    *Socket
	key     []byte
	salt    []byte
	profile srtp.ProtectionProfile
	dst     atomic.Pointer[dest]

	// One SRTP context per SSRC, kept for the connection's life like
	// pion's session: a reused transceiver sends a new track on the same
	// SSRC, and the subscriber's rollover-counter guess must match ours.
	mu       sync.Mutex // creating contexts
	contexts sync.Map   // uint32 → *ssrcContext
}

type ssrcContext struct {
	ssrc uint32
	mu   sync.Mutex // the forwarder and the retransmitter encrypt
	ctx  *srtp.Context
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
	ctx, err := srtp.CreateContext(c.key, c.salt, c.profile)
	if err != nil {
		return nil, fmt.Errorf("srtpsend: %w", err)
	}
	sc := &ssrcContext{ssrc: ssrc, ctx: ctx}
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
	return &Conn{sock: sock, key: key, salt: salt, profile: profile}, nil
}

// SetAddr points the connection at the remote UDP address of ICE's
// selected pair; an invalid address stops direct sends (ErrNoAddress).
func (c *Conn) SetAddr(a netip.AddrPort) {
	if !a.IsValid() {
		c.dst.Store(nil)
		return
	}
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	d := &dest{udp: net.UDPAddrFromAddrPort(a), ap: a}
	if t := c.sock.twin; t != nil {
		if d.ap = t.reach(a); !d.ap.IsValid() {
			c.dst.Store(nil) // another family than the socket's
			return
		}
	}
	c.dst.Store(d)
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

// seal marshals hdr and payload into buf and encrypts them in place with
// the context of hdr's SSRC.
func (s *Stream) seal(buf []byte, hdr *rtp.Header, payload []byte) ([]byte, error) {
	hl := hdr.MarshalSize()
	if hl+len(payload) > 1500 {
		return nil, ErrTooLarge
	}
	sc := s.last.Load()
	if sc == nil || sc.ssrc != hdr.SSRC {
		var err error
		if sc, err = s.conn.context(hdr.SSRC); err != nil {
			return nil, err
		}
		s.last.Store(sc)
	}
	if _, err := hdr.MarshalTo(buf[:hl]); err != nil {
		return nil, err
	}
	n := hl + copy(buf[hl:], payload)
	sc.mu.Lock()
	out, err := sc.ctx.EncryptRTP(buf[:n], buf[:n], hdr)
	sc.mu.Unlock()
	return out, err
}

// WriteRTP sends one packet now (a retransmission, outside any batch).
func (s *Stream) WriteRTP(hdr *rtp.Header, payload []byte) error {
	dst := s.conn.dst.Load()
	if dst == nil {
		return ErrNoAddress
	}
	s.mu.Lock() // one buffer
	defer s.mu.Unlock()
	out, err := s.seal(s.one[:], hdr, payload)
	if err != nil {
		return err
	}
	_, err = s.conn.sock.WriteTo(out, dst.ap)
	return err
}

// Batch collects one goroutine's datagrams of a fan-out; Flush sends them.
// A Batch belongs to one goroutine and allocates only when first used.
type Batch struct {
	sock *Socket
	bufs [][slotSize]byte
	size []int
	dst  []*dest
	n    int
	msgs []ipv4.Message // sending from the ICE socket
	tw   *twinBatch     // sending from its twin
}

// Add encrypts one packet for s into the batch (flushing first if the
// batch is full or belongs to another socket). It returns ErrNoAddress
// while s's connection has no selected address.
func (b *Batch) Add(s *Stream, hdr *rtp.Header, payload []byte) error {
	dst := s.conn.dst.Load()
	if dst == nil {
		return ErrNoAddress
	}
	if b.sock != s.conn.sock || b.n == batchSize {
		if err := b.Flush(); err != nil {
			return err
		}
		b.sock = s.conn.sock
	}
	if b.bufs == nil {
		b.bufs = make([][slotSize]byte, batchSize)
		b.size = make([]int, batchSize)
		b.dst = make([]*dest, batchSize)
	}
	out, err := s.seal(b.bufs[b.n][:], hdr, payload)
	if err != nil {
		return err
	}
	b.size[b.n], b.dst[b.n] = len(out), dst
	b.n++
	return nil
}

// Len is the number of datagrams waiting.
func (b *Batch) Len() int { return b.n }

// Flush sends every waiting datagram. On a send error the rest of the
// batch is dropped (like a lost packet; NACKs recover video).
func (b *Batch) Flush() error {
	if b.n == 0 {
		return nil
	}
	var sent, calls int
	var err error
	if t := b.sock.twin; t != nil {
		sent, calls, err = t.send(b)
	} else {
		sent, calls, err = b.sendFromConn()
	}
	b.sock.Calls.Add(uint64(calls))
	b.sock.Datagrams.Add(uint64(sent))
	clear(b.dst[:b.n])
	b.n = 0
	return err
}

// sendFromConn sends the batch from the ICE socket with x/net's sendmmsg.
func (b *Batch) sendFromConn() (sent, calls int, err error) {
	if b.msgs == nil {
		b.msgs = make([]ipv4.Message, batchSize)
		for i := range b.msgs {
			b.msgs[i].Buffers = make([][]byte, 1)
		}
	}
	for i := range b.n {
		b.msgs[i].Buffers[0], b.msgs[i].Addr = b.bufs[i][:b.size[i]], b.dst[i].udp
	}
	defer func() {
		for i := range b.n {
			b.msgs[i].Addr = nil
		}
	}()
	for sent < b.n {
		k, e := b.sock.batch.WriteBatch(b.msgs[sent:b.n], 0)
		calls++
		if e != nil {
			return sent, calls, fmt.Errorf("srtpsend: sendmmsg: %w", e)
		}
		sent += k
	}
	return sent, calls, nil
}
