package srtpsend

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/srtp/v3"
	"golang.org/x/sys/unix"
)

// Sends through the twin leave from the ICE port, so the subscriber sees
// the 5-tuple ICE selected; and the twin never receives: every datagram
// sent to the port reaches the ICE socket, from whichever source (without
// the steering program the kernel would spread them over both sockets).
func TestTwinSharesThePortAndNeverReceives(t *testing.T) {
	conn, sock := newICESocket(t)
	ice := conn.LocalAddr().(*net.UDPAddr).AddrPort()

	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	s := p.stream(t, sock)
	var batch Batch
	for seq := range uint16(3) {
		if err := add(&batch, s, header(1, seq), payload(seq, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := sock.WriteTo([]byte("stun-ish"), p.addr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := range 4 {
		_ = p.rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, from, err := p.rx.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if from != ice {
			t.Fatalf("datagram %d came from %s, want the ICE port %s", i, from, ice)
		}
	}

	const senders, each = 8, 50
	for range senders {
		tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		for range each {
			if _, err := tx.WriteToUDPAddrPort([]byte("media"), ice); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range senders * each {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("the ICE socket got %d of %d datagrams: %v", i, senders*each, err)
		}
	}
	if _, _, err := unix.Recvfrom(sock.twin.fd, buf, unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("the twin received a datagram (err %v)", err)
	}
}

// An IPv4 destination is mapped on an IPv6 twin; an IPv6 one cannot be
// reached from an IPv4 twin and stays with pion (no address).
func TestTwinAddressFamilies(t *testing.T) {
	sock4 := newSocket(t)
	c, _ := NewConn(sock4, srtp.ProtectionProfileAeadAes128Gcm, make([]byte, 16), make([]byte, 12))
	c.SetAddr(netip.MustParseAddrPort("[2001:db8::1]:5000"))
	if c.dst.Load() != nil {
		t.Fatal("an IPv6 destination on an IPv4 socket has an address")
	}
	c.SetAddr(netip.MustParseAddrPort("[::ffff:127.0.0.1]:5000"))
	if d := c.dst.Load(); d == nil || !d.Addr().Is4() {
		t.Fatalf("a mapped IPv4 destination: %v", d)
	}

	p6, err := Listen(&net.UDPAddr{IP: net.IPv6loopback}, 1, 1<<20)
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer p6.Close()
	conn6, sock6 := p6.Readers[0], p6.Send
	if sock6 == nil {
		t.Fatalf("no IPv6 twin: %v", p6.Unshared)
	}
	if got := sock6.twin.reach(netip.MustParseAddrPort("127.0.0.1:5000")); got != netip.MustParseAddrPort("[::ffff:127.0.0.1]:5000") {
		t.Fatalf("IPv4 on an IPv6 twin: %s", got)
	}
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if _, err := sock6.WriteTo([]byte("x"), rx.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, from, err := rx.ReadFromUDPAddrPort(make([]byte, 16)); err != nil || from != conn6.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("IPv6 datagram from %s: %v", from, err)
	}
}

// After Close a send fails; it does not write to whatever file reused the
// descriptor's number.
func TestTwinClosed(t *testing.T) {
	sock := newSocket(t)
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	c, _ := NewConn(sock, p.profile, p.key, p.salt)
	c.SetAddr(p.addr())
	if err := sock.Close(); err != nil {
		t.Fatal(err)
	}
	var batch Batch
	if err := add(&batch, c.NewStream(), header(1, 1), payload(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	if _, err := sock.WriteTo([]byte("x"), p.addr()); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteTo after Close: %v", err)
	}
	if err := sock.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// With readers sockets, each SSRC's media reaches reader SSRC mod
// readers and everything else reader 0; the twin gets nothing.
func TestPortSpreadsMediaBySSRC(t *testing.T) {
	const readers = 3
	p := newPort(t, readers)
	at := p.Readers[0].LocalAddr().(*net.UDPAddr).AddrPort()
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	want := make([]int, readers)
	for ssrc := uint32(100); ssrc < 130; ssrc++ {
		pkt := append([]byte{0x80, 96, 0, 1, 0, 0, 0, 0}, byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc))
		if _, err := tx.WriteToUDPAddrPort(append(pkt, make([]byte, 50)...), at); err != nil {
			t.Fatal(err)
		}
		want[ssrc%readers]++
	}
	for _, ctl := range [][]byte{{0x80, 200, 0, 6}, {0x00, 0x01, 0, 0}, {22, 0xfe, 0xfd}} { // SRTCP, STUN, DTLS
		if _, err := tx.WriteToUDPAddrPort(append(ctl, make([]byte, 40)...), at); err != nil {
			t.Fatal(err)
		}
		want[0]++
	}
	buf := make([]byte, 2048)
	for i, r := range p.Readers {
		for n := range want[i] {
			_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := r.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("reader %d got %d of %d datagrams: %v", i, n, want[i], err)
			}
			if buf[0]&0xc0 == 0x80 && (buf[1] < 192 || buf[1] > 223) && k >= 12 {
				if ssrc := uint32(buf[8])<<24 | uint32(buf[9])<<16 | uint32(buf[10])<<8 | uint32(buf[11]); int(ssrc%readers) != i {
					t.Fatalf("SSRC %d reached reader %d", ssrc, i)
				}
			} else if i != 0 {
				t.Fatalf("a control datagram reached reader %d", i)
			}
		}
		_ = r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := r.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("reader %d got more than its %d datagrams", i, want[i])
		}
	}
	if _, _, err := unix.Recvfrom(p.Send.twin.fd, buf, unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("the twin received a datagram (err %v)", err)
	}
}

// When the port cannot be shared (here: the steering program is refused),
// Listen falls back to one plain reader that works and that no other
// socket can join, and says why.
func TestListenFallsBackToOneReader(t *testing.T) {
	refused := errors.New("refused")
	steer = func(*net.UDPConn, uint32) error { return refused }
	defer func() { steer = attachSteering }()
	p, err := Listen(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.Readers) != 1 || p.Send != nil || !errors.Is(p.Unshared, refused) {
		t.Fatalf("fallback: %d readers, send %v, why %v", len(p.Readers), p.Send, p.Unshared)
	}
	conn := p.Readers[0]
	at := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if other, err := listenReuse(at.String()); err == nil {
		other.Close()
		t.Fatal("another socket joined the unshared port")
	}
	if _, err := conn.WriteToUDPAddrPort([]byte("self"), at); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := conn.ReadFromUDPAddrPort(make([]byte, 16)); err != nil {
		t.Fatalf("the reader does not work: %v", err)
	}
}

// A datagram the kernel refuses on its own (here: to a broadcast address,
// which needs SO_BROADCAST) is lost alone: every other subscriber's copy,
// in the same sendmmsg call and in the chunks after it, still goes, and
// the error names the refused destination.
func TestTwinSkipsARefusedDatagram(t *testing.T) {
	sock := newSocket(t)
	refused := netip.MustParseAddrPort("127.255.255.255:9")
	const n = batchSize + 6 // two chunks, a refused datagram in each
	var ds []Datagram
	var rxs []*peer
	for i := range n {
		if i == 1 || i == batchSize+2 {
			ds = append(ds, Datagram{B: []byte("refused"), To: refused})
			continue
		}
		p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
		rxs = append(rxs, p)
		ds = append(ds, Datagram{B: []byte{byte(i)}, To: p.addr()})
	}
	sent, err := sock.NewSender().Send(ds)
	if sent != n-2 {
		t.Errorf("sent %d of %d, want all but the 2 refused", sent, n)
	}
	if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), refused.String()) {
		t.Errorf("error %v, want EACCES naming %s", err, refused)
	}
	buf := make([]byte, 16)
	for i, p := range rxs {
		_ = p.rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := p.rx.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("receiver %d got nothing: %v", i, err)
		}
	}
}

// The twin sends IPv4 with DF and ID 0 (IP_PMTUDISC_PROBE): the kernel
// skips its hashed IP ID generator, a measured cost per datagram. Seen on
// the wire with a raw socket, so it needs root (CAP_NET_RAW).
func TestTwinSendsDontFragment(t *testing.T) {
	raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		t.Skipf("no raw socket to see IP headers with (needs CAP_NET_RAW): %v", err)
	}
	defer unix.Close(raw)
	_ = unix.SetsockoptTimeval(raw, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	conn, sock := newICESocket(t)
	from := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	for range 3 {
		if _, err := sock.WriteTo([]byte("df?"), p.addr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	for seen := 0; seen < 3; {
		n, _, err := unix.Recvfrom(raw, buf, 0)
		if err != nil {
			t.Fatalf("saw %d of the twin's datagrams: %v", seen, err)
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+8 || uint16(buf[ihl])<<8|uint16(buf[ihl+1]) != from || uint16(buf[ihl+2])<<8|uint16(buf[ihl+3]) != p.addr().Port() {
			continue // someone else's UDP
		}
		seen++
		id, flags := uint16(buf[4])<<8|uint16(buf[5]), buf[6]>>5
		if flags&0b010 == 0 || id != 0 {
			t.Fatalf("datagram from the twin: flags %03b, ID %d; want DF and ID 0", flags, id)
		}
	}
}

// Consecutive datagrams to one address leave as one segmented send where
// the sizes allow it (all the first's size, the last shorter or equal),
// and each subscriber still receives each datagram whole, alone and in
// order; anything else is sent as before.
func TestTwinSegmentsBursts(t *testing.T) {
	type to struct {
		peer int
		size int
	}
	cases := []struct {
		name      string
		ds        []to
		segmented int // datagrams expected in segmented sends
	}{
		{"one subscriber's burst", []to{{0, 1228}, {0, 1228}, {0, 1228}, {0, 1228}, {0, 1228}}, 5},
		{"a shorter last, then another subscriber", []to{{0, 1228}, {0, 1228}, {0, 300}, {1, 1228}, {1, 1228}}, 5},
		{"a longer one starts a new send", []to{{0, 100}, {0, 100}, {0, 200}, {0, 200}}, 4},
		{"nothing after a shorter one", []to{{0, 100}, {0, 50}, {0, 100}}, 2},
		{"interleaved subscribers", []to{{0, 100}, {1, 100}, {0, 100}, {1, 100}}, 0},
		{"a burst longer than a sendmmsg chunk", func() (ds []to) {
			for range batchSize + 6 {
				ds = append(ds, to{1, 1000})
			}
			return ds
		}(), batchSize + 6},
	}
	sock := newSocket(t)
	if !sock.twin.gso.Load() {
		t.Skip("the kernel has no UDP_SEGMENT (Linux 4.18 and later): datagrams are sent one by one")
	}
	peers := []*peer{newPeer(t, srtp.ProtectionProfileAeadAes128Gcm), newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ds []Datagram
			want := make([][][]byte, len(peers))
			for i, d := range c.ds {
				b := make([]byte, d.size)
				for k := range b {
					b[k] = byte(i + k)
				}
				ds = append(ds, Datagram{B: b, To: peers[d.peer].addr()})
				want[d.peer] = append(want[d.peer], b)
			}
			before := sock.Segmented.Load()
			sent, err := sock.NewSender().Send(ds)
			if err != nil || sent != len(ds) {
				t.Fatalf("sent %d of %d: %v", sent, len(ds), err)
			}
			if got := int(sock.Segmented.Load() - before); got != c.segmented {
				t.Errorf("%d datagrams in segmented sends, want %d", got, c.segmented)
			}
			buf := make([]byte, 2048)
			for pi, p := range peers {
				for i, w := range want[pi] {
					_ = p.rx.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, _, err := p.rx.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("subscriber %d got %d of %d datagrams: %v", pi, i, len(want[pi]), err)
					}
					if string(buf[:n]) != string(w) {
						t.Fatalf("subscriber %d's datagram %d: %d bytes, want its %d bytes as sent", pi, i, n, len(w))
					}
				}
			}
		})
	}
}

// A segmented send the kernel refuses is retried datagram by datagram:
// only the datagrams at fault are lost, and the error names them.
func TestTwinRetriesARefusedSegmentedSend(t *testing.T) {
	sock := newSocket(t)
	if !sock.twin.gso.Load() {
		t.Skip("the kernel has no UDP_SEGMENT (Linux 4.18 and later): no segmented sends to refuse")
	}
	refused := netip.MustParseAddrPort("127.255.255.255:9") // broadcast, without SO_BROADCAST
	p := newPeer(t, srtp.ProtectionProfileAeadAes128Gcm)
	var ds []Datagram
	for range 3 {
		ds = append(ds, Datagram{B: []byte("refused"), To: refused})
	}
	for i := range 3 {
		ds = append(ds, Datagram{B: []byte{'o', 'k', byte(i)}, To: p.addr()})
	}
	sent, err := sock.NewSender().Send(ds)
	if sent != 3 {
		t.Errorf("sent %d of %d, want the 3 to the subscriber", sent, len(ds))
	}
	if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), refused.String()) {
		t.Errorf("error %v, want EACCES naming %s", err, refused)
	}
	buf := make([]byte, 16)
	for i := range 3 {
		_ = p.rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := p.rx.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != string([]byte{'o', 'k', byte(i)}) {
			t.Fatalf("datagram %d: %q, %v", i, buf[:n], err)
		}
	}
	if !sock.twin.gso.Load() {
		t.Error("a refused destination turned segmented sends off; only EIO (no checksum offload) should")
	}
}
