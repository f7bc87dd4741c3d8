//go:build !linux

package srtpsend

import (
	"errors"
	"net"
	"net/netip"
)

var errNoTwin = errors.New("srtpsend: direct sends need Linux")

func listen(addr *net.UDPAddr, _, _ int) (*Port, error) {
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	return &Port{Readers: []*net.UDPConn{conn}, Unshared: errNoTwin}, nil
}

type twin struct{}

type mmsgArgs struct{}

func (*twin) segmenting() bool                                       { return false }
func (*twin) close() error                                           { return nil }
func (*twin) reach(netip.AddrPort) netip.AddrPort                    { return netip.AddrPort{} }
func (*twin) send(*mmsgArgs, []Datagram) (int, int, int, int, error) { return 0, 0, 0, 0, errNoTwin }
func (*twin) sendOne([]byte, netip.AddrPort) (int, error)            { return 0, errNoTwin }
