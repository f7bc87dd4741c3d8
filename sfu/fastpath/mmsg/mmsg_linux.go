//go:build linux

package mmsg

import "golang.org/x/sys/unix"

// Hdr is one struct mmsghdr: a message and the bytes the call moved.
type Hdr struct {
	Msg unix.Msghdr
	Len uint32
	_   [4]byte
}
