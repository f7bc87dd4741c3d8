package mmsg

import (
	"fmt"
	"net"
	"syscall"
)

// MaxBatch is the most datagrams one ReadBatch takes.
const MaxBatch = 16

// Reader reads a UDP socket in batches: non-blocking raw recvmmsg calls,
// waiting in the netpoller when nothing is queued. The SFU's fast receive
// path reads the ICE port with it, and the load tool's fan-out floor its
// own socket, so that the floor costs what the SFU's reading costs. One
// goroutine's: it keeps the call's arguments.
type Reader struct {
	conn *net.UDPConn
	raw  syscall.RawConn
	rs   recvState
}

// NewReader reads conn.
func NewReader(conn *net.UDPConn) (*Reader, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("mmsg: %w", err)
	}
	return &Reader{conn: conn, raw: raw}, nil
}
