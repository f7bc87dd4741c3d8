//go:build linux

package srtprecv

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reader is the reading goroutine's recvmsg state, kept in the Mux so
// that a read allocates nothing.
type reader struct {
	from  unix.RawSockaddrInet6
	iov   unix.Iovec
	h     unix.Msghdr
	n     int
	errno unix.Errno
	fn    func(fd uintptr) bool // recv, made once
}

// read receives one datagram into b. recvmsg with MSG_DONTWAIT never
// sleeps, so it is a raw system call, one the scheduler does not see;
// when nothing is queued, the raw connection waits for the socket in the
// netpoller, as any Go read does.
func (m *Mux) read(b []byte) (int, netip.AddrPort, error) {
	r := &m.rd
	if len(b) == 0 {
		return 0, netip.AddrPort{}, nil
	}
	if r.fn == nil {
		r.fn = r.recv
	}
	r.iov.Base = &b[0]
	r.iov.SetLen(len(b))
	r.h.Iov, r.h.Iovlen = &r.iov, 1
	r.h.Name = (*byte)(unsafe.Pointer(&r.from))
	if err := m.raw.Read(r.fn); err != nil {
		return 0, netip.AddrPort{}, err
	}
	r.iov.Base = nil // b is the caller's
	if r.errno != 0 {
		return 0, netip.AddrPort{}, r.errno
	}
	return r.n, sockaddrAddrPort(&r.from), nil
}

func (r *reader) recv(fd uintptr) bool {
	for {
		r.h.Namelen = unix.SizeofSockaddrInet6
		n, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.h)), unix.MSG_DONTWAIT)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait in the netpoller
		}
		r.n, r.errno = int(n), e
		return true
	}
}

func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := func(p *uint16) uint16 {
		b := (*[2]byte)(unsafe.Pointer(p))
		return uint16(b[0])<<8 | uint16(b[1])
	}
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port(&s4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port(&sa.Port))
	}
	return netip.AddrPort{}
}
