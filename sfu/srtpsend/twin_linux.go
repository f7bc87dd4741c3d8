//go:build linux

package srtpsend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

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
	// (docs/benchmarks.md, "DF on the twin").
	// Media fits any path (≤ 1200-byte payloads); a datagram larger than
	// the interface's MTU fails alone (EMSGSIZE) instead of fragmenting.
	// On an IPv6 socket this covers its IPv4-mapped peers.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil && !t.v6 {
		return fail("IP_MTU_DISCOVER", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	t.fd = fd
	return t, nil
}

func (t *twin) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return unix.Close(t.fd)
}

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// mmsgArgs are a Sender's sendmmsg arguments, one entry per datagram.
type mmsgArgs struct {
	hdrs [batchSize]mmsghdr
	iovs [batchSize]unix.Iovec
	sa4  [batchSize]unix.RawSockaddrInet4
	sa6  [batchSize]unix.RawSockaddrInet6
}

// send sends ds (at most batchSize) with as few sendmmsg calls as the
// kernel takes, and returns how many left, how many it tried (all but
// those after a socket error) and how many calls it made. The socket is
// non-blocking and never waits. A datagram the kernel refuses on its own
// is skipped and the first such error returned with the others sent; a
// socket error (full, closed) ends the batch there.
func (t *twin) send(args *mmsgArgs, ds []Datagram) (sent, tried, calls int, err error) {
	for i, d := range ds {
		iov := &args.iovs[i]
		iov.Base = unsafe.SliceData(d.B)
		iov.SetLen(len(d.B))
		h := &args.hdrs[i].hdr
		h.Iov, h.Iovlen = iov, 1
		if t.v6 {
			sa := &args.sa6[i]
			sa.Family = unix.AF_INET6
			putPort(&sa.Port, d.To.Port())
			sa.Addr = d.To.Addr().As16()
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet6
		} else {
			sa := &args.sa4[i]
			sa.Family = unix.AF_INET
			putPort(&sa.Port, d.To.Port())
			sa.Addr = d.To.Addr().As4()
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet4
		}
	}
	defer func() { // the buffers are the caller's
		for i := range ds {
			args.iovs[i].Base = nil
		}
	}()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0, 0, 0, ErrClosed
	}
	for tried < len(ds) {
		// A raw syscall: sendmmsg on a non-blocking socket never sleeps,
		// and telling the scheduler about the syscall (entersyscall) woke
		// its monitor thread and handed the P to another thread on long
		// fan-outs, both measured costs (docs/benchmarks.md).
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(t.fd), uintptr(unsafe.Pointer(&args.hdrs[tried])), uintptr(len(ds)-tried), unix.MSG_DONTWAIT, 0, 0)
		calls++
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN || errno == unix.ENOBUFS || errno == unix.EBADF:
			// The socket, not the datagram: the rest would fail too.
			return sent, tried, calls, errors.Join(err, fmt.Errorf("srtpsend: sendmmsg: %w", errno))
		case errno != 0:
			// This datagram alone (too large, a destination the
			// kernel refuses): skip it, send the other subscribers'.
			if err == nil {
				err = fmt.Errorf("srtpsend: sendmmsg to %v: %w", ds[tried].To, errno)
			}
			tried++
			continue
		case r == 0:
			return sent, tried, calls, errors.Join(err, errors.New("srtpsend: sendmmsg sent nothing"))
		}
		sent += int(r)
		tried += int(r)
	}
	return sent, tried, calls, err
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
