//go:build linux

package srtpsend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/jbcalling/platform/sfu/fastpath/mmsg"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// listen binds the readers, attaches the steering program, then binds
// the twin; if the port cannot be shared, one plain reader.
func listen(addr *net.UDPAddr, readers, bufSize int) (*Port, error) {
	first, err := listenReuse(addr.String())
	if err != nil {
		return nil, err
	}
	p := &Port{Readers: []*net.UDPConn{first}}
	unshared := func(err error) (*Port, error) {
		for _, r := range p.Readers[1:] {
			_ = r.Close()
		}
		p.Readers = p.Readers[:1]
		if cerr := setReuseport(first, 0); cerr != nil {
			_ = first.Close()
			return nil, cerr
		}
		p.Unshared = err
		return p, nil
	}
	at := first.LocalAddr().String() // the port the kernel chose for port 0
	for len(p.Readers) < readers {
		r, err := listenReuse(at)
		if err != nil {
			return unshared(fmt.Errorf("srtpsend: another reader: %w", err))
		}
		p.Readers = append(p.Readers, r)
	}
	if err := steer(first, uint32(readers)); err != nil {
		return unshared(err)
	}
	t, err := newTwin(first.LocalAddr().(*net.UDPAddr).AddrPort(), bufSize)
	if err != nil {
		return unshared(err)
	}
	p.Send = &Socket{twin: t}
	return p, nil
}

func listenReuse(addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// setReuseport lets other sockets join conn's port, or (0) no longer.
func setReuseport(conn *net.UDPConn, on int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, on)
	}); err != nil {
		return err
	}
	return serr
}

// steer is attachSteering; tests replace it to see Listen fall back.
var steer = attachSteering

// attachSteering gives the port's reuseport group the steering program.
func attachSteering(conn *net.UDPConn, readers uint32) error {
	raw, err := bpf.Assemble(steering(readers))
	if err != nil {
		return fmt.Errorf("srtpsend: steering program: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		prog[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("srtpsend: reuseport steering program: %w", serr)
	}
	return nil
}

// twin is the send-only socket: a plain non-blocking file descriptor,
// written with sendmmsg.
type twin struct {
	// mu keeps fd from being closed (and its number reused by another
	// file) while a batch is sent on it.
	mu     sync.RWMutex
	fd     int
	closed bool
	v6     bool
	// gso: the kernel sends several datagrams to one address as one
	// segmented send (UDP_SEGMENT), each leaving as its own datagram.
	gso atomic.Bool
}

func newTwin(ap netip.AddrPort, bufSize int) (*twin, error) {
	t := &twin{v6: ap.Addr().Is6() && !ap.Addr().Is4In6()}
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	if !t.v6 {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("srtpsend: twin socket: %w", err)
	}
	fail := func(what string, err error) (*twin, error) {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("srtpsend: twin socket: %s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("SO_REUSEPORT", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize) // capped by wmem_max, like the readers'
	// DF without path-MTU state (IP_PMTUDISC_PROBE): the kernel then gives
	// each IPv4 datagram the ID 0 instead of drawing one from its shared,
	// hashed ID table: 4.8 % of the SFU's CPU in a profile at 1 x 100
	// (docs/design/04-df-on-the-twin.md).
	// Media fits any path (≤ 1200-byte payloads); a datagram larger than
	// the interface's MTU fails alone (EMSGSIZE) instead of fragmenting.
	// On an IPv6 socket this covers its IPv4-mapped peers.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil && !t.v6 {
		return fail("IP_MTU_DISCOVER", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	// Segmented sends where the kernel has them (Linux 4.18): the kernel's
	// send path then runs once per subscriber's burst, not per datagram.
	_, err = unix.GetsockoptInt(fd, unix.SOL_UDP, unix.UDP_SEGMENT)
	t.gso.Store(err == nil)
	t.fd = fd
	return t, nil
}

func (t *twin) segmenting() bool { return t.gso.Load() }

func (t *twin) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return unix.Close(t.fd)
}

// udpSegmentSpace holds a UDP_SEGMENT control message (a uint16).
const udpSegmentSpace = 24 // unix.CmsgSpace(2)

// Limits of one segmented (GSO) send: the kernel's UDP_MAX_SEGMENTS is 64
// on older kernels, and the datagrams together must fit one IP packet.
const (
	maxSegments     = 64
	maxSegmentBytes = 65000
)

// mmsgArgs are a Sender's sendmmsg arguments: an iovec per datagram, and
// an entry per send, which carries one datagram or several segments.
type mmsgArgs struct {
	hdrs [batchSize]mmsg.Hdr
	segs [batchSize]int // datagrams per entry
	iovs [batchSize]unix.Iovec
	sa4  [batchSize]unix.RawSockaddrInet4
	sa6  [batchSize]unix.RawSockaddrInet6
	ctl  [batchSize][udpSegmentSpace]byte
}

// segments is how many datagrams from ds[0] the kernel can send as one
// segmented datagram (UDP GSO): consecutive ones to the same address, all
// the size of the first but the last, which may be shorter. A fan-out of
// a burst of packets puts each subscriber's copies next to each other.
func segments(ds []Datagram) int {
	size := len(ds[0].B)
	total, n := size, 1
	for n < len(ds) && n < maxSegments {
		d := ds[n]
		if d.To != ds[0].To || len(d.B) == 0 || len(d.B) > size || total+len(d.B) > maxSegmentBytes {
			break
		}
		total += len(d.B)
		n++
		if len(d.B) < size {
			break // only the last segment may be shorter
		}
	}
	return n
}

// entries fills args with sends for ds, each datagram alone before index
// alone and where segmented sends are off, and returns how many.
func (t *twin) entries(args *mmsgArgs, ds []Datagram, alone int) int {
	gso := t.gso.Load()
	e := 0
	for i := 0; i < len(ds); e++ {
		n := 1
		if gso && i >= alone {
			n = segments(ds[i:])
		}
		for k, d := range ds[i : i+n] {
			iov := &args.iovs[i+k]
			iov.Base = unsafe.SliceData(d.B)
			iov.SetLen(len(d.B))
		}
		h := &args.hdrs[e].Msg
		h.Iov = &args.iovs[i]
		h.SetIovlen(n)
		to := ds[i].To
		if t.v6 {
			sa := &args.sa6[e]
			sa.Family = unix.AF_INET6
			putPort(&sa.Port, to.Port())
			sa.Addr = to.Addr().As16()
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet6
		} else {
			sa := &args.sa4[e]
			sa.Family = unix.AF_INET
			putPort(&sa.Port, to.Port())
			sa.Addr = to.Addr().As4()
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet4
		}
		h.Control, h.Controllen = nil, 0
		if n > 1 {
			ctl := &args.ctl[e]
			c := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
			c.Level, c.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			c.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&ctl[unix.CmsgLen(0)])) = uint16(len(ds[i].B))
			h.Control = &ctl[0]
			h.SetControllen(udpSegmentSpace)
		}
		args.segs[e] = n
		i += n
	}
	return e
}

// send sends ds (at most batchSize) with as few sendmmsg calls as the
// kernel takes, and returns how many left, how many it tried (all but
// those after a socket error), how many calls it made and how many went
// as segments of a larger send. The socket is non-blocking and never
// waits. A datagram the kernel refuses on its own is skipped and the
// first such error returned with the others sent; a socket error (full,
// closed) ends the batch there. A refused segmented send is tried again
// datagram by datagram, so that only the datagrams at fault are lost;
// EIO (older kernels refuse them for a device without checksum offload;
// 6.18 checksums them in software instead) turns segmented sends off.
func (t *twin) send(args *mmsgArgs, ds []Datagram) (sent, tried, calls, segmented int, err error) {
	defer func() { // the buffers are the caller's
		for i := range ds {
			args.iovs[i].Base = nil
		}
	}()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0, 0, 0, 0, ErrClosed
	}
	alone := 0 // datagrams before this index are sent one by one
	for tried < len(ds) {
		entries := t.entries(args, ds[tried:], alone-tried)
	calls:
		for e := 0; e < entries; {
			// A raw syscall: sendmmsg on a non-blocking socket never sleeps,
			// and telling the scheduler about the syscall (entersyscall) woke
			// its monitor thread and handed the P to another thread on long
			// fan-outs, both measured costs (docs/benchmarks.md).
			r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(t.fd), uintptr(unsafe.Pointer(&args.hdrs[e])), uintptr(entries-e), unix.MSG_DONTWAIT, 0, 0)
			calls++
			switch {
			case errno == unix.EINTR:
				continue
			case errno == unix.EAGAIN || errno == unix.ENOBUFS || errno == unix.EBADF:
				// The socket, not the datagram: the rest would fail too.
				return sent, tried, calls, segmented, errors.Join(err, fmt.Errorf("srtpsend: sendmmsg: %w", errno))
			case errno != 0 && args.segs[e] > 1:
				if errno == unix.EIO {
					t.gso.Store(false)
				}
				alone = tried + args.segs[e]
				break calls // the rest again, from this send's datagrams one by one
			case errno != 0:
				// This datagram alone (too large, a destination the
				// kernel refuses): skip it, send the other subscribers'.
				if err == nil {
					err = fmt.Errorf("srtpsend: sendmmsg to %v: %w", ds[tried].To, errno)
				}
				tried++
				e++
				continue
			case r == 0:
				return sent, tried, calls, segmented, errors.Join(err, errors.New("srtpsend: sendmmsg sent nothing"))
			}
			for _, n := range args.segs[e : e+int(r)] {
				sent, tried = sent+n, tried+n
				if n > 1 {
					segmented += n
				}
			}
			e += int(r)
		}
	}
	return sent, tried, calls, segmented, err
}

// sendOne sends one datagram to a (already in the twin's family; see
// reach), without waiting, like send.
func (t *twin) sendOne(b []byte, a netip.AddrPort) (int, error) {
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var name unsafe.Pointer
	var namelen uint32
	if t.v6 {
		sa6.Family = unix.AF_INET6
		putPort(&sa6.Port, a.Port())
		sa6.Addr = a.Addr().As16()
		name, namelen = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
	} else {
		sa4.Family = unix.AF_INET
		putPort(&sa4.Port, a.Port())
		sa4.Addr = a.Addr().As4()
		name, namelen = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0, ErrClosed
	}
	for {
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(t.fd), uintptr(p), uintptr(len(b)), unix.MSG_DONTWAIT, uintptr(name), uintptr(namelen))
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return 0, fmt.Errorf("srtpsend: sendto: %w", errno)
		}
		return int(r), nil
	}
}

// putPort stores a port in network byte order, as sockaddr wants it.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}

// reach is a as the twin sends to it, or invalid if its family cannot:
// an IPv4 address on an IPv6 socket is sent to as its mapped form.
func (t *twin) reach(a netip.AddrPort) netip.AddrPort {
	switch {
	case t.v6 && a.Addr().Is4():
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	case !t.v6 && !a.Addr().Is4():
		return netip.AddrPort{}
	}
	return a
}
