// Package srtprecv reads the SFU's ICE UDP port for pion's ICE mux and
// keeps the SRTP media of registered publisher connections for itself: it
// decrypts each packet and hands it to its track's Sink on the goroutine
// that read it, so a publisher's packet reaches the forwarder without the
// five goroutine hand-offs of pion's receive path (mux, ICE, DTLS/SRTP
// mux, SRTP session, track reader). Everything else, STUN, DTLS, RTCP and
// media of SSRCs nobody registered, goes to pion, through one hand-off.
//
// The port has one socket per reading goroutine (srtpsend.Listen spreads
// media over them by SSRC), so that tracks are forwarded on several cores.
// Sockets are read with non-blocking raw system calls, waiting in Go's
// netpoller when empty, and pion's writes leave through a Writer, normally
// srtpsend's twin socket: the scheduler's bookkeeping around ordinary
// system calls woke its monitor thread on every burst of packets, measured
// at an eighth of the SFU's CPU (docs/benchmarks.md).
package srtprecv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath/mmsg"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// Sink receives one SSRC's decrypted RTP packets, on a reading goroutine,
// a burst at a time: the packets of the SSRC that were queued back to back
// on the socket (one or more, in order), each with the SRTP packet index
// it was authenticated under and its arrival. It must not block, and must
// not keep pkts after returning.
type Sink interface {
	// Extend is the packet index the sink expects for sequence number
	// seq (its rollover counter, the index's high bits, is not sent): the
	// sink keeps the SSRC's one estimate, whichever path delivers.
	Extend(seq uint16) uint64
	ReceiveRTP(pkts [][]byte, indices []uint64, arrivals []time.Time)
}

// RTCPSink receives a peer's decrypted compound RTCP packets, on reader 0
// (where the port steers all RTCP): it must not block, and must not keep
// pkt after returning.
type RTCPSink interface {
	ReceiveRTCP(pkt []byte)
}

// Writer sends pion's datagrams (STUN, DTLS, RTCP) from the ICE port.
type Writer interface {
	WriteTo(b []byte, to netip.AddrPort) (int, error)
}

// Counters are totals for the metrics.
type Counters struct {
	// Packets kept and handed to a Sink.
	Received atomic.Uint64
	// RTCP packets kept and handed to an RTCPSink.
	ReceivedRTCP atomic.Uint64
	// Packets of a registered SSRC (or RTCP of a peer with an RTCPSink)
	// that did not decrypt (forged, replayed), or decrypted to more than
	// MaxPacketSize: dropped. They never go to pion, whose SRTP contexts
	// for those streams stopped at the hand-over and would accept what
	// this path has seen already.
	Rejected atomic.Uint64
}

const (
	// replayWindow is pion's own SRTP and SRTCP replay window
	// (srtp.SessionSRTP, SessionSRTCP).
	replayWindow = 64
	// datagramSize is the largest datagram kept (pion's receive MTU).
	datagramSize = 8192
	// MaxPacketSize is the largest decrypted RTP packet handed to a
	// Sink: RTP over UDP never exceeds the MTU.
	MaxPacketSize = 1500
	// pionQueue is how many datagrams may wait for pion's mux worker
	// before a reader waits for it.
	pionQueue = 512
	// MaxBatch is the most datagrams one read takes and so the longest
	// burst a Sink receives at once.
	MaxBatch = mmsg.MaxBatch
)

// Mux is the ICE UDP port as pion's UDP mux reads and writes it: a
// net.PacketConn that also offers pion's allocation-free AddrPort methods.
type Mux struct {
	conns   []*net.UDPConn
	readers []*reader
	out     Writer

	mu    sync.RWMutex
	peers map[netip.AddrPort]*Peer

	toPion   chan *datagram
	free     chan *datagram
	deadline atomic.Pointer[time.Time] // of ReadFromAddrPort
	closed   chan struct{}
	once     sync.Once
	wg       sync.WaitGroup

	Counters Counters
}

// datagram is one datagram on its way to pion.
type datagram struct {
	b    [datagramSize]byte
	n    int
	from netip.AddrPort
}

// NewMux reads conns, the port's sockets, each on its own goroutine, until
// Close; out, if not nil, sends pion's writes (else conns[0] does).
func NewMux(conns []*net.UDPConn, out Writer) (*Mux, error) {
	m, err := newIdleMux(conns, out)
	if err != nil {
		return nil, err
	}
	m.start()
	return m, nil
}

// newIdleMux is a Mux whose readers have not started.
func newIdleMux(conns []*net.UDPConn, out Writer) (*Mux, error) {
	if len(conns) == 0 {
		return nil, errors.New("srtprecv: no socket")
	}
	m := &Mux{conns: conns, out: out, peers: map[netip.AddrPort]*Peer{},
		toPion: make(chan *datagram, pionQueue), free: make(chan *datagram, pionQueue), closed: make(chan struct{})}
	for _, c := range conns {
		rr, err := mmsg.NewReader(c)
		if err != nil {
			return nil, err
		}
		m.readers = append(m.readers, &reader{m: m, rr: rr})
	}
	return m, nil
}

// start runs the readers (tests queue datagrams before it).
func (m *Mux) start() {
	for _, r := range m.readers {
		m.wg.Add(1)
		go r.run()
	}
}

// reader is one socket's goroutine and what it owns.
type reader struct {
	m     *Mux
	rr    *mmsg.Reader
	slots [MaxBatch][datagramSize]byte // as received
	bufs  [MaxBatch][]byte             // the slots, for ReadBatch
	lens  [MaxBatch]int
	froms [MaxBatch]netip.AddrPort
	plain [MaxBatch][datagramSize]byte // decrypted
	burst [MaxBatch][]byte             // a sink's packets, in plain
	index [MaxBatch]uint64             // and their SRTP indices
	at    [MaxBatch]time.Time
	hdr   rtp.Header
}

func (r *reader) run() {
	defer r.m.wg.Done()
	for i := range r.slots {
		r.bufs[i] = r.slots[i][:]
	}
	for {
		n, err := r.rr.ReadBatch(r.bufs[:], r.lens[:], r.froms[:])
		if err != nil {
			_ = r.m.shutdown() // a socket closed: the port is done
			return
		}
		r.handle(n, time.Now())
	}
}

// handle keeps or passes on the n datagrams read, which arrived at now.
func (r *reader) handle(n int, now time.Time) {
	for i := 0; i < n; {
		pkt, from := r.slots[i][:r.lens[i]], r.froms[i]
		switch {
		case isRTP(pkt):
			if kept := r.keepMedia(i, n, now); kept > 0 {
				i += kept
				continue
			}
		case isRTCP(pkt) && r.keepRTCP(pkt, from):
			i++
			continue
		}
		r.m.toPionQueue(pkt, from)
		i++
	}
}

// keepMedia hands datagram i, if it is RTP of a kept SSRC of a registered
// peer, to its sink together with the same SSRC's datagrams from the same
// peer right after it (up to n): a burst. It returns how many datagrams
// it took (0: none, pion's); one that does not decrypt is dropped.
func (r *reader) keepMedia(i, n int, arrival time.Time) int {
	m := r.m
	from := r.froms[i]
	pkt := r.slots[i][:r.lens[i]]
	p := m.peer(from)
	if p == nil {
		return 0
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	t := p.track(ssrc)
	if t == nil {
		return 0
	}
	k, j := 0, i
	for ; j < n; j++ {
		pkt := r.slots[j][:r.lens[j]]
		if j > i && (r.froms[j] != from || !isRTP(pkt) || binary.BigEndian.Uint32(pkt[8:12]) != ssrc) {
			break
		}
		plain, index, ok := t.decrypt(pkt, r.plain[k][:0], &r.hdr, r.index[:k])
		if !ok || len(plain) > MaxPacketSize {
			m.Counters.Rejected.Add(1)
			continue
		}
		r.burst[k], r.index[k], r.at[k] = plain, index, arrival
		k++
	}
	if k > 0 {
		m.Counters.Received.Add(uint64(k))
		t.sink.ReceiveRTP(r.burst[:k], r.index[:k], r.at[:k])
		clear(r.burst[:k])
	}
	return j - i
}

// keepRTCP hands a registered peer's RTCP to its RTCPSink and reports
// whether it did.
func (r *reader) keepRTCP(pkt []byte, from netip.AddrPort) bool {
	m := r.m
	p := m.peer(from)
	if p == nil {
		return false
	}
	control, plain, ok := p.decryptRTCP(pkt, r.plain[0][:0])
	switch {
	case control == nil:
		return false
	case !ok:
		m.Counters.Rejected.Add(1)
		return true // dropped
	}
	m.Counters.ReceivedRTCP.Add(1)
	control.ReceiveRTCP(plain)
	return true
}

// peer is the registered peer whose media comes from from, or nil.
func (m *Mux) peer(from netip.AddrPort) *Peer {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.peers[from]
}

// toPionQueue copies pkt for pion's mux worker, waiting while pion is a
// whole queue behind: dropping there lost STUN and DTLS under overload
// (ICE then failed for connections that were fine), where waiting lets
// the socket's own buffer drop what the SFU cannot take, media and
// control alike, as it did before this path existed. pion's worker never
// blocks (it queues for each connection), so the wait is short.
func (m *Mux) toPionQueue(pkt []byte, from netip.AddrPort) {
	var d *datagram
	select {
	case d = <-m.free:
	default:
		d = new(datagram)
	}
	d.n, d.from = copy(d.b[:], pkt), from
	select {
	case m.toPion <- d:
	case <-m.closed:
	}
}

func (m *Mux) recycle(d *datagram) {
	select {
	case m.free <- d:
	default:
	}
}

// isRTP tells SRTP from STUN, DTLS and SRTCP on a shared port (RFC 7983:
// first byte 128-191; RFC 5761: RTCP packet types 192-223 in the second).
func isRTP(b []byte) bool {
	return len(b) >= 12 && b[0]&0xc0 == 0x80 && (b[1] < 192 || b[1] > 223)
}

// isRTCP is SRTCP (RFC 5761: packet types 192-223).
func isRTCP(b []byte) bool {
	return len(b) >= 8 && b[0]&0xc0 == 0x80 && b[1] >= 192 && b[1] <= 223
}

// ReadFromAddrPort returns the next datagram that is not a registered
// publisher's media.
func (m *Mux) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	var timeout <-chan time.Time
	if dl := m.deadline.Load(); dl != nil && !dl.IsZero() {
		t := time.NewTimer(time.Until(*dl))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case d := <-m.toPion:
		n, from := copy(b, d.b[:d.n]), d.from
		m.recycle(d)
		return n, from, nil
	case <-m.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	case <-timeout:
		return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
	}
}

// WriteToAddrPort sends one of pion's datagrams.
func (m *Mux) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if m.out != nil {
		return m.out.WriteTo(b, to)
	}
	return m.conns[0].WriteToUDPAddrPort(b, to)
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

// Close closes the port's sockets and waits for the readers to end.
func (m *Mux) Close() error {
	err := m.shutdown()
	m.wg.Wait()
	return err
}

func (m *Mux) shutdown() error {
	var errs []error
	m.once.Do(func() {
		close(m.closed)
		for _, c := range m.conns {
			if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// LocalAddr implements net.PacketConn.
func (m *Mux) LocalAddr() net.Addr { return m.conns[0].LocalAddr() }

// SetDeadline implements net.PacketConn.
func (m *Mux) SetDeadline(t time.Time) error {
	_ = m.SetReadDeadline(t)
	return m.SetWriteDeadline(t)
}

// SetReadDeadline implements net.PacketConn.
func (m *Mux) SetReadDeadline(t time.Time) error {
	m.deadline.Store(&t)
	return nil
}

// SetWriteDeadline implements net.PacketConn; writes never wait.
func (m *Mux) SetWriteDeadline(time.Time) error { return nil }

// ErrClosed is returned by a closed Peer.
var ErrClosed = errors.New("srtprecv: peer closed")

// Peer is one publisher connection's inbound media: the keys the publisher
// encrypts with, the address ICE selected, and per SSRC kept a Sink and an
// SRTP context.
type Peer struct {
	m         *Mux
	profile   srtp.ProtectionProfile
	key, salt []byte

	mu     sync.Mutex // guards addr, tracks, rtcp, closed
	addr   netip.AddrPort
	tracks map[uint32]*track
	rtcp   *rtcpTrack
	closed bool
}

// rtcpTrack is a peer's kept RTCP: one SRTCP context for all its SSRCs
// (reader 0 decrypts all of it).
type rtcpTrack struct {
	sink RTCPSink
	mu   sync.Mutex
	ctx  *srtp.Context
}

// track is one kept SSRC: its own context, so that a publisher's tracks
// on different readers decrypt without waiting for each other.
type track struct {
	sink Sink
	mu   sync.Mutex
	ctx  *srtp.Context
}

// NewPeer returns an unregistered peer for a connection whose remote SRTP
// master key and salt (the publisher's) are given.
func (m *Mux) NewPeer(profile srtp.ProtectionProfile, key, salt []byte) (*Peer, error) {
	if _, err := srtp.CreateContext(key, salt, profile); err != nil { // fail now, not per track
		return nil, fmt.Errorf("srtprecv: %w", err)
	}
	return &Peer{m: m, profile: profile, key: key, salt: salt, tracks: map[uint32]*track{}}, nil
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

// Add keeps ssrc's packets for s from now on; each is decrypted under
// the index s.Extend estimates, so that this path continues where pion's
// left off, whatever pion decrypted meanwhile.
func (p *Peer) Add(ssrc uint32, s Sink) error {
	ctx, err := srtp.CreateContext(p.key, p.salt, p.profile, srtp.SRTPReplayProtection(replayWindow))
	if err != nil {
		return fmt.Errorf("srtprecv: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.tracks[ssrc] = &track{sink: s, ctx: ctx}
	return nil
}

// SetRTCP keeps the peer's RTCP for s from now on.
func (p *Peer) SetRTCP(s RTCPSink) error {
	ctx, err := srtp.CreateContext(p.key, p.salt, p.profile, srtp.SRTCPReplayProtection(replayWindow))
	if err != nil {
		return fmt.Errorf("srtprecv: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.rtcp = &rtcpTrack{sink: s, ctx: ctx}
	return nil
}

// Remove gives ssrc's packets back to pion.
func (p *Peer) Remove(ssrc uint32) {
	p.mu.Lock()
	delete(p.tracks, ssrc)
	p.mu.Unlock()
}

// Close unregisters the peer: pion receives everything from it again.
func (p *Peer) Close() {
	p.SetAddr(netip.AddrPort{})
	p.mu.Lock()
	p.closed = true
	clear(p.tracks)
	p.rtcp = nil
	p.mu.Unlock()
}

// track is ssrc's kept track, or nil.
func (p *Peer) track(ssrc uint32) *track {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tracks[ssrc]
}

// decrypt decrypts pkt into dst under the index its sink expects, or
// the one after the burst's packets before it (earlier, their indices),
// which the sink has not seen yet, if that is newer: a burst can wrap
// before the sink has seen any of it. ok is false when it did not decrypt.
func (t *track) decrypt(pkt, dst []byte, hdr *rtp.Header, earlier []uint64) (plain []byte, index uint64, ok bool) {
	seq := binary.BigEndian.Uint16(pkt[2:4])
	index = t.sink.Extend(seq)
	if n := len(earlier); n > 0 {
		index = max(index, rtpindex.Nearest(earlier[n-1], seq))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// pion's context would guess the rollover counter from what it saw
	// itself; set so, it uses exactly the sink's.
	t.ctx.SetROC(binary.BigEndian.Uint32(pkt[8:12]), uint32(index>>16))
	plain, err := t.ctx.DecryptRTP(dst, pkt, hdr)
	return plain, index, err == nil
}

// decryptRTCP decrypts pkt into dst for the peer's RTCPSink; sink is nil
// when the peer keeps no RTCP.
func (p *Peer) decryptRTCP(pkt, dst []byte) (sink RTCPSink, plain []byte, ok bool) {
	p.mu.Lock()
	t := p.rtcp
	p.mu.Unlock()
	if t == nil {
		return nil, nil, false
	}
	t.mu.Lock()
	plain, err := t.ctx.DecryptRTCP(dst, pkt, nil)
	t.mu.Unlock()
	return t.sink, plain, err == nil
}
