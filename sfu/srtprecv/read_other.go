//go:build !linux

package srtprecv

import "net/netip"

type recvState struct{}

// Read receives one datagram into b.
func (r *RawReader) Read(b []byte) (int, netip.AddrPort, error) {
	n, from, err := r.conn.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}
