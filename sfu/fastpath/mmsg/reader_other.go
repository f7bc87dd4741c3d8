//go:build !linux

package mmsg

import "net/netip"

type recvState struct{}

// ReadBatch receives one datagram into bufs[0], its length in lens[0] and
// its sender in froms[0].
func (r *Reader) ReadBatch(bufs [][]byte, lens []int, froms []netip.AddrPort) (int, error) {
	n, from, err := r.conn.ReadFromUDPAddrPort(bufs[0])
	if err != nil {
		return 0, err
	}
	lens[0], froms[0] = n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return 1, nil
}
