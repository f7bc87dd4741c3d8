// Package server is the SFU's HTTP side: WebSocket signalling sessions,
// /health, /metrics and the static browser client, plus the WebRTC
// settings (codecs, interceptors, ICE muxes, announced addresses).
package server

import (
	"errors"
	"fmt"
	"github.com/jbcalling/platform/sfu/auth"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is everything the server needs; cmd/sfu fills it from flags and
// SFU_* environment variables.
type Config struct {
	Listen    string // plain HTTP, e.g. 127.0.0.1:8080; empty disables
	TLSListen string // HTTPS, e.g. :8443; empty disables
	TLSCert   string // PEM file
	TLSKey    string // PEM file
	// MetricsListen serves /metrics alone, e.g. :9090 on an internal
	// network; empty serves it beside /health on Listen and TLSListen.
	MetricsListen string

	// Connection limits, 0 unlimited: TCP connections per listener in
	// all and per client address, signalling sockets in all and per
	// client address. TrustedProxies (CIDRs: Cloudflare's, the overlay's)
	// are the proxies whose X-Forwarded-For names the client; their own
	// connections count only in the totals.
	MaxConns, MaxConnsPerIP           int
	MaxWebSockets, MaxWebSocketsPerIP int
	TrustedProxies                    []string

	ICEUDPPort   int    // single-port UDP mux; 0 picks a free port
	ICETCPPort   int    // ICE-TCP mux; -1 disables
	ICEPortRange string // "min-max": ephemeral UDP ports instead of the mux
	ICEBind      string // address the muxes bind; empty means all interfaces, "auto" the default route's
	PublicIPs    []string
	// FastPaths lets the SFU's own receive and send paths carry media on
	// the single UDP port (package fastpath); false: pion carries all.
	FastPaths bool

	STUNURLs   []string // given to clients; used by the server only without PublicIPs
	TURNURLs   []string // given to clients with REST credentials
	TURNSecret []byte
	TURNTTL    time.Duration

	JWTSecret      []byte
	JWTIssuer      string // the iss claim join tokens must carry
	AllowAnonymous bool

	MaxRooms, MaxParticipants, MaxTracks int
	// MaxPerIdentity bounds one token subject's participants per room.
	MaxPerIdentity int

	JoinTimeout time.Duration // WebSocket open → join
	// HTTPIdleTimeout closes a keep-alive connection idle between requests.
	HTTPIdleTimeout time.Duration
	IdleTimeout     time.Duration // no pong for this long closes a session
	ICETimeout      time.Duration // negotiation → connected
	DrainTimeout    time.Duration // SIGTERM → forced close

	// RateLimit is the sustained messages/second per connection, RateBurst
	// the bucket size.
	RateLimit float64
	RateBurst int
	// DataRate and DataBurst bound a participant's data messages (chat,
	// app data) on their own, inside RateLimit.
	DataRate  float64
	DataBurst int
	// ResumeWindow is how long a participant whose WebSocket dropped
	// stays in its room, media flowing, for a new WebSocket to resume it;
	// 0 ends it at once.
	ResumeWindow time.Duration

	Logger *slog.Logger
	// Web is served at / and /client/; nil means the embedded sfu/web.
	Web fs.FS
}

// Defaults returns the local-run configuration.
func Defaults() Config {
	return Config{
		Listen:             "127.0.0.1:8080",
		ICEUDPPort:         40000,
		ICETCPPort:         40000,
		FastPaths:          true,
		MaxConns:           8192,
		MaxConnsPerIP:      64,
		MaxWebSockets:      4096,
		MaxWebSocketsPerIP: 32,
		TURNTTL:            time.Hour,
		AllowAnonymous:     true,
		JWTIssuer:          auth.DefaultIssuer,
		MaxRooms:           1000,
		MaxParticipants:    50,
		MaxTracks:          4,
		MaxPerIdentity:     4,
		JoinTimeout:        10 * time.Second,
		HTTPIdleTimeout:    30 * time.Second,
		IdleTimeout:        60 * time.Second,
		ICETimeout:         30 * time.Second,
		DrainTimeout:       10 * time.Second,
		RateLimit:          50,
		RateBurst:          100,
		DataRate:           10,
		DataBurst:          20,
		ResumeWindow:       20 * time.Second,
	}
}

// ErrConfig wraps configuration errors.
var ErrConfig = errors.New("sfu config")

// Validate names the first bad setting.
func (c *Config) Validate() error {
	for _, check := range []func() string{c.checkListeners, c.checkICE, c.checkAuth, c.checkLimits} {
		if problem := check(); problem != "" {
			return fmt.Errorf("%w: %s", ErrConfig, problem)
		}
	}
	return nil
}

// The checks of Validate: each returns its first problem, or "".

func (c *Config) checkListeners() string {
	switch {
	case c.Listen == "" && c.TLSListen == "":
		return "set --listen or --tls-listen"
	case c.TLSListen != "" && (c.TLSCert == "" || c.TLSKey == ""):
		return "--tls-listen needs --tls-cert and --tls-key"
	case c.MetricsListen != "" && (c.MetricsListen == c.Listen || c.MetricsListen == c.TLSListen):
		return fmt.Sprintf("--metrics-listen %q must differ from the public listeners", c.MetricsListen)
	}
	if _, err := c.trusted(); err != nil {
		return fmt.Sprintf("--trusted-proxies: %v", err)
	}
	return ""
}

func (c *Config) checkICE() string {
	switch {
	case c.ICEUDPPort < 0 || c.ICEUDPPort > 65535:
		return fmt.Sprintf("--ice-udp-port %d is not a port", c.ICEUDPPort)
	case c.ICETCPPort < -1 || c.ICETCPPort > 65535:
		return fmt.Sprintf("--ice-tcp-port %d is not a port (-1 disables ICE-TCP)", c.ICETCPPort)
	case c.ICEBind != "" && c.ICEBind != ICEBindAuto && net.ParseIP(c.ICEBind) == nil:
		return fmt.Sprintf("--ice-bind %q is neither an IP address nor %q", c.ICEBind, ICEBindAuto)
	}
	if c.ICEPortRange != "" {
		if _, _, err := c.PortRange(); err != nil {
			return fmt.Sprintf("--ice-port-range: %v", err)
		}
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Sprintf("--public-ip %q is not an IP address", ip)
		}
	}
	for _, u := range slices.Concat(c.STUNURLs, c.TURNURLs) {
		if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") && !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			return fmt.Sprintf("ICE server URL %q must start with stun:, stuns:, turn: or turns:", u)
		}
	}
	switch {
	case len(c.TURNURLs) > 0 && len(c.TURNSecret) == 0:
		return "--turn-url needs --turn-secret-file"
	case len(c.TURNURLs) > 0 && c.TURNTTL < time.Second:
		return fmt.Sprintf("--turn-ttl %s is shorter than a second", c.TURNTTL)
	}
	return ""
}

func (c *Config) checkAuth() string {
	switch {
	case len(c.JWTSecret) > 0 && c.JWTIssuer == "":
		return "--jwt-issuer must name the tokens' issuer"
	case !c.AllowAnonymous && len(c.JWTSecret) == 0:
		return "without --allow-anonymous a --jwt-secret-file is required"
	}
	return ""
}

func (c *Config) checkLimits() string {
	switch {
	case c.MaxRooms < 0 || c.MaxParticipants < 0 || c.MaxTracks < 0 || c.MaxPerIdentity < 0:
		return "limits must not be negative"
	case c.MaxConns < 0 || c.MaxConnsPerIP < 0 || c.MaxWebSockets < 0 || c.MaxWebSocketsPerIP < 0:
		return "connection limits must not be negative"
	case c.RateLimit <= 0 || c.RateBurst <= 0:
		return "rate limit and burst must be positive"
	case c.DataRate <= 0 || c.DataBurst <= 0:
		return "--data-rate and --data-burst must be positive"
	case c.ResumeWindow < 0:
		return "--resume-window must not be negative"
	}
	return ""
}

// trusted parses TrustedProxies.
func (c *Config) trusted() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// PortRange parses ICEPortRange.
func (c *Config) PortRange() (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(c.ICEPortRange, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not min-max", c.ICEPortRange)
	}
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || x == 0 || x > y {
		return 0, 0, fmt.Errorf("%q is not min-max with 1 <= min <= max <= 65535", c.ICEPortRange)
	}
	return uint16(x), uint16(y), nil
}
