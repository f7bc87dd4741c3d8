package server

import (
	"net/http"
	"net/netip"
	"testing"
)

// The client behind trusted proxies is the nearest address they did not
// add themselves; a client's own X-Forwarded-For entries count for
// nothing, and an untrusted peer is the client whatever it claims.
func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("173.245.48.0/20"), netip.MustParsePrefix("10.200.0.0/16")}
	for _, c := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct client", "198.51.100.7:5000", nil, "198.51.100.7"},
		{"direct client lying", "198.51.100.7:5000", []string{"1.2.3.4"}, "198.51.100.7"},
		{"through Cloudflare", "173.245.48.9:443", []string{"198.51.100.7"}, "198.51.100.7"},
		{"through Cloudflare and Traefik", "10.200.1.5:40000", []string{"198.51.100.7, 173.245.48.9"}, "198.51.100.7"},
		{"forged left part", "10.200.1.5:40000", []string{"6.6.6.6, 198.51.100.7, 173.245.48.9"}, "198.51.100.7"},
		{"split headers", "10.200.1.5:40000", []string{"198.51.100.7", "173.245.48.9"}, "198.51.100.7"},
		{"garbage", "173.245.48.9:443", []string{"not-an-ip"}, "173.245.48.9"},
		{"mapped IPv4", "[::ffff:198.51.100.7]:5000", nil, "198.51.100.7"},
	} {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientIP(r, trusted); got.String() != c.want {
			t.Errorf("%s: client %s, want %s", c.name, got, c.want)
		}
	}
}

func TestCounter(t *testing.T) {
	c := newCounter(3, 2)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if first, second, third := c.acquire(a, false), c.acquire(a, false), c.acquire(a, false); !first || !second || third {
		t.Fatal("per-address limit of 2 not kept")
	}
	if !c.acquire(b, false) || c.acquire(b, false) {
		t.Fatal("total limit of 3 not kept")
	}
	c.release(a, false)
	if !c.acquire(b, true) {
		t.Fatal("a place freed is not taken again")
	}
	if c.acquire(b, true) {
		t.Fatal("a proxy's places exceed the total")
	}
}
