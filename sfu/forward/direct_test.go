package forward

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jbcalling/platform/internal/racecheck"
	"github.com/jbcalling/platform/sfu/bwe"
	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"golang.org/x/sys/unix"
)

// directPeer is a subscriber reached on the direct path: a loopback UDP
// socket and the SRTP keys it decrypts with.
type directPeer struct {
	rx   *net.UDPConn
	conn *srtpsend.Conn
	dec  *srtp.Context
}

var testKey, testSalt = bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{9}, 12)

func newDirectPeer(t testing.TB, sock *srtpsend.Socket) *directPeer {
	t.Helper()
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	_ = rx.SetReadBuffer(4 << 20)
	conn, err := srtpsend.NewConn(sock, srtp.ProtectionProfileAeadAes128Gcm, testKey, testSalt)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetAddr(rx.LocalAddr().(*net.UDPAddr).AddrPort())
	dec, err := srtp.CreateContext(testKey, testSalt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	return &directPeer{rx: rx, conn: conn, dec: dec}
}

func (p *directPeer) read(t *testing.T) *rtp.Packet {
	t.Helper()
	buf := make([]byte, 2048)
	_ = p.rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := p.rx.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := p.dec.DecryptRTP(nil, buf[:n], nil)
	if err != nil {
		t.Fatalf("not decryptable with the subscriber's keys: %v", err)
	}
	pkt := &rtp.Packet{}
	if err := pkt.Unmarshal(plain); err != nil {
		t.Fatal(err)
	}
	return pkt
}

// newTestSocket is the SFU's: sends leave from the ICE socket's twin.
// drain reads what reaches the peer, without allocating (AllocsPerRun
// counts every goroutine), until its socket closes.
func (p *directPeer) drain() {
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := p.rx.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
}

func newTestSocket(t testing.TB) *srtpsend.Socket {
	t.Helper()
	port, err := srtpsend.Listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	if port.Send == nil {
		t.Fatalf("no send socket: %v", port.Unshared)
	}
	return port.Send
}

func bindRecorder(t testing.TB, f *Forwarder, ssrc webrtc.SSRC) (*DownTrack, *recorder) {
	t.Helper()
	r := &recorder{keep: true}
	c := &fakeContext{
		codecs: []webrtc.RTPCodecParameters{vp8},
		exts:   []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: 5}},
		ssrc:   ssrc, w: r,
	}
	d := f.NewDownTrack("v", "p", nil)
	if _, err := d.Bind(c); err != nil {
		t.Fatal(err)
	}
	return d, r
}

// A subscriber with a direct path gets every packet from the SFU's socket,
// SRTP-encrypted with its keys and rewritten for it (SSRC, extension ID),
// not through pion; one without keeps pion's path. A direct subscriber
// whose address is gone loses packets rather than have pion seal them:
// pion's context would reuse indices the direct path sealed.
func TestDirectPathDeliversAndNeverFallsBack(t *testing.T) {
	f := newForwarder(func() {})
	sock := newTestSocket(t)
	peer := newDirectPeer(t, sock)
	direct, directPion := bindRecorder(t, f, 11)
	s := peer.conn.NewStream()
	direct.SetDirect(s)
	_, plain := bindRecorder(t, f, 22)

	for seq := range uint16(5) {
		f.Forward(sourcePacket(t, seq, []byte{0x90, byte(seq)}))
	}
	for seq := range uint16(5) {
		p := peer.read(t)
		if p.SequenceNumber != seq || p.SSRC != 11 || !bytes.Equal(p.Payload, []byte{0x90, byte(seq)}) {
			t.Fatalf("direct packet %d: seq %d ssrc %d payload %x", seq, p.SequenceNumber, p.SSRC, p.Payload)
		}
		if ext := p.GetExtension(5); !bytes.Equal(ext, []byte{0x1f}) {
			t.Fatalf("direct packet %d: audio level at the subscriber's ID 5 = %x", seq, ext)
		}
		if p.GetExtension(4) != nil || p.GetExtension(3) != nil {
			t.Fatalf("direct packet %d kept the publisher's extension IDs", seq)
		}
	}
	if len(plain.got) != 5 || plain.got[4].SSRC != 22 {
		t.Fatalf("pion subscriber got %d packets", len(plain.got))
	}

	peer.conn.SetAddr(netip.AddrPort{})
	f.Forward(sourcePacket(t, 5, []byte{0x90, 5}))
	if len(directPion.got) != 0 {
		t.Fatalf("%d packets of the direct subscriber went through pion", len(directPion.got))
	}
	c := f.cfg.Counters
	if c.PacketsOut.Load() != 11 || c.Unsent.Load() != 1 {
		t.Fatalf("PacketsOut = %d, Unsent = %d; want 11, 1", c.PacketsOut.Load(), c.Unsent.Load())
	}
}

// A NACK is answered from the track's one shared history, rewritten for
// the subscriber that asked, on whichever path it uses; packets older
// than the history are skipped.
func TestResendAnswersNACKsFromHistory(t *testing.T) {
	f := newForwarder(func() {})
	sock := newTestSocket(t)
	peer := newDirectPeer(t, sock)
	direct, _ := bindRecorder(t, f, 11)
	s := peer.conn.NewStream()
	direct.SetDirect(s)
	viaPion, rec := bindRecorder(t, f, 22)

	const total = historySize + 100
	for seq := range uint16(total) {
		f.Forward(sourcePacket(t, seq, []byte{0x90, byte(seq), byte(seq >> 8)}))
	}
	for range total {
		peer.read(t)
	}
	rec.got = nil
	nack := &rtcp.TransportLayerNack{Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{total - 3, total - 1, 5})}

	if n := viaPion.Resend(nack, nil); n != 2 {
		t.Fatalf("Resend via pion sent %d, want 2 (seq 5 is older than the history)", n)
	}
	for i, want := range []uint16{total - 3, total - 1} {
		p := rec.got[i]
		if p.SequenceNumber != want || p.SSRC != 22 || !bytes.Equal(p.Payload, []byte{0x90, byte(want), byte(want >> 8)}) {
			t.Fatalf("retransmission %d: seq %d ssrc %d payload %x", i, p.SequenceNumber, p.SSRC, p.Payload)
		}
	}
	if n := direct.Resend(nack, nil); n != 2 {
		t.Fatalf("Resend on the direct path sent %d, want 2", n)
	}
	for _, want := range []uint16{total - 3, total - 1} {
		p := peer.read(t)
		if p.SequenceNumber != want || p.SSRC != 11 {
			t.Fatalf("direct retransmission: seq %d ssrc %d, want seq %d ssrc 11", p.SequenceNumber, p.SSRC, want)
		}
	}
	if got := f.cfg.Counters.Retransmissions.Load(); got != 4 {
		t.Fatalf("Retransmissions = %d, want 4", got)
	}
}

// A sender report maps the SFU's clock now to the track's RTP clock from
// the newest packet's timestamp and arrival, with what this subscriber was
// sent; before the first packet there is none.
func TestSenderReport(t *testing.T) {
	f := newForwarder(func() {})
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	f.now = func() time.Time { return t0 }
	d, _ := bindRecorder(t, f, 33)
	if _, ok := d.SenderReport(t0); ok {
		t.Fatal("a sender report before any packet")
	}
	f.Forward(sourcePacket(t, 1, []byte{0x90, 1, 2, 3})) // timestamp 9000
	f.Forward(sourcePacket(t, 2, []byte{0x90, 1}))       // timestamp 18000
	sr, ok := d.SenderReport(t0.Add(100 * time.Millisecond))
	if !ok {
		t.Fatal("no sender report after two packets")
	}
	want := rtcp.SenderReport{
		SSRC:        33,
		RTPTime:     18000 + 9000, // + 100 ms at 90 kHz
		PacketCount: 2,
		OctetCount:  6,
	}
	if sr.SSRC != want.SSRC || sr.RTPTime != want.RTPTime || sr.PacketCount != want.PacketCount || sr.OctetCount != want.OctetCount {
		t.Fatalf("sender report %+v, want %+v", sr, want)
	}
	if secs, frac := sr.NTPTime>>32, sr.NTPTime&0xffffffff; secs != uint64(t0.Unix()+2208988800) || frac < 0x19999999 || frac > 0x1999999a {
		t.Fatalf("NTP time %x: want %d seconds since 1900 and 0.1 s", sr.NTPTime, t0.Unix()+2208988800)
	}
}

// The direct path allocates nothing per forwarded packet either.
func TestDirectForwardAllocatesNothing(t *testing.T) {
	racecheck.SkipAllocs(t)
	f := newForwarder(nil)
	sock := newTestSocket(t)
	peer := newDirectPeer(t, sock)
	peer.drain()
	cc := bwe.NewSender() // numbering each copy allocates nothing either
	peer.conn.SetStamper(cc)
	for i := range 20 {
		d, _ := bindNumbered(t, f, webrtc.SSRC(i+1), cc)
		s := peer.conn.NewStream()
		d.SetDirect(s)
	}
	raw := sourcePacket(t, 1, bytes.Repeat([]byte{0xab}, 1200))
	f.Forward(raw)
	if n := testing.AllocsPerRun(100, func() { bump(raw, 1); f.Forward(raw) }); n != 0 {
		t.Fatalf("Forward to 20 direct subscribers allocated %.1f times per packet, want 0", n)
	}
	burst, arrivals := make([][]byte, 5), make([]time.Time, 5)
	for i := range burst {
		burst[i], arrivals[i] = sourcePacket(t, uint16(1000+i), bytes.Repeat([]byte{0xab}, 1200)), time.Now()
	}
	indices := make([]uint64, len(burst))
	receive := func() {
		for i, raw := range burst {
			bump(raw, uint16(len(burst)))
			indices[i] = f.Extend(binary.BigEndian.Uint16(raw[2:4]))
		}
		f.ReceiveRTP(burst, indices, arrivals)
	}
	receive()
	if n := testing.AllocsPerRun(100, receive); n != 0 {
		t.Fatalf("a burst of 5 to 20 direct subscribers allocated %.1f times, want 0", n)
	}
}

// A burst's copies leave subscriber by subscriber: each direct subscriber
// gets all of it, whole and in order (as one segmented send where the
// kernel has them), and so does a subscriber on pion's path; a burst
// longer than the forwarder takes at once is written in parts.
func TestDirectBurstPerSubscriber(t *testing.T) {
	f := newForwarder(nil)
	sock := newTestSocket(t)
	var peers []*directPeer
	for i := range 3 {
		p := newDirectPeer(t, sock)
		d, _ := bindRecorder(t, f, webrtc.SSRC(11+i))
		d.SetDirect(p.conn.NewStream())
		peers = append(peers, p)
	}
	_, plain := bindRecorder(t, f, 22)
	for _, n := range []int{5, burstSize + 3} {
		var burst [][]byte
		var arrivals []time.Time
		var sizes []int
		first := uint16(len(plain.got))
		for i := range n {
			size := 1200
			if i == n-1 {
				size = 300 // a frame's last packet
			}
			burst = append(burst, sourcePacket(t, first+uint16(i), bytes.Repeat([]byte{byte(i)}, size)))
			arrivals, sizes = append(arrivals, time.Now()), append(sizes, size)
		}
		before := sock.Segmented.Load()
		f.ReceiveRTP(burst, indicesFor(f, burst), arrivals)
		for pi, p := range peers {
			for i := range n {
				pkt := p.read(t)
				if pkt.SequenceNumber != first+uint16(i) || pkt.SSRC != uint32(11+pi) || len(pkt.Payload) != sizes[i] || pkt.Payload[0] != byte(i) {
					t.Fatalf("burst of %d, subscriber %d, packet %d: seq %d ssrc %d, %d bytes", n, pi, i, pkt.SequenceNumber, pkt.SSRC, len(pkt.Payload))
				}
			}
		}
		if got := len(plain.got) - int(first); got != n {
			t.Fatalf("pion's subscriber got %d of the burst's %d", got, n)
		}
		for i, p := range plain.got[first:] {
			if p.SequenceNumber != first+uint16(i) {
				t.Fatalf("pion's subscriber: packet %d has seq %d", i, p.SequenceNumber)
			}
		}
		switch got := sock.Segmented.Load() - before; {
		case !sock.Segmenting():
			t.Logf("not checked that the copies left in segmented sends: the kernel has no UDP_SEGMENT")
		case got != uint64(n*len(peers)):
			t.Fatalf("%d of the %d direct copies left in segmented sends, want all", got, n*len(peers))
		}
	}
}

// Subscribers that negotiated different payload types and extension IDs
// (one-byte, two-byte, none) each get the header as they negotiated it on
// the direct path, where a fan-out marshals one header per shape and
// patches each copy; padded packets, padding-only ones included (browsers
// probe bandwidth with them), keep their padding on both paths.
func TestDirectPathHeadersPerSubscriber(t *testing.T) {
	f := newForwarder(func() {})
	sock := newTestSocket(t)
	subs := []struct {
		ssrc  webrtc.SSRC
		pt    webrtc.PayloadType
		extID int // 0: audio level not negotiated
	}{{11, 96, 5}, {12, 120, 5}, {13, 96, 7}, {14, 101, 20}, {15, 96, 0}}
	var peers []*directPeer
	for _, sub := range subs {
		codec := vp8
		codec.PayloadType = sub.pt
		c := &fakeContext{codecs: []webrtc.RTPCodecParameters{codec}, ssrc: sub.ssrc, w: &recorder{keep: true}}
		if sub.extID != 0 {
			c.exts = []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: sub.extID}}
		}
		d := f.NewDownTrack("v", "p", nil)
		if _, err := d.Bind(c); err != nil {
			t.Fatal(err)
		}
		p := newDirectPeer(t, sock)
		d.SetDirect(p.conn.NewStream())
		peers = append(peers, p)
	}
	if n := len(*f.shapes.Load()); n != 4 {
		t.Fatalf("%d header shapes for 4 distinct extension mappings", n)
	}
	_, rec := bindRecorder(t, f, 22)

	packets := []struct {
		payload []byte
		pad     byte
	}{{[]byte{0x90, 1, 2}, 0}, {[]byte{0x90, 3}, 4}, {nil, 200}}
	for i, pk := range packets {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: 9000, SSRC: 0xAABBCCDD}
		_ = h.SetExtension(3, []byte{0x1f})
		if pk.pad > 0 {
			h.Padding, h.PaddingSize = true, pk.pad
		}
		raw, err := (&rtp.Packet{Header: h, Payload: pk.payload}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		f.Forward(raw)
	}
	check := func(who string, p *rtp.Packet, i int, ssrc webrtc.SSRC, pt webrtc.PayloadType, extID int) {
		t.Helper()
		pk := packets[i]
		if p.SequenceNumber != uint16(i) || p.SSRC != uint32(ssrc) || p.PayloadType != uint8(pt) {
			t.Fatalf("%s packet %d: seq %d ssrc %d pt %d, want ssrc %d pt %d", who, i, p.SequenceNumber, p.SSRC, p.PayloadType, ssrc, pt)
		}
		if !bytes.Equal(p.Payload, pk.payload) || p.Padding != (pk.pad > 0) || p.PaddingSize != pk.pad {
			t.Fatalf("%s packet %d: payload %x padding %v/%d, want %x padding %d", who, i, p.Payload, p.Padding, p.PaddingSize, pk.payload, pk.pad)
		}
		for id := 1; id < 30; id++ {
			want := []byte(nil)
			if id == extID {
				want = []byte{0x1f}
			}
			if got := p.GetExtension(uint8(id)); !bytes.Equal(got, want) {
				t.Fatalf("%s packet %d: extension %d = %x, want %x", who, i, id, got, want)
			}
		}
	}
	for j, sub := range subs {
		for i := range packets {
			check(fmt.Sprintf("subscriber %d", sub.ssrc), peers[j].read(t), i, sub.ssrc, sub.pt, sub.extID)
		}
	}
	if len(rec.got) != len(packets) {
		t.Fatalf("pion subscriber got %d packets", len(rec.got))
	}
	for i := range packets {
		check("pion subscriber", &rec.got[i], i, 22, 96, 5)
	}
}

// BenchmarkDirectForward is one incoming 1200-byte video packet forwarded
// to N subscribers on the direct path: shapes' headers, per-copy patch,
// SRTP and sendmmsg to loopback sockets that other goroutines drain. Per
// copy it reports the forwarding thread's CPU time split into user space
// (the SFU's own work, which the kernel's share would drown in ns/copy)
// and kernel (the sends, their loopback delivery).
//
// The burst case writes 5 packets at once, as the port's reader hands a
// video frame read in one go: each subscriber's 5 copies then leave as one
// segmented send where the kernel has them.
//
// In the cold cases a 16 MiB buffer is written between packets, as the
// rest of a loaded machine does between one track's packets (4 ms apart
// at 1.5 Mbit/s): the subscribers' state is then out of the core's caches
// when a packet comes, and ns/copy counts only the fan-out.
func BenchmarkDirectForward(b *testing.B) {
	for _, bc := range []struct {
		n     int
		cold  bool
		burst int // packets per ReceiveRTP (a frame read at once); 0: Forward, one
	}{{10, false, 0}, {100, false, 0}, {100, true, 0}, {100, false, 5}} {
		name := fmt.Sprintf("subscribers=%d", bc.n)
		if bc.cold {
			name += "/cold"
		}
		if bc.burst > 0 {
			name += fmt.Sprintf("/burst=%d", bc.burst)
		}
		n := bc.n
		b.Run(name, func(b *testing.B) {
			f := newForwarder(nil)
			sock := newTestSocket(b)
			for i := range n {
				peer := newDirectPeer(b, sock)
				peer.drain()
				cc := bwe.NewSender()
				peer.conn.SetStamper(cc)
				d, _ := bindNumbered(b, f, webrtc.SSRC(i+1), cc)
				d.SetDirect(peer.conn.NewStream())
			}
			raw := sourcePacket(b, 1, bytes.Repeat([]byte{0xab}, 1200))
			f.Forward(raw)
			runtime.LockOSThread() // so that the thread's clocks are the loop's
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			if bc.cold {
				evict := make([]byte, 16<<20)
				var spent time.Duration
				for b.Loop() {
					for i := 0; i < len(evict); i += 64 {
						evict[i]++
					}
					bump(raw, 1)
					start := time.Now()
					f.Forward(raw)
					spent += time.Since(start)
				}
				b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N*n), "ns/copy")
				return
			}
			forward, per := func() { bump(raw, 1); f.Forward(raw) }, 1
			if bc.burst > 0 {
				burst, arrivals := make([][]byte, bc.burst), make([]time.Time, bc.burst)
				for i := range burst {
					burst[i], arrivals[i] = bytes.Clone(raw), time.Now()
					bump(burst[i], uint16(1+i))
				}
				indices := make([]uint64, bc.burst)
				forward, per = func() {
					for i, raw := range burst {
						bump(raw, uint16(bc.burst))
						indices[i] = f.Extend(binary.BigEndian.Uint16(raw[2:4]))
					}
					f.ReceiveRTP(burst, indices, arrivals)
				}, bc.burst
			}
			var before, after syscall.Rusage
			_ = syscall.Getrusage(unix.RUSAGE_THREAD, &before)
			for b.Loop() {
				forward()
			}
			_ = syscall.Getrusage(unix.RUSAGE_THREAD, &after)
			copies := float64(b.N * n * per)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/copies, "ns/copy")
			b.ReportMetric(float64(after.Utime.Nano()-before.Utime.Nano())/copies, "user-ns/copy")
			b.ReportMetric(float64(after.Stime.Nano()-before.Stime.Nano())/copies, "sys-ns/copy")
		})
	}
}

// The fan-out marshals a header only for the shapes its current
// subscribers take: subscribers that come and go with other extension IDs
// (a client renegotiating with made-up IDs, say) leave none behind, and
// subscribers with the same IDs share one.
func TestShapesFollowSubscribers(t *testing.T) {
	f := newForwarder(func() {})
	bind := func(ssrc webrtc.SSRC, extID int) (*DownTrack, *fakeContext) {
		t.Helper()
		c := &fakeContext{codecs: []webrtc.RTPCodecParameters{vp8}, ssrc: ssrc, w: &recorder{keep: true},
			exts: []webrtc.RTPHeaderExtensionParameter{{URI: audioLevelURI, ID: extID}}}
		d := f.NewDownTrack("v", "p", nil)
		if _, err := d.Bind(c); err != nil {
			t.Fatal(err)
		}
		return d, c
	}
	shapes := func() int { return len(*f.shapes.Load()) }
	a, _ := bind(1, 5)
	b, bc := bind(2, 6)
	bind(3, 7)
	if shapes() != 3 {
		t.Fatalf("%d shapes for three extension IDs", shapes())
	}
	if err := b.Unbind(bc); err != nil {
		t.Fatal(err)
	}
	if shapes() != 2 {
		t.Fatalf("%d shapes after the only subscriber with ID 6 left, want 2", shapes())
	}
	d, _ := bind(4, 5)
	if shapes() != 2 || a.bound.Load().shape != d.bound.Load().shape {
		t.Fatalf("a second subscriber with ID 5 did not share the first one's shape (%d shapes)", shapes())
	}
	f.Forward(sourcePacket(t, 1, []byte{0x90, 1}))
	for _, dt := range []*DownTrack{a, d} {
		got := dt.bound.Load().ws.(*recorder).got
		if len(got) != 1 || !bytes.Equal(got[0].GetExtension(5), []byte{0x1f}) {
			t.Fatalf("subscriber %d after the shapes changed: %d packets", dt.bound.Load().ssrc, len(got))
		}
	}
	a.Close()
	d.Close()
	if shapes() != 1 {
		t.Fatalf("%d shapes with one subscriber left, want 1", shapes())
	}
}

// A NACK is answered for at most MaxResendPerNACK packets, a packet at
// most once per round trip, and a subscriber's retransmissions within its
// budget: one small NACK naming the whole history once drew 512
// retransmissions.
func TestResendLimits(t *testing.T) {
	f := newForwarder(func() {})
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	d, rec := bindRecorder(t, f, 22)
	d2, rec2 := bindRecorder(t, f, 23)
	for seq := range uint16(historySize) {
		f.Forward(sourcePacket(t, seq, []byte{0x90}))
	}
	all := &rtcp.TransportLayerNack{}
	for seq := uint16(0); seq < historySize; seq += 17 {
		all.Nacks = append(all.Nacks, rtcp.NackPair{PacketID: seq, LostPackets: 0xffff})
	}
	resent := func() []uint16 {
		rec.got = nil
		var out []uint16
		d.Resend(all, nil)
		for _, p := range rec.got {
			out = append(out, p.SequenceNumber)
		}
		return out
	}
	first := resent()
	if len(first) != MaxResendPerNACK {
		t.Fatalf("one NACK for %d packets: %d resent, want %d", historySize, len(first), MaxResendPerNACK)
	}
	second := resent()
	if len(second) != MaxResendPerNACK || slices.ContainsFunc(second, func(s uint16) bool { return slices.Contains(first, s) }) {
		t.Fatalf("the same NACK again resent %v: a packet twice within a round trip", second)
	}
	d.SetRTT(300 * time.Millisecond)
	now = now.Add(200 * time.Millisecond) // past the default gap, within the measured round trip
	if again := resent(); len(again) != MaxResendPerNACK || slices.Contains(again, first[0]) {
		t.Fatalf("within the measured round trip: %v", again)
	}
	now = now.Add(time.Second)
	if again := resent(); len(again) != MaxResendPerNACK || again[0] != first[0] {
		t.Fatalf("a round trip later the first packets are due again; got %v", again)
	}

	budget := NewResendBudget(0, 100)
	for range 3 {
		rec2.got = nil
		d2.Resend(all, budget)
	}
	rec2.got = nil
	now = now.Add(time.Hour)
	if n := d2.Resend(all, budget); n != 0 {
		t.Fatalf("%d resent once the budget of 100 (no refill) was spent", n)
	}
	if got := f.cfg.Counters.Retransmissions.Load(); got != 4*MaxResendPerNACK+100 {
		t.Fatalf("Retransmissions = %d, want %d", got, 4*MaxResendPerNACK+100)
	}
}
