// Package mmsg holds struct mmsghdr of <sys/socket.h>, the entry of the
// sendmmsg and recvmmsg system calls, which golang.org/x/sys/unix does
// not define, and a UDP reader that takes a burst in one recvmmsg call
// (one datagram a read where recvmmsg does not exist).
package mmsg
