package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// httpMaxHeaderBytes bounds a request's headers. With it, the idle
// timeout (Config.HTTPIdleTimeout) and the connection limits a client
// can no longer hold what it likes: 3000 idle keep-alive connections
// stayed open indefinitely.
const httpMaxHeaderBytes = 16 << 10

// counter counts what each address holds, within a per-address and a
// total limit (0: unlimited).
type counter struct {
	mu            sync.Mutex
	perIP         map[netip.Addr]int
	total         int
	maxPerIP, max int
}

func newCounter(max, maxPerIP int) *counter {
	return &counter{perIP: map[netip.Addr]int{}, max: max, maxPerIP: maxPerIP}
}

// acquire takes one place for ip if the limits allow; a trusted proxy's
// places count only in the total, since it carries many clients.
func (c *counter) acquire(ip netip.Addr, proxy bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.total >= c.max {
		return false
	}
	if !proxy {
		if c.maxPerIP > 0 && c.perIP[ip] >= c.maxPerIP {
			return false
		}
		c.perIP[ip]++
	}
	c.total++
	return true
}

func (c *counter) release(ip netip.Addr, proxy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if !proxy {
		if c.perIP[ip]--; c.perIP[ip] <= 0 {
			delete(c.perIP, ip)
		}
	}
}

// limitListener closes, as soon as it is accepted, a connection over the
// counter's limits.
type limitListener struct {
	net.Listener
	c       *counter
	trusted []netip.Prefix
	refused func()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(conn.RemoteAddr().String())
		proxy := trustedIP(ip, l.trusted)
		if l.c.acquire(ip, proxy) {
			return &limitedConn{Conn: conn, release: func() { l.c.release(ip, proxy) }}, nil
		}
		l.refused()
		_ = conn.Close()
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

func remoteIP(hostport string) netip.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func trustedIP(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the address of the client behind r: the connection's peer,
// or, when that peer is a trusted proxy (Cloudflare, Traefik), the nearest
// untrusted address the proxies recorded in X-Forwarded-For (each appends
// the address it received from). A client can forge the header's left
// part, never the part the proxies added.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ip := remoteIP(r.RemoteAddr)
	if !trustedIP(ip, trusted) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if hop = hop.Unmap(); !trustedIP(hop, trusted) {
			return hop
		}
		ip = hop
	}
	return ip
}
