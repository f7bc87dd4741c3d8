package srtprecv

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/racecheck"
	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v4/test"
)

const profile = srtp.ProtectionProfileAeadAes128Gcm

// publisher is a remote peer that sends SRTP to the mux's socket.
type publisher struct {
	t         testing.TB
	conn      *net.UDPConn
	key, salt []byte
	ctx       *srtp.Context
	buf       []byte
}

func newPublisher(t testing.TB) *publisher {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	kl, _ := profile.KeyLen()
	sl, _ := profile.SaltLen()
	p := &publisher{t: t, conn: conn, key: make([]byte, kl), salt: make([]byte, sl), buf: make([]byte, 0, 1600)}
	_, _ = rand.Read(p.key)
	_, _ = rand.Read(p.salt)
	if p.ctx, err = srtp.CreateContext(p.key, p.salt, profile); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *publisher) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func packet(ssrc uint32, seq uint16) []byte {
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc},
		Payload: bytes.Repeat([]byte{byte(seq)}, 300)}
	b, _ := pkt.Marshal()
	return b
}

// sendRTP encrypts and sends one packet; it returns what was sent.
func (p *publisher) sendRTP(to netip.AddrPort, ssrc uint32, seq uint16) []byte {
	p.t.Helper()
	out, err := p.ctx.EncryptRTP(p.buf[:0], packet(ssrc, seq), nil)
	if err != nil {
		p.t.Fatal(err)
	}
	p.send(to, out)
	return out
}

func (p *publisher) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.conn.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

// sink records what it receives, and in which bursts; it expects every
// packet in rollover cycle roc.
type sink struct {
	roc     uint32
	mu      sync.Mutex
	pkts    [][]byte
	indices []uint64
	bursts  []int
}

func (s *sink) Extend(seq uint16) uint64 { return uint64(s.roc)<<16 | uint64(seq) }

func (s *sink) ReceiveRTP(pkts [][]byte, indices []uint64, arrivals []time.Time) {
	if len(pkts) == 0 || len(arrivals) != len(pkts) || len(indices) != len(pkts) {
		panic(fmt.Sprintf("a burst of %d packets with %d indices and %d arrivals", len(pkts), len(indices), len(arrivals)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, pkt := range pkts {
		if arrivals[i].IsZero() {
			panic("no arrival time")
		}
		s.pkts = append(s.pkts, bytes.Clone(pkt))
		s.indices = append(s.indices, indices[i])
	}
	s.bursts = append(s.bursts, len(pkts))
}

func (s *sink) got() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pkts
}

// newMux is a Mux on loopback whose pion side is a channel of what
// ReadFromAddrPort returns.
func newMux(t *testing.T) (*Mux, netip.AddrPort, chan []byte) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMux([]*net.UDPConn{conn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, conn.LocalAddr().(*net.UDPAddr).AddrPort(), pionSide(t, m)
}

// pionSide reads m as pion's mux worker does, into a channel.
func pionSide(t *testing.T, m *Mux) chan []byte {
	t.Helper()
	toPion := make(chan []byte, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1600)
		for {
			n, _, err := m.ReadFromAddrPort(buf)
			if err != nil {
				return
			}
			toPion <- bytes.Clone(buf[:n])
		}
	}()
	t.Cleanup(func() { m.Close(); <-done })
	return toPion
}

func expectPion(t *testing.T, toPion chan []byte, want []byte, what string) {
	t.Helper()
	select {
	case got := <-toPion:
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: pion got %x…, want %x…", what, got[:min(len(got), 16)], want[:min(len(want), 16)])
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: pion got nothing", what)
	}
}

// A registered SSRC's packets are decrypted for its sink and pion never
// sees them, not even one that does not decrypt (dropped); everything
// else reaches pion byte for byte: another SSRC, RTCP, STUN and DTLS,
// another address.
func TestMuxKeepsRegisteredMediaAndPassesTheRest(t *testing.T) {
	m, at, toPion := newMux(t)
	pub, other := newPublisher(t), newPublisher(t)
	peer, err := m.NewPeer(profile, pub.key, pub.salt)
	if err != nil {
		t.Fatal(err)
	}
	peer.SetAddr(pub.addr())
	var s sink
	if err := peer.Add(1111, &s); err != nil {
		t.Fatal(err)
	}

	for seq := range uint16(5) {
		pub.sendRTP(at, 1111, 100+seq)
	}
	// A marker (so that the kept ones are read first): an unregistered SSRC.
	expectPion(t, toPion, pub.sendRTP(at, 2222, 1), "an unregistered SSRC")
	got := s.got()
	if len(got) != 5 {
		t.Fatalf("sink got %d packets, want 5", len(got))
	}
	for i, b := range got {
		if want := packet(1111, 100+uint16(i)); !bytes.Equal(b, want) {
			t.Fatalf("packet %d: decrypted to %x…, want %x…", i, b[:16], want[:16])
		}
	}

	rtcpLike := append([]byte{0x80, 200}, make([]byte, 26)...) // sender report
	stunLike := append([]byte{0x00, 0x01}, make([]byte, 18)...)
	dtlsLike := append([]byte{22, 0xfe, 0xfd}, make([]byte, 20)...)
	for _, c := range []struct {
		what string
		b    []byte
	}{{"RTCP", rtcpLike}, {"STUN", stunLike}, {"DTLS", dtlsLike}} {
		pub.send(at, c.b)
		expectPion(t, toPion, c.b, c.what)
	}
	// The registered SSRC from another address: not this peer's.
	expectPion(t, toPion, other.sendRTP(at, 1111, 7), "another address")
	// A tampered packet does not decrypt and is dropped: the next
	// datagram pion sees is the marker after it.
	bad := pubSealed(t, pub, 1111, 201)
	bad[len(bad)-1] ^= 1
	pub.send(at, bad)
	expectPion(t, toPion, pub.sendRTP(at, 2222, 2), "the marker after a tampered packet")
	if r := m.Counters.Rejected.Load(); r != 1 {
		t.Fatalf("Rejected = %d, want 1", r)
	}
	if r := m.Counters.Received.Load(); r != 5 {
		t.Fatalf("Received = %d, want 5", r)
	}
}

// Datagrams queued back to back reach their sinks as bursts, one per run
// of an SSRC from one peer, in order; what comes between (another SSRC,
// STUN) ends a burst and goes where it belongs, and a packet that does not
// decrypt is dropped without ending its burst.
func TestMuxHandsBurstsToSinks(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(1 << 20)
	at := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	m, err := newIdleMux([]*net.UDPConn{conn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t)
	peer, err := m.NewPeer(profile, pub.key, pub.salt)
	if err != nil {
		t.Fatal(err)
	}
	peer.SetAddr(pub.addr())
	var a, b sink
	if err := peer.Add(1111, &a); err != nil {
		t.Fatal(err)
	}
	if err := peer.Add(2222, &b); err != nil {
		t.Fatal(err)
	}
	stunLike := append([]byte{0x00, 0x01}, make([]byte, 18)...)
	bad := pubSealed(t, pub, 1111, 6)
	bad[len(bad)-1] ^= 1
	// Queued before the reader starts, so that one read takes them all.
	for _, seq := range []uint16{1, 2, 3} {
		pub.sendRTP(at, 1111, seq)
	}
	pub.sendRTP(at, 2222, 1)
	pub.sendRTP(at, 1111, 4)
	pub.send(at, stunLike)
	pub.sendRTP(at, 1111, 5)
	pub.send(at, bad)
	pub.sendRTP(at, 1111, 7)
	m.start()
	toPion := pionSide(t, m)
	expectPion(t, toPion, stunLike, "STUN between two bursts")
	// A marker, read after the rest: an unregistered SSRC.
	expectPion(t, toPion, pub.sendRTP(at, 3333, 1), "an unregistered SSRC")
	for _, c := range []struct {
		name   string
		s      *sink
		ssrc   uint32
		seqs   []uint16
		bursts []int
	}{
		{"SSRC 1111", &a, 1111, []uint16{1, 2, 3, 4, 5, 7}, []int{3, 1, 2}},
		{"SSRC 2222", &b, 2222, []uint16{1}, []int{1}},
	} {
		c.s.mu.Lock()
		got, bursts := c.s.pkts, c.s.bursts
		c.s.mu.Unlock()
		if len(got) != len(c.seqs) {
			t.Fatalf("%s: sink got %d packets, want %d", c.name, len(got), len(c.seqs))
		}
		for i, seq := range c.seqs {
			if !bytes.Equal(got[i], packet(c.ssrc, seq)) {
				t.Fatalf("%s: packet %d is not seq %d decrypted", c.name, i, seq)
			}
		}
		if !slices.Equal(bursts, c.bursts) {
			t.Errorf("%s: bursts of %v, want %v", c.name, bursts, c.bursts)
		}
	}
}

// pubSealed encrypts without sending.
func pubSealed(t *testing.T, p *publisher, ssrc uint32, seq uint16) []byte {
	t.Helper()
	out, err := p.ctx.EncryptRTP(nil, packet(ssrc, seq), nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Remove, a new address and Close each give the packets back to pion.
func TestMuxGivesPacketsBack(t *testing.T) {
	m, at, toPion := newMux(t)
	pub, moved := newPublisher(t), newPublisher(t)
	moved.key, moved.salt, moved.ctx = pub.key, pub.salt, nil // the same connection, another address
	peer, _ := m.NewPeer(profile, pub.key, pub.salt)
	peer.SetAddr(pub.addr())
	var s sink
	_ = peer.Add(1, &s)

	pub.sendRTP(at, 1, 1)
	expectPion(t, toPion, pub.sendRTP(at, 9, 1), "marker")
	if len(s.got()) != 1 {
		t.Fatalf("sink got %d, want 1", len(s.got()))
	}

	peer.Remove(1)
	expectPion(t, toPion, pub.sendRTP(at, 1, 2), "after Remove")

	_ = peer.Add(1, &s)
	moved.ctx = pub.ctx // continue the same SRTP stream from the new address
	peer.SetAddr(moved.addr())
	expectPion(t, toPion, pub.sendRTP(at, 1, 3), "from the old address")
	moved.sendRTP(at, 1, 4)
	expectPion(t, toPion, moved.sendRTP(at, 9, 2), "marker")
	if got := s.got(); len(got) != 2 || !bytes.Equal(got[1], packet(1, 4)) {
		t.Fatalf("sink after the move: %d packets", len(got))
	}

	peer.Close()
	expectPion(t, toPion, moved.sendRTP(at, 1, 5), "after Close")
	if err := peer.Add(1, &s); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
}

// A track continues in the rollover cycle its sink expects: pion
// decrypted 65535 and 0 (the publisher is in cycle 1), and with a sink
// that knows it, the next packet decrypts; with one that expects cycle 0
// it does not, and is dropped, not handed to pion.
func TestMuxDecryptsUnderTheSinksIndex(t *testing.T) {
	for _, tc := range []struct {
		roc  uint32
		kept bool
	}{{1, true}, {0, false}} {
		m, at, toPion := newMux(t)
		pub := newPublisher(t)
		for _, seq := range []uint16{65535, 0} {
			_ = pubSealed(t, pub, 5, seq)
		}
		peer, _ := m.NewPeer(profile, pub.key, pub.salt)
		peer.SetAddr(pub.addr())
		s := sink{roc: tc.roc}
		_ = peer.Add(5, &s)
		pub.sendRTP(at, 5, 1)
		expectPion(t, toPion, pub.sendRTP(at, 6, 1), "marker")
		got := s.got()
		if !tc.kept {
			if len(got) != 0 || m.Counters.Rejected.Load() != 1 {
				t.Fatalf("roc %d: sink got %d packets, %d rejected; want 0, 1", tc.roc, len(got), m.Counters.Rejected.Load())
			}
			continue
		}
		if len(got) != 1 || !bytes.Equal(got[0], packet(5, 1)) || s.indices[0] != 1<<16|1 {
			t.Fatalf("roc %d: sink got %d packets (indices %x)", tc.roc, len(got), s.indices)
		}
	}
}

// A publisher that replays its packets (or anyone who captured them,
// from its address) reaches the sink once: the replays are dropped, and
// pion, whose SRTP context for the stream stopped at the hand-over, never
// sees them. Nor does a packet too large to be RTP over UDP.
func TestMuxDropsReplaysAndOversize(t *testing.T) {
	m, at, toPion := newMux(t)
	pub := newPublisher(t)
	peer, _ := m.NewPeer(profile, pub.key, pub.salt)
	peer.SetAddr(pub.addr())
	var s sink
	_ = peer.Add(7, &s)
	first := pub.sendRTP(at, 7, 10)
	replayed := bytes.Clone(first)
	for range 20 {
		pub.send(at, replayed)
	}
	big := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 11, SSRC: 7}, Payload: make([]byte, MaxPacketSize)}
	plain, _ := big.Marshal()
	sealed, err := pub.ctx.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub.send(at, sealed)
	expectPion(t, toPion, pub.sendRTP(at, 8, 1), "marker")
	if got := s.got(); len(got) != 1 {
		t.Fatalf("sink got %d packets, want the first only", len(got))
	}
	if r := m.Counters.Rejected.Load(); r != 21 {
		t.Fatalf("Rejected = %d, want 21 (20 replays, 1 oversize)", r)
	}
}

// pion's writes go through the Writer (the twin socket), not the socket
// the mux reads.
func TestMuxWritesThroughWriter(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var w recordingWriter
	m, _ := NewMux([]*net.UDPConn{conn}, &w)
	defer m.Close()
	to := netip.MustParseAddrPort("127.0.0.1:9")
	if n, err := m.WriteToAddrPort([]byte("abc"), to); n != 3 || err != nil {
		t.Fatalf("WriteToAddrPort = %d, %v", n, err)
	}
	if _, err := m.WriteTo([]byte("de"), net.UDPAddrFromAddrPort(to)); err != nil {
		t.Fatal(err)
	}
	if w.n != 2 || w.to != to {
		t.Fatalf("writer saw %d writes to %s", w.n, w.to)
	}
}

type recordingWriter struct {
	n  int
	to netip.AddrPort
}

func (w *recordingWriter) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	w.n++
	w.to = to
	return len(b), nil
}

// Keeping a packet allocates nothing: reading, decrypting and handing it
// to the sink, nor does passing one to pion once the queue's buffers exist.
func TestMuxAllocatesNothing(t *testing.T) {
	racecheck.SkipAllocs(t)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(1 << 20)
	m, _ := NewMux([]*net.UDPConn{conn}, nil)
	defer m.Close()
	at := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	pub := newPublisher(t)
	peer, _ := m.NewPeer(profile, pub.key, pub.salt)
	peer.SetAddr(pub.addr())
	var n counter
	_ = peer.Add(3, &n)
	marker := packet(4, 1) // plain, unregistered: returned to the caller
	buf := make([]byte, 1600)
	plain, hdr := packet(3, 0), &rtp.Header{}
	seq := uint16(0)
	round := func() {
		for range 10 {
			seq++
			plain[2], plain[3] = byte(seq>>8), byte(seq)
			out, err := pub.ctx.EncryptRTP(pub.buf[:0], plain, hdr)
			if err != nil {
				t.Fatal(err)
			}
			pub.send(at, out)
		}
		pub.send(at, marker)
		if _, _, err := m.ReadFromAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	round()
	if a := testing.AllocsPerRun(50, round); a != 0 {
		t.Fatalf("%.1f allocations per 10 kept packets and one for pion", a)
	}
	if want := int64(10 * (1 + 1 + 50)); n.n.Load() != want { // round, AllocsPerRun's warm-up and its runs
		t.Fatalf("sink got %d packets, want %d", n.n.Load(), want)
	}
}

type counter struct{ n atomic.Int64 }

func (c *counter) Extend(seq uint16) uint64 { return uint64(seq) }

func (c *counter) ReceiveRTP(pkts [][]byte, _ []uint64, _ []time.Time) { c.n.Add(int64(len(pkts))) }

// With the port's several readers (srtpsend.Listen), a publisher's
// tracks are kept on whichever reader their SSRC reaches, concurrently,
// and control datagrams from any of them reach pion.
func TestMuxReadsEverySocketOfThePort(t *testing.T) {
	port, err := srtpsend.Listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(port.Readers) != 3 {
		t.Fatalf("%d readers: %v", len(port.Readers), port.Unshared)
	}
	defer port.Send.Close()
	m, err := NewMux(port.Readers, port.Send)
	if err != nil {
		t.Fatal(err)
	}
	toPion := pionSide(t, m)
	at := port.Readers[0].LocalAddr().(*net.UDPAddr).AddrPort()
	pub := newPublisher(t)
	peer, _ := m.NewPeer(profile, pub.key, pub.salt)
	peer.SetAddr(pub.addr())
	sinks := map[uint32]*sink{}
	for _, ssrc := range []uint32{30, 31, 32} { // one per reader (SSRC mod 3)
		sinks[ssrc] = &sink{}
		_ = peer.Add(ssrc, sinks[ssrc])
	}
	for seq := range uint16(20) {
		for ssrc := range sinks {
			pub.sendRTP(at, ssrc, seq)
		}
	}
	for _, ssrc := range []uint32{33, 34, 35} { // not kept: to pion, from each reader
		expectPion(t, toPion, pub.sendRTP(at, ssrc, 1), "an unregistered SSRC")
	}
	deadline := time.Now().Add(5 * time.Second)
	for ssrc, s := range sinks {
		for len(s.got()) < 20 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		got := s.got()
		if len(got) != 20 {
			t.Fatalf("SSRC %d: sink got %d of 20", ssrc, len(got))
		}
		for i, b := range got {
			if !bytes.Equal(b, packet(ssrc, uint16(i))) {
				t.Fatalf("SSRC %d packet %d: out of order or corrupted", ssrc, i)
			}
		}
	}
}

// Close ends every reader.
func TestMuxCloseEndsReaders(t *testing.T) {
	defer test.CheckRoutines(t)()
	port, err := srtpsend.Listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer port.Send.Close()
	m, err := NewMux(port.Readers, port.Send)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.ReadFromAddrPort(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// rtcpSink records the RTCP it receives.
type rtcpSink struct {
	mu   sync.Mutex
	pkts [][]byte
}

func (s *rtcpSink) ReceiveRTCP(pkt []byte) {
	s.mu.Lock()
	s.pkts = append(s.pkts, bytes.Clone(pkt))
	s.mu.Unlock()
}

func (s *rtcpSink) got() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pkts
}

// A peer with an RTCP sink gets its RTCP decrypted there (a subscriber's
// NACKs and PLIs, a publisher's sender reports) and pion none of it, nor
// RTCP of that peer that does not decrypt (dropped); a peer without one
// goes to pion.
func TestMuxKeepsRTCPForItsSink(t *testing.T) {
	m, at, toPion := newMux(t)
	pub, other := newPublisher(t), newPublisher(t)
	peer, _ := m.NewPeer(profile, pub.key, pub.salt)
	peer.SetAddr(pub.addr())
	var s rtcpSink
	if err := peer.SetRTCP(&s); err != nil {
		t.Fatal(err)
	}
	plain, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1}, &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	seal := func(p *publisher) []byte {
		out, err := p.ctx.EncryptRTCP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	pub.send(at, seal(pub))
	expectPion(t, toPion, pub.sendRTP(at, 9, 1), "marker")
	if got := s.got(); len(got) != 1 || !bytes.Equal(got[0], plain) {
		t.Fatalf("RTCP sink got %d packets (%x)", len(got), got)
	}
	fromOther := seal(other) // a peer without a sink
	other.send(at, fromOther)
	expectPion(t, toPion, fromOther, "RTCP of a peer without a sink")
	bad := seal(pub)
	bad[len(bad)-1] ^= 1
	pub.send(at, bad)
	replay := seal(pub)
	pub.send(at, replay)
	pub.send(at, replay)
	expectPion(t, toPion, pub.sendRTP(at, 9, 2), "the marker after RTCP that does not decrypt, and a replay")
	if got := s.got(); len(got) != 2 {
		t.Fatalf("RTCP sink got %d packets, want 2 (the replay once)", len(got))
	}
	if m.Counters.ReceivedRTCP.Load() != 2 || m.Counters.Rejected.Load() != 2 {
		t.Fatalf("ReceivedRTCP %d, Rejected %d; want 2, 2", m.Counters.ReceivedRTCP.Load(), m.Counters.Rejected.Load())
	}
}

// A burst that wraps before its sink has seen any of it (the first one
// after the hand-over, say) decrypts whole: each packet's index follows
// the burst's packets before it, which the sink has not accepted yet.
func TestMuxFollowsAWrapWithinABurst(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	at := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	m, err := newIdleMux([]*net.UDPConn{conn}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t)
	peer, _ := m.NewPeer(profile, pub.key, pub.salt)
	peer.SetAddr(pub.addr())
	var s sink // expects cycle 0 throughout: it has seen nothing
	_ = peer.Add(5, &s)
	for _, seq := range []uint16{65534, 65535, 0, 1} {
		pub.sendRTP(at, 5, seq)
	}
	m.start()
	toPion := pionSide(t, m)
	expectPion(t, toPion, pub.sendRTP(at, 6, 1), "marker")
	if got := s.got(); len(got) != 4 || !slices.Equal(s.indices, []uint64{65534, 65535, 1 << 16, 1<<16 | 1}) {
		t.Fatalf("sink got %d packets, indices %x; want 4 across the wrap", len(got), s.indices)
	}
}
