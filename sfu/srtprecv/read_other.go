//go:build !linux

package srtprecv

import "net/netip"

type reader struct{}

func (m *Mux) read(b []byte) (int, netip.AddrPort, error) {
	n, from, err := m.conn.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}
