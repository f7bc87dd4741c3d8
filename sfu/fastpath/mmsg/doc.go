// Package mmsg holds struct mmsghdr of <sys/socket.h>, the entry of the
// sendmmsg and recvmmsg system calls, which golang.org/x/sys/unix does
// not define (Linux only).
package mmsg
