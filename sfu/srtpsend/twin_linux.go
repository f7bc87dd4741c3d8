//go:build linux

package srtpsend

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Listen opens the SFU's ICE UDP socket on addr, for pion's ICE mux to
// read, and the Socket direct sends leave from: a twin socket bound to the
// same address and port (SO_REUSEPORT), so that the 5-tuple matches ICE's
// pair, which Go's netpoller never watches. Every datagram sent from a
// watched socket frees write space once delivered, and the kernel then
// wakes the thread blocked in epoll_wait for nothing: measured, that was
// half of the SFU's wake-ups under fan-out (docs/benchmarks.md). A
// one-instruction reuseport BPF program steers every incoming datagram to
// the first socket, so the twin never receives. bufSize sets both
// sockets' kernel buffers.
//
// If the twin cannot be made (a kernel without reuseport BPF), the
// returned Socket sends from conn itself, as NewSocket does, and err
// is nil; Twin reports which.
func Listen(addr *net.UDPAddr, bufSize int) (*net.UDPConn, *Socket, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	pc, err := lc.ListenPacket(nil, "udp", addr.String()) //nolint:staticcheck // no context to pass: startup
	if err != nil {
		return nil, nil, err
	}
	conn := pc.(*net.UDPConn)
	_ = conn.SetReadBuffer(bufSize)
	_ = conn.SetWriteBuffer(bufSize)
	s := NewSocket(conn)
	tw, err := newTwin(conn, bufSize)
	if err != nil {
		// Not fatal: the mux socket works alone. Without the steering
		// program the port must not stay shareable.
		_ = clearReuseport(conn)
		s.twinErr = err
		return conn, s, nil
	}
	s.twin = tw
	return conn, s, nil
}

// clearReuseport stops other sockets joining conn's port.
func clearReuseport(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 0)
	}); err != nil {
		return err
	}
	return serr
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

func newTwin(conn *net.UDPConn, bufSize int) (*twin, error) {
	la, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, errors.New("srtpsend: not a UDP socket")
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	// Steer every datagram arriving on the port to the socket bound
	// first, conn: "return 0" is the index in the reuseport group.
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("srtpsend: reuseport steering program: %w", serr)
	}
	ap := la.AddrPort()
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
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize) // capped by wmem_max, like conn's
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	t.fd = fd
	return t, nil
}

var errTwinClosed = errors.New("srtpsend: socket closed")

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

// twinBatch is a Batch's sendmmsg arguments, one entry per slot.
type twinBatch struct {
	hdrs [batchSize]mmsghdr
	iovs [batchSize]unix.Iovec
	sa4  [batchSize]unix.RawSockaddrInet4
	sa6  [batchSize]unix.RawSockaddrInet6
}

// send sends the first n slots of b with as few sendmmsg calls as the
// kernel takes, and returns how many left and how many calls it made.
// The socket is non-blocking and never waits: a full send buffer drops
// the rest, as a full NIC queue would.
func (t *twin) send(b *Batch) (sent, calls int, err error) {
	if b.tw == nil {
		b.tw = new(twinBatch)
	}
	tb := b.tw
	for i := range b.n {
		iov := &tb.iovs[i]
		iov.Base = &b.bufs[i][0]
		iov.SetLen(b.size[i])
		h := &tb.hdrs[i].hdr
		h.Iov, h.Iovlen = iov, 1
		a := b.dst[i].ap
		if t.v6 {
			sa := &tb.sa6[i]
			sa.Family = unix.AF_INET6
			putPort(&sa.Port, a.Port())
			sa.Addr = a.Addr().As16()
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet6
		} else {
			sa := &tb.sa4[i]
			sa.Family = unix.AF_INET
			putPort(&sa.Port, a.Port())
			sa.Addr = a.Addr().As4()
			h.Name, h.Namelen = (*byte)(unsafe.Pointer(sa)), unix.SizeofSockaddrInet4
		}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0, 0, errTwinClosed
	}
	for sent < b.n {
		// A raw syscall: sendmmsg on a non-blocking socket never sleeps,
		// and telling the scheduler about the syscall (entersyscall) woke
		// its monitor thread and handed the P to another thread on long
		// fan-outs, both measured costs (docs/benchmarks.md).
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(t.fd), uintptr(unsafe.Pointer(&tb.hdrs[sent])), uintptr(b.n-sent), unix.MSG_DONTWAIT, 0, 0)
		calls++
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return sent, calls, fmt.Errorf("srtpsend: sendmmsg: %w", errno)
		case r == 0:
			return sent, calls, errors.New("srtpsend: sendmmsg sent nothing")
		}
		sent += int(r)
	}
	return sent, calls, nil
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
		return 0, errTwinClosed
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
