//go:build linux

package srtprecv

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvState is a reader's recvmsg arguments, kept so that a read
// allocates nothing.
type recvState struct {
	from  unix.RawSockaddrInet6
	iov   unix.Iovec
	h     unix.Msghdr
	n     int
	errno unix.Errno
	fn    func(fd uintptr) bool // recv, made once
}

// Read receives one datagram into b (not empty). recvmsg with
// MSG_DONTWAIT never sleeps, so it is a raw system call, one the
// scheduler does not see; when nothing is queued, the raw connection
// waits for the socket in the netpoller, as any Go read does.
func (r *RawReader) Read(b []byte) (int, netip.AddrPort, error) {
	s := &r.rs
	if s.fn == nil {
		s.fn = s.recv
	}
	s.iov.Base = &b[0]
	s.iov.SetLen(len(b))
	s.h.Iov, s.h.Iovlen = &s.iov, 1
	s.h.Name = (*byte)(unsafe.Pointer(&s.from))
	if err := r.raw.Read(s.fn); err != nil {
		return 0, netip.AddrPort{}, err
	}
	if s.errno != 0 {
		return 0, netip.AddrPort{}, s.errno
	}
	return s.n, sockaddrAddrPort(&s.from), nil
}

func (s *recvState) recv(fd uintptr) bool {
	for {
		s.h.Namelen = unix.SizeofSockaddrInet6
		n, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&s.h)), unix.MSG_DONTWAIT)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait in the netpoller
		}
		s.n, s.errno = int(n), e
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
