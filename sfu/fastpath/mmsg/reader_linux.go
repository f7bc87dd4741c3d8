//go:build linux

package mmsg

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvState is a reader's recvmmsg arguments, kept so that a read
// allocates nothing.
type recvState struct {
	hdrs  [MaxBatch]Hdr
	iovs  [MaxBatch]unix.Iovec
	froms [MaxBatch]unix.RawSockaddrInet6
	want  int // entries offered
	n     int // entries filled
	errno unix.Errno
	fn    func(fd uintptr) bool // recv, made once
}

// ReadBatch receives the datagrams queued on the socket, at least one, at
// most len(bufs) (and MaxBatch): datagram i into bufs[i], its length in
// lens[i] and its sender in froms[i]; it returns how many. recvmmsg with
// MSG_DONTWAIT never sleeps, so it is a raw system call, one the
// scheduler does not see; when nothing is queued, the raw connection
// waits for the socket in the netpoller, as any Go read does. One call
// takes a whole burst (a video frame's packets, say).
func (r *Reader) ReadBatch(bufs [][]byte, lens []int, froms []netip.AddrPort) (int, error) {
	s := &r.rs
	if s.fn == nil {
		s.fn = s.recv
	}
	s.want = min(len(bufs), len(lens), len(froms), MaxBatch)
	for i, b := range bufs[:s.want] {
		s.iovs[i].Base = &b[0]
		s.iovs[i].SetLen(len(b))
		h := &s.hdrs[i].Msg
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&s.froms[i]))
	}
	if err := r.raw.Read(s.fn); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, s.errno
	}
	for i := range s.n {
		lens[i], froms[i] = int(s.hdrs[i].Len), sockaddrAddrPort(&s.froms[i])
	}
	return s.n, nil
}

func (s *recvState) recv(fd uintptr) bool {
	for i := range s.want {
		s.hdrs[i].Msg.Namelen = unix.SizeofSockaddrInet6
	}
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.want), unix.MSG_DONTWAIT, 0, 0)
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
