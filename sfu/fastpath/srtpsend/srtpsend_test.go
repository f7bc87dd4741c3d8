package srtpsend

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/racecheck"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

type peer struct {
	rx      *net.UDPConn
	profile srtp.ProtectionProfile
	key     []byte
	salt    []byte
}

func newPeer(t testing.TB, profile srtp.ProtectionProfile) *peer {
	t.Helper()
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	_ = rx.SetReadBuffer(4 << 20) // a long batch arrives at once
	kl, _ := profile.KeyLen()
	sl, _ := profile.SaltLen()
	p := &peer{rx: rx, profile: profile, key: make([]byte, kl), salt: make([]byte, sl)}
	_, _ = rand.Read(p.key)
	_, _ = rand.Read(p.salt)
	return p
}

func (p *peer) addr() netip.AddrPort { return p.rx.LocalAddr().(*net.UDPAddr).AddrPort() }

// stream is a subscriber track on sock, sent to p with p's keys.
func (p *peer) stream(t testing.TB, sock *Socket) *Stream {
	t.Helper()
	c, err := NewConn(sock, p.profile, p.key, p.salt)
	if err != nil {
		t.Fatal(err)
	}
	c.SetAddr(p.addr())
	return c.NewStream()
}

// receive reads n datagrams and decrypts them as the subscriber would. It
// may run on its own goroutine, so it reports with Errorf and returns what
// it has.
func (p *peer) receive(t testing.TB, n int) []*rtp.Packet {
	ctx, err := srtp.CreateContext(p.key, p.salt, p.profile)
	if err != nil {
		t.Error(err)
		return nil
	}
	var out []*rtp.Packet
	buf := make([]byte, 2048)
	for range n {
		_ = p.rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := p.rx.ReadFrom(buf)
		if err != nil {
			t.Errorf("after %d datagrams: %v", len(out), err)
			return out
		}
		plain, err := ctx.DecryptRTP(nil, buf[:k], nil)
		if err != nil {
			t.Errorf("datagram %d does not decrypt with the subscriber's keys: %v", len(out), err)
			return out
		}
		pkt := &rtp.Packet{}
		if err := pkt.Unmarshal(plain); err != nil {
			t.Error(err)
			return out
		}
		out = append(out, pkt)
	}
	return out
}

// newSocket is the SFU's: an ICE socket on loopback and its twin.
func newSocket(t testing.TB) *Socket {
	t.Helper()
	_, sock := newICESocket(t)
	return sock
}

func newICESocket(t testing.TB) (*net.UDPConn, *Socket) {
	t.Helper()
	p := newPort(t, 1)
	return p.Readers[0], p.Send
}

func newPort(t testing.TB, readers int) *Port {
	t.Helper()
	p, err := Listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, readers, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if p.Send == nil || len(p.Readers) != readers {
		t.Fatalf("Listen: %d readers, send socket %v (%v)", len(p.Readers), p.Send, p.Unshared)
	}
	return p
}

func header(ssrc uint32, seq uint16) *rtp.Header {
	h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: 90000 + uint32(seq)*3000, SSRC: ssrc, Marker: seq%3 == 0}
	_ = h.SetExtension(3, []byte{0x80 | 42})
	return h
}

func payload(seq uint16, size int) []byte {
	b := bytes.Repeat([]byte{byte(seq)}, size)
	if size > 0 {
		b[0] = 0x90
	}
	return b
}

// split is a packet as the forwarder hands it over: the marshalled header
// and the body (payload, then padding).
func split(h *rtp.Header, payload []byte) (head, body []byte) {
	raw, err := (&rtp.Packet{Header: *h, Payload: payload}).Marshal()
	if err != nil {
		panic(err)
	}
	return raw[:h.MarshalSize()], raw[h.MarshalSize():]
}

// add adds a packet under the index of its sequence number in cycle 0.
func add(b *Batch, s *Stream, h *rtp.Header, payload []byte) error {
	return addAt(b, s, h, payload, uint64(h.SequenceNumber))
}

func addAt(b *Batch, s *Stream, h *rtp.Header, payload []byte, index uint64) error {
	head, body := split(h, payload)
	return b.Add(s, head, h.SSRC, h.PayloadType, index, body)
}

func writeRTP(s *Stream, h *rtp.Header, payload []byte) error {
	head, body := split(h, payload)
	return s.WriteRTP(head, h.SSRC, h.PayloadType, uint64(h.SequenceNumber), body)
}

// A fan-out batch reaches every subscriber, each packet decrypting with
// that subscriber's keys to the header and payload the forwarder wrote,
// for both SRTP profiles browsers negotiate, and across several sendmmsg
// calls when the batch is longer than one.
func TestBatchDeliversDecryptablePackets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile srtp.ProtectionProfile
		packets int
	}{
		{"aead-aes-128-gcm", srtp.ProtectionProfileAeadAes128Gcm, 5},
		{"aes128-cm-hmac-sha1-80", srtp.ProtectionProfileAes128CmHmacSha1_80, 5},
		{"longer than one sendmmsg", srtp.ProtectionProfileAeadAes128Gcm, 2*batchSize + 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := newSocket(t)
			a, b := newPeer(t, tc.profile), newPeer(t, tc.profile)
			var streams []*Stream
			for _, p := range []*peer{a, b} {
				c, err := NewConn(sock, p.profile, p.key, p.salt)
				if err != nil {
					t.Fatal(err)
				}
				c.SetAddr(p.addr())
				s := c.NewStream()
				streams = append(streams, s)
			}
			// Subscribers read while the batch is sent: a long batch
			// outruns a socket's default receive buffer.
			received := make([]chan []*rtp.Packet, 2)
			for j, p := range []*peer{a, b} {
				received[j] = make(chan []*rtp.Packet, 1)
				go func() { received[j] <- p.receive(t, tc.packets) }()
			}
			var batch Batch
			for i := range tc.packets {
				index := uint64(65530 + i) // across the rollover
				seq := uint16(index)
				for j, s := range streams {
					if err := addAt(&batch, s, header(uint32(1000+j), seq), payload(seq, 1100), index); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := batch.Flush(); err != nil {
				t.Fatal(err)
			}
			if batch.Len() != 0 {
				t.Fatalf("%d datagrams left after Flush", batch.Len())
			}
			for j := range received {
				got := <-received[j]
				if len(got) != tc.packets {
					t.FailNow() // receive said why
				}
				for i, pkt := range got {
					seq := uint16(65530 + i)
					want := header(uint32(1000+j), seq)
					if pkt.SSRC != want.SSRC || pkt.SequenceNumber != seq || pkt.Timestamp != want.Timestamp || pkt.Marker != want.Marker {
						t.Fatalf("subscriber %d packet %d: header %+v, want %+v", j, i, pkt.Header, *want)
					}
					if ext := pkt.GetExtension(3); !bytes.Equal(ext, []byte{0x80 | 42}) {
						t.Fatalf("subscriber %d packet %d: extension %x", j, i, ext)
					}
					if !bytes.Equal(pkt.Payload, payload(seq, 1100)) {
						t.Fatalf("subscriber %d packet %d: payload differs", j, i)
					}
				}
			}
			if got, want := sock.Datagrams.Load(), uint64(2*tc.packets); got != want {
				t.Fatalf("Datagrams = %d, want %d", got, want)
			}
			if calls := sock.Calls.Load(); calls >= sock.Datagrams.Load() {
				t.Fatalf("%d sendmmsg calls for %d datagrams: not batched", calls, sock.Datagrams.Load())
			}
		})
	}
}

// A padded packet (browsers pad to probe bandwidth, often with no payload
// at all) reaches the subscriber with its padding, for both profiles:
// the padding flag without the padding octets made the subscriber read
// the payload's last octet as a padding count.
func TestBatchKeepsPadding(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		t.Run(profile.String(), func(t *testing.T) {
			sock := newSocket(t)
			p := newPeer(t, profile)
			s := p.stream(t, sock)
			sizes := []struct {
				payload int
				pad     byte
			}{{300, 4}, {0, 255}, {1100, 1}}
			var batch Batch
			for i, sz := range sizes {
				h := header(3, uint16(i))
				h.Padding, h.PaddingSize = true, sz.pad
				if err := add(&batch, s, h, payload(uint16(i), sz.payload)); err != nil {
					t.Fatal(err)
				}
			}
			if err := batch.Flush(); err != nil {
				t.Fatal(err)
			}
			got := p.receive(t, len(sizes))
			if len(got) != len(sizes) {
				t.FailNow()
			}
			for i, sz := range sizes {
				if !got[i].Padding || got[i].PaddingSize != sz.pad || !bytes.Equal(got[i].Payload, payload(uint16(i), sz.payload)) {
					t.Fatalf("packet %d: padding %v/%d, %d payload bytes; want padding %d, %d bytes",
						i, got[i].Padding, got[i].PaddingSize, len(got[i].Payload), sz.pad, sz.payload)
				}
			}
		})
	}
}

// A retransmission leaves at once, in the same SRTP stream as the batch.
func TestWriteRTPSendsAlone(t *testing.T) {
	sock := newSocket(t)
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	s := p.stream(t, sock)
	var batch Batch
	for _, seq := range []uint16{10, 12} {
		if err := add(&batch, s, header(7, seq), payload(seq, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := writeRTP(s, header(7, 11), payload(11, 300)); err != nil {
		t.Fatal(err)
	}
	got := p.receive(t, 3)
	if len(got) != 3 {
		t.FailNow()
	}
	for i, want := range []uint16{10, 12, 11} {
		if got[i].SequenceNumber != want || !bytes.Equal(got[i].Payload, payload(want, 300)) {
			t.Fatalf("datagram %d: seq %d, want %d", i, got[i].SequenceNumber, want)
		}
	}
}

// Packets are sealed under the index they are given, also on a reused
// SSRC (pion reuses a transceiver's SSRC when the SFU renegotiates) with
// another Stream: a new track's packets in the next rollover cycle decrypt
// for the subscriber, whose context lives on and followed the wrap.
func TestSealsUnderTheGivenIndex(t *testing.T) {
	sock := newSocket(t)
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	c, _ := NewConn(sock, p.profile, p.key, p.salt)
	c.SetAddr(p.addr())
	received := make(chan []*rtp.Packet, 1)
	go func() { received <- p.receive(t, 4) }() // one subscriber context throughout
	var batch Batch
	old, next := c.NewStream(), c.NewStream()
	for _, seq := range []uint16{65533, 65534} {
		if err := add(&batch, old, header(9, seq), payload(seq, 100)); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []uint16{100, 101} {
		if err := addAt(&batch, next, header(9, seq), payload(seq, 100), 1<<16|uint64(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	got := <-received
	if len(got) != 4 {
		t.FailNow() // receive said why
	}
	for i, want := range []uint16{65533, 65534, 100, 101} {
		if got[i].SequenceNumber != want {
			t.Fatalf("packet %d: seq %d, want %d", i, got[i].SequenceNumber, want)
		}
	}
}

func TestRefusals(t *testing.T) {
	sock := newSocket(t)
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	if _, err := NewConn(sock, p.profile, p.key[:3], p.salt); err == nil {
		t.Fatal("NewConn accepted a 3-byte key")
	}
	c, _ := NewConn(sock, p.profile, p.key, p.salt)
	s := c.NewStream()
	var batch Batch
	if err := add(&batch, s, header(1, 1), payload(1, 10)); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Add without an address: %v, want ErrNoAddress", err)
	}
	if err := writeRTP(s, header(1, 1), payload(1, 10)); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("WriteRTP without an address: %v, want ErrNoAddress", err)
	}
	c.SetAddr(p.addr())
	if err := add(&batch, s, header(1, 1), payload(1, 1500)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Add of a 1500-byte payload: %v, want ErrTooLarge", err)
	}
	c.SetAddr(netip.AddrPort{})
	if err := add(&batch, s, header(1, 2), payload(2, 10)); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Add after the address was cleared: %v, want ErrNoAddress", err)
	}
	if batch.Len() != 0 {
		t.Fatalf("refused packets queued: %d", batch.Len())
	}
}

// The per-packet path allocates nothing once the batch exists.
func TestBatchAllocatesNothing(t *testing.T) {
	racecheck.SkipAllocs(t)
	sock := newSocket(t)
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	go func() { // drain
		buf := make([]byte, 2048)
		for {
			if _, _, err := p.rx.ReadFromUDPAddrPort(buf); err != nil { // no allocation: AllocsPerRun counts every goroutine
				return
			}
		}
	}()
	c, _ := NewConn(sock, p.profile, p.key, p.salt)
	c.SetAddr(p.addr())
	s := c.NewStream()
	var batch Batch
	head, body := split(header(5, 1), payload(1, 1000))
	index := uint64(1)
	round := func() {
		for range 10 {
			index++
			if err := batch.Add(s, head, 5, 96, index, body); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	round()
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("%.1f allocations per 10-packet batch, want 0", n)
	}
}

// BenchmarkBatch is the direct path's cost per datagram: marshal, SRTP
// encryption and a share of one sendmmsg, for a fan-out of 100 (compare
// with a plain WriteToUDP in docs/benchmarks.md).
func BenchmarkBatch(b *testing.B) {
	sock := newSocket(b)
	var streams []*Stream
	for range 100 {
		p := newPeer(b, srtp.ProtectionProfileAeadAes128Gcm)
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := p.rx.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
		c, _ := NewConn(sock, p.profile, p.key, p.salt)
		c.SetAddr(p.addr())
		s := c.NewStream()
		streams = append(streams, s)
	}
	var batch Batch
	head, body := split(header(5, 1), payload(1, 1000))
	index := uint64(1)
	round := func() {
		index++
		for i, s := range streams {
			_ = batch.Add(s, head, uint32(i), 96, index, body)
		}
		_ = batch.Flush()
	}
	round() // the batch and each connection's SRTP context are made once
	b.ReportAllocs()
	for b.Loop() {
		round()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(streams)), "ns/datagram")
}

// BenchmarkSeal is the SRTP cost alone: copy in the header and
// AES-GCM-encrypt one 830-byte packet (the mean forwarded size in
// docs/benchmarks.md) into a batch slot, as every subscriber's copy must
// be. It is the part of the forwarding cost no SFU can skip.
func BenchmarkSeal(b *testing.B) {
	sock := newSocket(b)
	p := newPeer(b, srtp.ProtectionProfileAeadAes128Gcm)
	c, _ := NewConn(sock, p.profile, p.key, p.salt)
	s := c.NewStream()
	head, body := split(header(5, 1), payload(1, 830-16))
	buf := make([]byte, slotSize)
	index := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		index++
		if _, err := s.seal(buf, head, 5, 96, index, body); err != nil {
			b.Fatal(err)
		}
	}
}
