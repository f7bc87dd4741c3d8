//go:build !linux

package srtpsend

import (
	"errors"
	"net"
	"net/netip"
)

var errNoTwin = errors.New("srtpsend: twin sockets need Linux")

// Listen opens the SFU's ICE UDP socket on addr; off Linux direct sends
// leave from it (NewSocket).
func Listen(addr *net.UDPAddr, bufSize int) (*net.UDPConn, *Socket, error) {
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetReadBuffer(bufSize)
	_ = conn.SetWriteBuffer(bufSize)
	s := NewSocket(conn)
	s.twinErr = errNoTwin
	return conn, s, nil
}

type twin struct{}

type twinBatch struct{}

func (*twin) close() error                        { return nil }
func (*twin) reach(netip.AddrPort) netip.AddrPort { return netip.AddrPort{} }
func (*twin) send(*Batch) (int, int, error)       { return 0, 0, errNoTwin }

func (*twin) sendOne([]byte, netip.AddrPort) (int, error) { return 0, errNoTwin }
