//go:build !linux

package srtpsend

import (
	"errors"
	"net"
	"net/netip"
)

var errNoTwin = errors.New("srtpsend: direct sends need Linux")

func listenICE(addr *net.UDPAddr) (*net.UDPConn, error) { return net.ListenUDP("udp", addr) }

func newTwin(*net.UDPConn, int) (*twin, error) { return nil, errNoTwin }

func clearReuseport(*net.UDPConn) error { return nil }

type twin struct{}

type mmsgArgs struct{}

func (*twin) close() error                                 { return nil }
func (*twin) reach(netip.AddrPort) netip.AddrPort          { return netip.AddrPort{} }
func (*twin) send(*mmsgArgs, []Datagram) (int, int, error) { return 0, 0, errNoTwin }
func (*twin) sendOne([]byte, netip.AddrPort) (int, error)  { return 0, errNoTwin }
