// Package srtprecv reads the SFU's ICE UDP socket for pion's ICE mux and
// keeps the SRTP media of registered publisher connections for itself: it
// decrypts each packet and hands it to its track's Sink on the reading
// goroutine, so a publisher's packet reaches the forwarder without the five
// goroutine hand-offs of pion's receive path (mux, ICE, DTLS/SRTP mux, SRTP
// session, track reader). Everything else, STUN, DTLS, RTCP and media of
// SSRCs nobody registered, goes to pion as before.
//
// The socket is read with non-blocking raw system calls (waiting in Go's
// netpoller when it is empty) and pion's writes leave through a Writer,
// normally srtpsend's twin socket: the scheduler's bookkeeping around
// ordinary system calls woke its monitor thread on every burst of packets,
// measured at an eighth of the SFU's CPU (docs/benchmarks.md).
package srtprecv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// Sink receives one SSRC's decrypted RTP packets, on the socket's reading
// goroutine: it must not block, and must not keep pkt after returning.
type Sink interface {
	ReceiveRTP(pkt []byte, arrival time.Time)
}

// Writer sends pion's datagrams (STUN, DTLS, RTCP) from the ICE port.
type Writer interface {
	WriteTo(b []byte, to netip.AddrPort) (int, error)
}

// Counters are totals for the metrics.
type Counters struct {
	// Packets kept and handed to a Sink.
	Received atomic.Uint64
	// Packets of a registered SSRC that did not decrypt (a replay, a
	// rollover the context missed): they go to pion instead.
	Rejected atomic.Uint64
}

// replayWindow is pion's own SRTP replay window (srtp.SessionSRTP).
const replayWindow = 64

// Mux is the ICE UDP socket as pion's UDP mux reads and writes it: a
// net.PacketConn that also offers pion's allocation-free AddrPort methods.
type Mux struct {
	conn *net.UDPConn
	raw  syscall.RawConn
	out  Writer

	mu    sync.RWMutex
	peers map[netip.AddrPort]*Peer

	// Owned by the one goroutine that reads (pion's mux worker).
	plain [1500]byte
	hdr   rtp.Header
	rd    reader

	Counters Counters
}

// NewMux wraps conn; out, if not nil, sends pion's writes (else conn does).
func NewMux(conn *net.UDPConn, out Writer) (*Mux, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("srtprecv: %w", err)
	}
	return &Mux{conn: conn, raw: raw, out: out, peers: map[netip.AddrPort]*Peer{}}, nil
}

// ReadFromAddrPort returns the next datagram that is not a registered
// publisher's media, forwarding those that are on the way.
func (m *Mux) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := m.read(b)
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		if isRTP(b[:n]) && m.keep(b[:n], from) {
			continue
		}
		return n, from, nil
	}
}

// keep hands a registered SSRC's packet to its sink and reports whether
// it did.
func (m *Mux) keep(pkt []byte, from netip.AddrPort) bool {
	m.mu.RLock()
	p := m.peers[from]
	m.mu.RUnlock()
	if p == nil {
		return false
	}
	sink, plain, ok := p.decrypt(pkt, m.plain[:0], &m.hdr)
	if sink == nil {
		return false
	}
	if !ok {
		m.Counters.Rejected.Add(1)
		return false
	}
	m.Counters.Received.Add(1)
	sink.ReceiveRTP(plain, time.Now())
	return true
}

// isRTP tells SRTP from STUN, DTLS and SRTCP on a shared port (RFC 7983:
// first byte 128-191; RFC 5761: RTCP packet types 192-223 in the second).
func isRTP(b []byte) bool {
	return len(b) >= 12 && b[0]&0xc0 == 0x80 && (b[1] < 192 || b[1] > 223)
}

// WriteToAddrPort sends one of pion's datagrams.
func (m *Mux) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if m.out != nil {
		return m.out.WriteTo(b, to)
	}
	return m.conn.WriteToUDPAddrPort(b, to)
}

// ReadFrom implements net.PacketConn.
func (m *Mux) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := m.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteTo implements net.PacketConn.
func (m *Mux) WriteTo(b []byte, to net.Addr) (int, error) {
	a, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("srtprecv: not a UDP address: %v", to)
	}
	return m.WriteToAddrPort(b, a.AddrPort())
}

// Close closes the socket.
func (m *Mux) Close() error { return m.conn.Close() }

// LocalAddr implements net.PacketConn.
func (m *Mux) LocalAddr() net.Addr { return m.conn.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (m *Mux) SetDeadline(t time.Time) error { return m.conn.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (m *Mux) SetReadDeadline(t time.Time) error { return m.conn.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (m *Mux) SetWriteDeadline(t time.Time) error { return m.conn.SetWriteDeadline(t) }

// ErrClosed is returned by a closed Peer.
var ErrClosed = errors.New("srtprecv: peer closed")

// Peer is one publisher connection's inbound media: the SRTP context of
// the keys the publisher encrypts with, the address ICE selected, and a
// Sink per SSRC kept.
type Peer struct {
	m *Mux

	mu     sync.Mutex // guards everything below; the reader decrypts under it
	ctx    *srtp.Context
	addr   netip.AddrPort
	sinks  map[uint32]Sink
	closed bool
}

// NewPeer returns an unregistered peer for a connection whose remote SRTP
// master key and salt (the publisher's) are given.
func (m *Mux) NewPeer(profile srtp.ProtectionProfile, key, salt []byte) (*Peer, error) {
	ctx, err := srtp.CreateContext(key, salt, profile, srtp.SRTPReplayProtection(replayWindow))
	if err != nil {
		return nil, fmt.Errorf("srtprecv: %w", err)
	}
	return &Peer{m: m, ctx: ctx, sinks: map[uint32]Sink{}}, nil
}

// SetAddr receives the peer's media from a, the remote address of ICE's
// selected pair (moving from the previous one); an invalid address stops
// receiving, and pion gets the packets again.
func (p *Peer) SetAddr(a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || a == p.addr {
		return
	}
	p.m.mu.Lock()
	if p.addr.IsValid() && p.m.peers[p.addr] == p {
		delete(p.m.peers, p.addr)
	}
	if a.IsValid() {
		p.m.peers[a] = p
	}
	p.m.mu.Unlock()
	p.addr = a
}

// Add keeps ssrc's packets for s from now on. roc is the SRTP rollover
// counter of the packets pion has decrypted so far (the number of times
// the sequence number wrapped), so this context continues where pion's
// left off.
func (p *Peer) Add(ssrc, roc uint32, s Sink) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if _, known := p.ctx.ROC(ssrc); !known {
		p.ctx.SetROC(ssrc, roc)
	}
	p.sinks[ssrc] = s
	return nil
}

// Remove gives ssrc's packets back to pion.
func (p *Peer) Remove(ssrc uint32) {
	p.mu.Lock()
	delete(p.sinks, ssrc)
	p.mu.Unlock()
}

// Close unregisters the peer: pion receives everything from it again.
func (p *Peer) Close() {
	p.SetAddr(netip.AddrPort{})
	p.mu.Lock()
	p.closed = true
	clear(p.sinks)
	p.mu.Unlock()
}

// decrypt finds pkt's sink and decrypts pkt into dst. sink is nil when
// the SSRC is not kept; ok is false when it is but pkt did not decrypt.
func (p *Peer) decrypt(pkt, dst []byte, hdr *rtp.Header) (sink Sink, plain []byte, ok bool) {
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	p.mu.Lock()
	defer p.mu.Unlock()
	if sink = p.sinks[ssrc]; sink == nil {
		return nil, nil, false
	}
	plain, err := p.ctx.DecryptRTP(dst, pkt, hdr)
	return sink, plain, err == nil
}
