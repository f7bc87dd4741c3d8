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

	"golang.org/x/sys/unix"
)

// listenICE binds the ICE socket with SO_REUSEPORT, so that its twin can
// share the port.
func listenICE(addr *net.UDPAddr) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
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
// kernel takes, and returns how many left and how many calls it made.
// The socket is non-blocking and never waits.
func (t *twin) send(args *mmsgArgs, ds []Datagram) (sent, calls int, err error) {
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
		return 0, 0, ErrClosed
	}
	for sent < len(ds) {
		// A raw syscall: sendmmsg on a non-blocking socket never sleeps,
		// and telling the scheduler about the syscall (entersyscall) woke
		// its monitor thread and handed the P to another thread on long
		// fan-outs, both measured costs (docs/benchmarks.md).
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(t.fd), uintptr(unsafe.Pointer(&args.hdrs[sent])), uintptr(len(ds)-sent), unix.MSG_DONTWAIT, 0, 0)
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
