// Package fastpath carries media between the SFU's ICE UDP port and its
// forwarders without pion's per-packet machinery, and decides, once per
// peer connection, whether this path or pion's carries that connection's
// media.
//
// The ICE port is one UDP port for every connection. Its sockets are read
// by srtprecv, which hands pion everything but the SRTP media (and RTCP)
// of the connections that took the fast receive path; subscribers' media
// leaves from srtpsend's send-only twin of those sockets, sealed by the
// SFU. dtlskeys recovers each connection's SRTP keys from pion's DTLS
// hooks; mmsg holds the system calls' message header and the batch reader
// the port's sockets (and the load tool's floor) are read with.
//
// Which path, per connection (a Publisher or Subscriber decides once):
//
//	connection                       media path            why
//	---------------------------------------------------------------------------
//	publisher, UDP pair on the port  fast receive (srtprecv)  SFU is DTLS server
//	publisher, ICE-TCP or range mode pion                     no datagrams to read
//	subscriber, UDP pair, DTLS server  direct send (srtpsend) keys from the hooks
//	subscriber, browser took DTLS server, ICE-TCP, range mode  pion  no keys / no socket
//	--fast-paths=off                 pion, everything         operator's choice
//
// Before a connection's path is decided, pion carries its media; after,
// the decision stands for the connection's life. A fast connection never
// gives media back to pion: pion's SRTP contexts for its streams stopped
// at the hand-over, so pion would accept packets this path has seen
// (replays) and seal again packet indices this path used (AES-GCM nonce
// reuse). A fast connection whose ICE pair moves to one this path cannot
// serve (ICE-TCP after a restart) is reported lost instead, and its
// participant ends and reconnects with new connections. Which packet
// index each packet has, on every path, is package rtpindex's.
package fastpath

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/jbcalling/platform/sfu/fastpath/dtlskeys"
	"github.com/jbcalling/platform/sfu/fastpath/srtprecv"
	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/pion/webrtc/v4"
)

// Sentinel errors.
var (
	// ErrNotDirect: the connection's selected ICE pair is not UDP through
	// the port (ICE-TCP, another socket): pion carries its media.
	ErrNotDirect = errors.New("fastpath: selected ICE pair is not UDP through the ICE port")
	// ErrLost: a fast connection's ICE pair moved to one the fast paths
	// cannot serve; the connection must end.
	ErrLost = errors.New("fastpath: the connection's ICE pair moved off the ICE port's UDP")
)

// Counters count connections by path, once each is decided.
type Counters struct {
	FastPublishers, PionPublishers     atomic.Uint64
	DirectSubscribers, PionSubscribers atomic.Uint64
	// DirectAEADSubscribers negotiated AES-GCM, sealed by the SFU's own
	// code (srtpsend's gcmKeys) rather than pion/srtp's.
	DirectAEADSubscribers atomic.Uint64
	// Lost fast connections (ErrLost).
	Lost atomic.Uint64
}

// Port is the ICE UDP port with its fast paths. The zero Port has none:
// pion carries every connection's media (and counts it).
type Port struct {
	mux  *srtprecv.Mux    // nil: no fast paths
	send *srtpsend.Socket // nil: no direct sends
	udp  *net.UDPConn     // the first reader, for its address
	// Counters of decided connections.
	Counters Counters
}

// Listen opens the ICE UDP port on addr: readers sockets (one per core)
// sharing it, each read on its own goroutine, and the send twin, with
// bufSize kernel buffers. Where the port cannot be shared (not Linux, an
// old kernel), it has one reader and no direct sends; log says so.
func Listen(addr *net.UDPAddr, readers, bufSize int, log *slog.Logger) (*Port, error) {
	sock, err := srtpsend.Listen(addr, readers, bufSize)
	if err != nil {
		return nil, err
	}
	var out srtprecv.Writer // pion's writes: from the twin, else from a reader
	if sock.Send != nil {
		out = sock.Send
		if !sock.Send.Segmenting() {
			log.Info("no segmented UDP sends (UDP_SEGMENT, Linux 4.18): a burst's copies leave one datagram per send")
		}
	} else {
		log.Warn("no direct send path: pion writes every subscriber's packets", "err", sock.Unshared)
	}
	mux, err := srtprecv.NewMux(sock.Readers, out)
	if err != nil {
		_ = sock.Close()
		return nil, err
	}
	return &Port{mux: mux, send: sock.Send, udp: sock.Readers[0]}, nil
}

// PacketConn is the port as pion's ICE UDP mux reads and writes it
// (webrtc.NewICEUDPMux); nil for the zero Port.
func (p *Port) PacketConn() net.PacketConn {
	if p.mux == nil {
		return nil
	}
	return p.mux
}

// Receiving is the fast receive path's counters, nil without one.
func (p *Port) Receiving() *srtprecv.Counters {
	if p.mux == nil {
		return nil
	}
	return &p.mux.Counters
}

// Sending is the send socket, for its counters; nil without one.
func (p *Port) Sending() *srtpsend.Socket { return p.send }

// Close closes the send socket; pion's ICE mux closes the readers.
func (p *Port) Close() error {
	if p.send != nil {
		return p.send.Close()
	}
	return nil
}

func (p *Port) localPort() int { return p.udp.LocalAddr().(*net.UDPAddr).Port }

// Publisher is one publisher connection's receive path.
type Publisher struct {
	port *Port
	keys *dtlskeys.Capture // nil: pion reads

	mu      sync.Mutex
	decided bool
	peer    *srtprecv.Peer // nil: pion reads
	closed  bool
	lost    sync.Once
}

// NewPublisher returns a publisher connection's path, setting se up for
// it: with a fast receive path, the DTLS hooks that yield the connection's
// keys, and the DTLS server role (a=setup:passive) in the SFU's answers,
// which the hooks need. se must make only this connection.
func (p *Port) NewPublisher(se *webrtc.SettingEngine) *Publisher {
	pp := &Publisher{port: p}
	if p.mux == nil {
		return pp
	}
	if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
		return pp // cannot happen: a valid role
	}
	pp.keys = dtlskeys.New()
	pp.keys.Options(se)
	return pp
}

// Possible reports whether the fast receive path may take the connection
// (the port has one); false: its API needs no hooks.
func (pp *Publisher) Possible() bool { return pp.keys != nil }

// Start decides the connection's receive path, once its media flows (its
// keys and selected pair exist only then); later calls report the first
// decision. With the fast path, the peer's RTCP goes to rtcp, and lost is
// called once if the ICE pair moves to one the path cannot serve. It
// reports whether the fast path took the connection, and why not.
func (pp *Publisher) Start(pc *webrtc.PeerConnection, rtcp srtprecv.RTCPSink, lost func(error)) (bool, error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.decided || pp.closed {
		return pp.peer != nil, nil
	}
	pp.decided = true
	peer, err := pp.start(pc, rtcp, lost)
	if err != nil {
		pp.port.Counters.PionPublishers.Add(1)
		return false, err
	}
	pp.port.Counters.FastPublishers.Add(1)
	pp.peer = peer
	return true, nil
}

func (pp *Publisher) start(pc *webrtc.PeerConnection, rtcp srtprecv.RTCPSink, lost func(error)) (*srtprecv.Peer, error) {
	if pp.keys == nil {
		return nil, errors.New("fastpath: no fast receive path on this port")
	}
	k, ice, err := pp.port.selected(pp.keys, pc)
	if err != nil {
		return nil, err
	}
	peer, err := pp.port.mux.NewPeer(k.Profile, k.RemoteKey, k.RemoteSalt)
	if err != nil {
		return nil, err
	}
	if rtcp != nil {
		if err := peer.SetRTCP(rtcp); err != nil {
			return nil, err
		}
	}
	pp.port.follow(ice, peer.SetAddr, func() {
		pp.lost.Do(func() {
			pp.port.Counters.Lost.Add(1)
			lost(ErrLost)
		})
	})
	return peer, nil
}

// Keep has the fast path decrypt ssrc's packets for s from now on, if the
// connection took it; false: pion keeps reading them.
func (pp *Publisher) Keep(ssrc uint32, s srtprecv.Sink) bool {
	pp.mu.Lock()
	peer := pp.peer
	pp.mu.Unlock()
	return peer != nil && peer.Add(ssrc, s) == nil
}

// Release stops keeping ssrc's packets (its track ended).
func (pp *Publisher) Release(ssrc uint32) {
	pp.mu.Lock()
	peer := pp.peer
	pp.mu.Unlock()
	if peer != nil {
		peer.Remove(ssrc)
	}
}

// Close stops the path for good: no more packets reach the sinks.
func (pp *Publisher) Close() {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.closed = true
	if pp.peer != nil {
		pp.peer.Close()
	}
}

// Subscriber is one subscriber connection's send path.
type Subscriber struct {
	port *Port
	keys *dtlskeys.Capture // nil: pion writes

	mu      sync.Mutex
	decided bool
	conn    *srtpsend.Conn // nil: pion writes
	peer    *srtprecv.Peer // its RTCP, when conn is set
	stamper srtpsend.Stamper
	closed  bool
	lost    sync.Once
}

// NewSubscriber returns a subscriber connection's path, setting se up for
// it: with direct sends, the DTLS hooks that yield the connection's keys
// (they work when the browser leaves the SFU the DTLS server role, as
// answerers to the SFU's offers do). se must make only this connection.
func (p *Port) NewSubscriber(se *webrtc.SettingEngine) *Subscriber {
	sp := &Subscriber{port: p}
	if p.send == nil || p.mux == nil {
		return sp
	}
	sp.keys = dtlskeys.New()
	sp.keys.Options(se)
	return sp
}

// SetStamper has st number every packet the direct path sends (see
// srtpsend.Stamper); call it before Start.
func (sp *Subscriber) SetStamper(st srtpsend.Stamper) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.stamper = st
}

// Possible reports whether the direct path may take the connection (the
// port has one); false: its API needs no hooks.
func (sp *Subscriber) Possible() bool { return sp.keys != nil }

// Start decides the connection's send path once it is connected (its keys
// exist only then); later calls report the first decision. With the
// direct path, the subscriber's RTCP goes to rtcp and lost is called once
// if the ICE pair moves to one the path cannot serve. It reports whether
// the direct path took the connection, and why not.
func (sp *Subscriber) Start(pc *webrtc.PeerConnection, rtcp srtprecv.RTCPSink, lost func(error)) (bool, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.decided || sp.closed {
		return sp.conn != nil, nil
	}
	sp.decided = true
	err := sp.start(pc, rtcp, lost)
	c := &sp.port.Counters
	if err != nil {
		c.PionSubscribers.Add(1)
		return false, err
	}
	c.DirectSubscribers.Add(1)
	if sp.conn.SealsAEAD() {
		c.DirectAEADSubscribers.Add(1)
	}
	return true, nil
}

func (sp *Subscriber) start(pc *webrtc.PeerConnection, rtcp srtprecv.RTCPSink, lost func(error)) error {
	if sp.keys == nil {
		return errors.New("fastpath: no direct send path on this port")
	}
	k, ice, err := sp.port.selected(sp.keys, pc) // dtlskeys.ErrNotServer when the browser took the DTLS server role
	if err != nil {
		return err
	}
	conn, err := srtpsend.NewConn(sp.port.send, k.Profile, k.LocalKey, k.LocalSalt)
	if err != nil {
		return err
	}
	if sp.stamper != nil {
		conn.SetStamper(sp.stamper)
	}
	peer, err := sp.port.mux.NewPeer(k.Profile, k.RemoteKey, k.RemoteSalt)
	if err != nil {
		return err
	}
	if rtcp != nil {
		if err := peer.SetRTCP(rtcp); err != nil {
			return err
		}
	}
	sp.conn, sp.peer = conn, peer
	sp.port.follow(ice, func(a netip.AddrPort) {
		conn.SetAddr(a)
		peer.SetAddr(a)
	}, func() {
		sp.lost.Do(func() {
			sp.port.Counters.Lost.Add(1)
			lost(ErrLost)
		})
	})
	return nil
}

// NewStream returns a way out for one of the connection's tracks on the
// direct path, or nil while pion writes (before Start, or for good).
func (sp *Subscriber) NewStream() *srtpsend.Stream {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.conn == nil || sp.closed {
		return nil
	}
	return sp.conn.NewStream()
}

// Close stops the path: nothing more is sent or received on it.
func (sp *Subscriber) Close() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.closed = true
	if sp.conn != nil {
		sp.conn.SetAddr(netip.AddrPort{})
		sp.peer.Close()
	}
}

// selected is what both paths need of a connected connection: its SRTP
// keys (the SFU being its DTLS server) and its ICE transport, whose
// selected pair must be UDP through the port.
func (p *Port) selected(keys *dtlskeys.Capture, pc *webrtc.PeerConnection) (dtlskeys.Keys, *webrtc.ICETransport, error) {
	k, err := keys.Keys()
	if err != nil {
		return dtlskeys.Keys{}, nil, err
	}
	ice := pc.SCTP().Transport().ICETransport()
	pair, err := ice.GetSelectedCandidatePair()
	if err != nil {
		return dtlskeys.Keys{}, nil, fmt.Errorf("fastpath: %w", err)
	}
	if !p.directAddr(pair).IsValid() {
		return dtlskeys.Keys{}, nil, ErrNotDirect
	}
	return k, ice, nil
}

// pairs is what follow needs of an ICE transport (*webrtc.ICETransport).
type pairs interface {
	OnSelectedCandidatePairChange(func(*webrtc.ICECandidatePair))
	GetSelectedCandidatePair() (*webrtc.ICECandidatePair, error)
}

// follow calls set with the selected pair's remote address now and
// whenever ICE selects another one through the port; for a pair it cannot
// serve it sets an invalid address and calls lost.
func (p *Port) follow(ice pairs, set func(netip.AddrPort), lost func()) {
	apply := func(pair *webrtc.ICECandidatePair) {
		a := p.directAddr(pair)
		set(a)
		if !a.IsValid() {
			lost()
		}
	}
	ice.OnSelectedCandidatePairChange(apply)
	if pair, err := ice.GetSelectedCandidatePair(); err == nil { // the newest, in case it changed meanwhile
		apply(pair)
	}
}

// directAddr is the remote address of a selected pair the fast paths can
// serve: UDP through the port. Anything else (ICE-TCP, an unresolved
// mDNS name) is invalid.
func (p *Port) directAddr(pair *webrtc.ICECandidatePair) netip.AddrPort {
	if pair == nil || pair.Local == nil || pair.Remote == nil || pair.Local.Protocol != webrtc.ICEProtocolUDP ||
		pair.Remote.Protocol != webrtc.ICEProtocolUDP || int(pair.Local.Port) != p.localPort() {
		return netip.AddrPort{}
	}
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, pair.Remote.Port)
}
