package fastpath

import (
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath/srtprecv"
	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/rtpindex"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// These tests hold the SFU to SRTP's invariants from the outside: a
// publisher that may replay, reorder, forge (it knows its own keys), wrap,
// send oversized or tampered packets, while its media moves between the
// fast receive path and pion's; subscribers that receive through pion's
// writer, the direct path, or pion first and then the direct path under
// the same keys, whose tracks are replaced on their SSRCs, and who NACK
// anything. What each subscriber receives is decrypted under every
// plausible rollover counter: no packet index may ever carry two different
// packets (for AES-GCM that gives away the authentication key).

const (
	pubSSRC = 0x5eed
	// marker is an SSRC nobody keeps: sent after each step, it reaches
	// pion's side once the mux has handled everything before it.
	marker = 0x3a3a
)

var vp8 = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	PayloadType:        96,
}

func keys(t testing.TB, p srtp.ProtectionProfile) (key, salt []byte) {
	kl, _ := p.KeyLen()
	sl, _ := p.SaltLen()
	key, salt = make([]byte, kl), make([]byte, sl)
	_, _ = crand.Read(key)
	_, _ = crand.Read(salt)
	return key, salt
}

// received is what a subscriber receives: every datagram, in order.
type received struct {
	mu    sync.Mutex
	grams [][]byte
}

func (r *received) add(b []byte) {
	r.mu.Lock()
	r.grams = append(r.grams, bytes.Clone(b))
	r.mu.Unlock()
}

// pionWriter stands for pion's SRTP write path to one subscriber: it
// seals each packet with its own context, guessing the rollover counter
// from the sequence number as pion/srtp does, one packet at a time as
// pion's session does (a Context is not safe for concurrent use, and
// the forwarder and NACK answers write at once).
type pionWriter struct {
	mu  sync.Mutex
	ctx *srtp.Context
	out *received
}

func (w *pionWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	plain, err := (&rtp.Packet{Header: *h, Payload: payload}).Marshal()
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	sealed, err := w.ctx.EncryptRTP(nil, plain, nil)
	w.mu.Unlock()
	if err != nil {
		return 0, err
	}
	w.out.add(sealed)
	return len(sealed), nil
}

func (w *pionWriter) Write(b []byte) (int, error) { return len(b), nil }

type bindContext struct {
	ssrc uint32
	w    webrtc.TrackLocalWriter
}

func (c *bindContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{vp8}
}
func (c *bindContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c *bindContext) SSRC() webrtc.SSRC                                      { return webrtc.SSRC(c.ssrc) }
func (c *bindContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c *bindContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c *bindContext) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c *bindContext) ID() string                                             { return "ctx" }
func (c *bindContext) RTCPReader() interceptor.RTCPReader                     { return nil }

// subscriber is one subscriber connection: its keys, its book of indices
// (through its first DownTrack's), the track now bound on its SSRC, and
// what it received, through pion's writer and on its socket.
type subscriber struct {
	name      string
	profile   srtp.ProtectionProfile
	key, salt []byte
	ssrc      uint32
	got       received
	rx        *net.UDPConn
	conn      *srtpsend.Conn // nil: pion writes
	pion      *pionWriter
	book      *rtpindex.Book
	down      *forward.DownTrack
	direct    bool
}

// harness is an SFU's media path from one publisher to three subscribers.
type harness struct {
	t       testing.TB
	port    *Port
	at      netip.AddrPort
	pubConn *net.UDPConn
	profile srtp.ProtectionProfile
	pubKey  []byte
	pubSalt []byte
	seal    *srtp.Context // the publisher's
	peer    *srtprecv.Peer
	fwd     *forward.Forwarder
	pionIn  *srtp.Context // pion's receive context for the publisher
	markers chan struct{}
	subs    []*subscriber
	sent    [][]byte // the publisher's datagrams, for replays
	index   uint64   // the publisher's next packet index
	onFast  bool
}

func newHarness(t testing.TB, profile srtp.ProtectionProfile) *harness {
	t.Helper()
	port, err := Listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 1, 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if port.send == nil {
		t.Skip("no send twin: the port cannot be shared on this kernel")
	}
	pubConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, port: port, at: port.udp.LocalAddr().(*net.UDPAddr).AddrPort(), pubConn: pubConn, profile: profile,
		markers: make(chan struct{}, 1), index: uint64(mrand(t).Uint32N(1 << 16))}
	h.pubKey, h.pubSalt = keys(t, profile)
	if h.seal, err = srtp.CreateContext(h.pubKey, h.pubSalt, profile); err != nil {
		t.Fatal(err)
	}
	// pion's own receive context, with its replay window, as pion's
	// SRTP session has it.
	if h.pionIn, err = srtp.CreateContext(h.pubKey, h.pubSalt, profile, srtp.SRTPReplayProtection(64)); err != nil {
		t.Fatal(err)
	}
	h.fwd = forward.New(forward.Config{Codec: vp8, KeyframeInterval: time.Hour})
	if h.peer, err = port.mux.NewPeer(profile, h.pubKey, h.pubSalt); err != nil {
		t.Fatal(err)
	}
	h.peer.SetAddr(pubConn.LocalAddr().(*net.UDPAddr).AddrPort())
	h.onFast = true
	if err := h.peer.Add(pubSSRC, h.fwd); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go h.pionSide(done)
	t.Cleanup(func() {
		_ = port.mux.Close()
		<-done
		_ = port.Close()
		pubConn.Close()
		for _, s := range h.subs {
			s.rx.Close()
		}
	})
	for i, name := range []string{"pion", "direct", "pion then direct"} {
		h.subs = append(h.subs, h.newSubscriber(name, uint32(100+i), i == 1))
	}
	return h
}

func mrand(t testing.TB) *rand.Rand {
	var seed [16]byte
	_, _ = crand.Read(seed[:])
	t.Logf("seed %x", seed)
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
}

// pionSide reads what the mux gives pion, as pion's receive path does:
// decrypt with pion's context, forward through Forward.
func (h *harness) pionSide(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 9000)
	var hdr rtp.Header
	for {
		n, _, err := h.port.mux.ReadFromAddrPort(buf)
		if err != nil {
			return
		}
		b := buf[:n]
		if n >= 12 && binary.BigEndian.Uint32(b[8:12]) == marker {
			h.markers <- struct{}{}
			continue
		}
		if n < 12 || b[1] >= 192 && b[1] <= 223 {
			continue // RTCP, STUN: not this test's
		}
		if plain, err := h.pionIn.DecryptRTP(nil, b, &hdr); err == nil {
			h.fwd.Forward(plain)
		}
	}
}

func (h *harness) newSubscriber(name string, ssrc uint32, direct bool) *subscriber {
	t := h.t
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = rx.SetReadBuffer(4 << 20)
	s := &subscriber{name: name, profile: h.profile, ssrc: ssrc, rx: rx, book: rtpindex.NewBook()}
	s.key, s.salt = keys(t, h.profile)
	// One SRTP context per connection for pion's writes, kept for its
	// life, as pion's session is.
	ctx, err := srtp.CreateContext(s.key, s.salt, h.profile)
	if err != nil {
		t.Fatal(err)
	}
	s.pion = &pionWriter{ctx: ctx, out: &s.got}
	if s.conn, err = srtpsend.NewConn(h.port.send, h.profile, s.key, s.salt); err != nil {
		t.Fatal(err)
	}
	s.conn.SetAddr(rx.LocalAddr().(*net.UDPAddr).AddrPort())
	h.bind(s)
	if direct {
		h.toDirect(s)
	}
	return s
}

// bind binds a new DownTrack on s's SSRC (after the first, a reused
// transceiver), with the connection's book of indices.
func (h *harness) bind(s *subscriber) {
	if s.down != nil {
		_ = s.down.Unbind(nil)
	}
	d := h.fwd.NewDownTrack("v", "p", s.book)
	if _, err := d.Bind(&bindContext{ssrc: s.ssrc, w: s.pion}); err != nil {
		h.t.Fatal(err)
	}
	if s.direct {
		d.SetDirect(s.conn.NewStream())
	}
	s.down = d
}

func (h *harness) toDirect(s *subscriber) {
	s.direct = true
	s.down.SetDirect(s.conn.NewStream())
}

// send seals a packet at the publisher's index i with payload variant v
// and size, sends it, and keeps it for replays.
func (h *harness) send(i uint64, v byte, size int) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000, SSRC: pubSSRC},
		Payload: bytes.Repeat([]byte{v}, size)}
	plain, err := p.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	// The publisher seals under exactly index i, whatever came before:
	// forging needs nothing else.
	h.seal.SetROC(pubSSRC, uint32(i>>16))
	sealed, err := h.seal.EncryptRTP(nil, plain, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.datagram(sealed)
}

func (h *harness) datagram(b []byte) {
	if _, err := h.pubConn.WriteToUDPAddrPort(b, h.at); err != nil {
		h.t.Fatal(err)
	}
	h.sent = append(h.sent, b)
}

// settle waits until the mux and pion's side handled everything sent.
func (h *harness) settle() {
	m := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: marker}, Payload: []byte{0}}
	b, _ := m.Marshal()
	if _, err := h.pubConn.WriteToUDPAddrPort(b, h.at); err != nil {
		h.t.Fatal(err)
	}
	select {
	case <-h.markers:
	case <-time.After(5 * time.Second):
		h.t.Fatal("the mux handled nothing for 5 s")
	}
}

// step performs one action chosen by op and arg.
func (h *harness) step(op, arg byte) {
	switch op % 12 {
	case 0, 1, 2, 3: // the next packet, sometimes after a gap
		h.index += 1 + uint64(arg%4)/3*uint64(arg)
		h.send(h.index, arg, 200+int(arg))
	case 4: // a packet from before (reordered), new or not
		h.send(h.index-uint64(arg%40), arg^0x55, 100)
	case 5: // a replay, byte for byte
		if len(h.sent) > 0 {
			h.datagram(bytes.Clone(h.sent[len(h.sent)-1-int(arg)%len(h.sent)]))
		}
	case 6: // a forged packet: an index already used, other content
		h.send(h.index-uint64(arg%3), arg^0xaa, 150)
	case 7: // oversized, or tampered
		if arg%2 == 0 {
			h.index++
			h.send(h.index, arg, 1500)
		} else if len(h.sent) > 0 {
			b := bytes.Clone(h.sent[len(h.sent)-1])
			b[len(b)-1] ^= 1
			h.datagram(b)
		}
	case 8: // the media moves between the fast path and pion
		h.settle()
		h.onFast = !h.onFast
		if h.onFast {
			h.peer.SetAddr(h.pubConn.LocalAddr().(*net.UDPAddr).AddrPort())
		} else {
			h.peer.SetAddr(netip.AddrPort{})
		}
	case 9: // a jump: almost half a sequence-number cycle, or a wrap ahead
		h.index += 16000 + uint64(arg)*64
		h.send(h.index, arg, 80)
	case 10: // a subscriber's track replaced on its SSRC; the third moves to the direct path
		h.settle()
		s := h.subs[int(arg)%len(h.subs)]
		if s.name == "pion then direct" && !s.direct && arg%2 == 0 {
			h.toDirect(s)
		} else {
			h.bind(s)
		}
	case 11: // a NACK for sequence numbers around the newest
		h.settle()
		s := h.subs[int(arg)%len(h.subs)]
		ssrc, _ := s.down.SSRC()
		first := uint16(h.index) - uint16(arg%64)
		s.down.Resend(&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: first, LostPackets: 0xffff}}}, nil)
	}
}

// check decrypts everything each subscriber received under every rollover
// counter it could be in: no packet index may carry two different packets.
func (h *harness) check() {
	h.settle()
	for _, s := range h.subs {
		buf := make([]byte, 2048)
		for {
			_ = s.rx.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, _, err := s.rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			s.got.add(buf[:n])
		}
		h.checkSubscriber(s)
	}
}

func (h *harness) checkSubscriber(s *subscriber) {
	t := h.t
	open, err := srtp.CreateContext(s.key, s.salt, s.profile) // no replay check: every copy is looked at
	if err != nil {
		t.Fatal(err)
	}
	maxROC := uint32(h.index>>16) + 1
	sealed := map[uint64][32]byte{}
	var hdr rtp.Header
	s.got.mu.Lock()
	defer s.got.mu.Unlock()
	for i, g := range s.got.grams {
		ssrc := binary.BigEndian.Uint32(g[8:12])
		seq := binary.BigEndian.Uint16(g[2:4])
		opened := 0
		for roc := range maxROC + 1 {
			open.SetROC(ssrc, roc)
			plain, err := open.DecryptRTP(nil, g, &hdr)
			if err != nil {
				continue
			}
			opened++
			index := uint64(ssrc)<<48 | uint64(roc)<<16 | uint64(seq)
			sum := sha256.Sum256(plain)
			if prev, ok := sealed[index]; ok && prev != sum {
				t.Fatalf("%s: datagram %d: SSRC %d rollover %d sequence %d sealed twice with different packets",
					s.name, i, ssrc, roc, seq)
			}
			sealed[index] = sum
		}
		if opened == 0 {
			t.Fatalf("%s: datagram %d (SSRC %d seq %d) decrypts under no rollover counter up to %d", s.name, i, ssrc, seq, maxROC)
		}
	}
	if len(s.got.grams) == 0 {
		t.Fatalf("%s received nothing", s.name)
	}
}

// run plays ops and checks what the subscribers got.
func (h *harness) run(ops []byte) {
	h.send(h.index, 1, 100) // every run forwards something
	for i := 0; i+1 < len(ops); i += 2 {
		h.step(ops[i], ops[i+1])
	}
	h.check()
}

// TestNoIndexSealedTwice plays random publishers and subscribers, for
// both SRTP profiles browsers negotiate.
func TestNoIndexSealedTwice(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		for round := range 6 {
			t.Run(fmt.Sprintf("%s/%d", profile, round), func(t *testing.T) {
				r := mrand(t)
				ops := make([]byte, 600)
				for i := range ops {
					ops[i] = byte(r.Uint32())
				}
				newHarness(t, profile).run(ops)
			})
		}
	}
}

// The two ways in that the security review reproduced, as they were.
//
// A publisher forges a second packet under an index already forwarded:
// the fast path rejects it as a replay, and pion (whose context stopped at
// the hand-over) must not get it.
func TestForgedReplayIsNotSealedAgain(t *testing.T) {
	h := newHarness(t, srtp.ProtectionProfileAeadAes128Gcm)
	for range 5 {
		h.index++
		h.send(h.index, 1, 300)
	}
	h.send(h.index-2, 2, 300) // same index, other payload
	for range 200 {
		h.datagram(bytes.Clone(h.sent[1])) // and plain replays
	}
	h.check()
	for _, s := range h.subs {
		if len(s.got.grams) != 5 {
			t.Fatalf("%s got %d datagrams, want 5", s.name, len(s.got.grams))
		}
	}
}

// An oversized datagram advanced the receive side's index but not the
// send side's, so that a later packet reused an index.
func TestOversizeDoesNotShiftIndices(t *testing.T) {
	h := newHarness(t, srtp.ProtectionProfileAeadAes128Gcm)
	h.index = 65530
	for range 4 {
		h.index++
		h.send(h.index, 1, 300)
	}
	h.index++
	h.send(h.index, 9, 1500)
	for range 6 {
		h.index++
		h.send(h.index, 3, 300)
	}
	h.check()
	for _, s := range h.subs {
		if len(s.got.grams) != 10 {
			t.Fatalf("%s got %d datagrams, want 10 (the oversized one dropped)", s.name, len(s.got.grams))
		}
	}
}

// FuzzNoIndexSealedTwice is TestNoIndexSealedTwice driven by the fuzzer.
func FuzzNoIndexSealedTwice(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 5, 0, 6, 0, 8, 0, 0, 1, 4, 3, 8, 0, 0, 2, 11, 1})
	f.Add([]byte{9, 255, 0, 0, 9, 255, 0, 0, 9, 200, 4, 30, 10, 2, 0, 0, 11, 2, 10, 1, 0, 0, 7, 0})
	f.Add([]byte{8, 0, 0, 0, 0, 0, 4, 5, 5, 1, 8, 0, 0, 0, 6, 1, 10, 0, 0, 3, 11, 0, 7, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		newHarness(t, srtp.ProtectionProfileAeadAes128Gcm).run(ops)
	})
}
