package server_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/jbcalling/platform/sfu/server"
)

// Each bad setting is refused with an error naming it.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*server.Config)
		want string // substring of the error; "" for valid
	}{
		{"defaults", func(*server.Config) {}, ""},
		{"no listener", func(c *server.Config) { c.Listen = "" }, "--listen"},
		{"tls without files", func(c *server.Config) { c.TLSListen = ":8443" }, "--tls-cert"},
		{"udp port", func(c *server.Config) { c.ICEUDPPort = 70000 }, "--ice-udp-port"},
		{"tcp port", func(c *server.Config) { c.ICETCPPort = -2 }, "--ice-tcp-port"},
		{"port range order", func(c *server.Config) { c.ICEPortRange = "40100-40000" }, "--ice-port-range"},
		{"port range form", func(c *server.Config) { c.ICEPortRange = "40000" }, "--ice-port-range"},
		{"port range ok", func(c *server.Config) { c.ICEPortRange = "40000-40100" }, ""},
		{"bind", func(c *server.Config) { c.ICEBind = "localhost" }, "--ice-bind"},
		{"bind auto", func(c *server.Config) { c.ICEBind = server.ICEBindAuto }, ""},
		{"public ip", func(c *server.Config) { c.PublicIPs = []string{"203.0.113.7", "media.example.org"} }, "media.example.org"},
		{"stun scheme", func(c *server.Config) { c.STUNURLs = []string{"stun.example.org:3478"} }, "stun.example.org:3478"},
		{"turn without secret", func(c *server.Config) { c.TURNURLs = []string{"turn:t:3478"} }, "--turn-secret-file"},
		{"auth without secret", func(c *server.Config) { c.AllowAnonymous = false }, "--jwt-secret-file"},
		{"auth with secret", func(c *server.Config) { c.AllowAnonymous, c.JWTSecret = false, []byte("s") }, ""},
		{"negative limit", func(c *server.Config) { c.MaxTracks = -1 }, "limits"},
		{"rate", func(c *server.Config) { c.RateLimit = 0 }, "rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := server.Defaults()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !errors.Is(err, server.ErrConfig) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
}
