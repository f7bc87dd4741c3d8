// Command sfu runs the selective forwarding unit: WebSocket signalling,
// WebRTC forwarding, /health, /metrics and the demo page.
//
//	sfu [flags]            serve (every flag also reads SFU_<FLAG> from the environment)
//	sfu healthcheck [url]  exit 0 if /health answers 200 (for the image's HEALTHCHECK)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jbcalling/platform/internal/flagenv"
	"github.com/jbcalling/platform/internal/secretfile"

	"github.com/jbcalling/platform/sfu/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(os.Args[2:], os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sfu:", err)
		os.Exit(1)
	}
}

// listFlag is a repeatable, comma-separated flag. Values from the
// environment are replaced, not extended, by the first flag.
type listFlag struct {
	vals    []string
	fromEnv bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Set(v string) error {
	if l.fromEnv {
		l.vals, l.fromEnv = nil, false
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l.vals = append(l.vals, s)
		}
	}
	return nil
}

type options struct {
	cfg                       server.Config
	publicIPs, stun, turn     listFlag
	trusted                   listFlag
	turnSecretFile, jwtSecret string
	logLevel                  string
}

func parse(args []string, getenv func(string) string, out io.Writer) (*options, error) {
	o := &options{cfg: server.Defaults()}
	c := &o.cfg
	fs := flag.NewFlagSet("sfu", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Listen, "listen", c.Listen, "plain HTTP address: demo page, /ws, /health, /metrics, /client/ (empty disables)")
	fs.StringVar(&c.TLSListen, "tls-listen", c.TLSListen, "HTTPS address, e.g. :8443 (needs --tls-cert and --tls-key)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate chain, PEM file")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS private key, PEM file")
	fs.StringVar(&c.MetricsListen, "metrics-listen", c.MetricsListen, "serve /metrics only on this address, e.g. :9090 on an internal network (empty: beside /health on the public listeners)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "TCP connections per listener (0: unlimited)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "TCP connections per listener from one client address (0: unlimited)")
	fs.IntVar(&c.MaxWebSockets, "max-websockets", c.MaxWebSockets, "signalling WebSockets (0: unlimited)")
	fs.IntVar(&c.MaxWebSocketsPerIP, "max-websockets-per-ip", c.MaxWebSocketsPerIP, "signalling WebSockets from one client address (0: unlimited)")
	fs.Var(&o.trusted, "trusted-proxies", "CIDRs of proxies whose X-Forwarded-For names the client (Cloudflare's, the overlay network's); repeatable or comma-separated")
	fs.IntVar(&c.ICEUDPPort, "ice-udp-port", c.ICEUDPPort, "single UDP port all WebRTC media shares (ICE UDP mux)")
	fs.IntVar(&c.ICETCPPort, "ice-tcp-port", c.ICETCPPort, "ICE-TCP port for clients whose networks block UDP (-1 disables)")
	fs.StringVar(&c.ICEPortRange, "ice-port-range", c.ICEPortRange, "min-max ephemeral UDP ports instead of the single-port mux, e.g. 40000-40100")
	fs.StringVar(&c.ICEBind, "ice-bind", c.ICEBind, "IP address the ICE sockets bind and gather on (empty: all interfaces; \"auto\": the default route's interface, as in a container with host-mode ports)")
	fs.BoolVar(&c.FastPaths, "fast-paths", c.FastPaths, "let the SFU's own receive and send paths carry media on the single UDP port (with --ice-bind); false: pion reads and writes every packet")
	fs.Var(&o.publicIPs, "public-ip", "public IP address(es) to announce instead of local ones (repeatable or comma-separated; e.g. the VM's external IP)")
	fs.Var(&o.stun, "stun", "STUN server URL(s) for clients (and for the server itself when no --public-ip is set), e.g. stun:stun.example.org:3478")
	fs.Var(&o.turn, "turn-url", "TURN server URL(s) given to clients with time-limited credentials, e.g. turn:turn.example.org:3478")
	fs.StringVar(&o.turnSecretFile, "turn-secret-file", "", "file holding the TURN REST shared secret (coturn static-auth-secret)")
	fs.DurationVar(&c.TURNTTL, "turn-ttl", c.TURNTTL, "lifetime of TURN credentials; the server renews them every half lifetime while a session lasts")
	fs.StringVar(&o.jwtSecret, "jwt-secret-file", "", "file holding the HS256 secret that signs join tokens")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", c.JWTIssuer, "the iss claim join tokens must carry (their aud must be \"sfu\", their exp at most 24h ahead)")
	fs.BoolVar(&c.AllowAnonymous, "allow-anonymous", c.AllowAnonymous, "admit joins without a token (local default; the stack sets false)")
	fs.IntVar(&c.MaxRooms, "max-rooms", c.MaxRooms, "maximum rooms (0: unlimited)")
	fs.IntVar(&c.MaxParticipants, "max-participants", c.MaxParticipants, "maximum participants per room (0: unlimited)")
	fs.IntVar(&c.MaxTracks, "max-tracks", c.MaxTracks, "maximum published tracks per participant (0: unlimited)")
	fs.IntVar(&c.MaxPerIdentity, "max-per-identity", c.MaxPerIdentity, "maximum participants one token subject has in a room (0: unlimited)")
	fs.DurationVar(&c.JoinTimeout, "join-timeout", c.JoinTimeout, "time a new WebSocket has to send join")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", c.HTTPIdleTimeout, "close an HTTP keep-alive connection idle this long between requests")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "close a signalling connection that answers no ping for this long")
	fs.DurationVar(&c.ICETimeout, "ice-timeout", c.ICETimeout, "end a participant whose peer connection is not connected this long after negotiating")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on SIGTERM, time clients get to leave before they are disconnected")
	fs.Float64Var(&c.RateLimit, "rate-limit", c.RateLimit, "signalling messages per second per connection")
	fs.IntVar(&c.RateBurst, "rate-burst", c.RateBurst, "signalling message burst per connection")
	fs.Float64Var(&c.DataRate, "data-rate", c.DataRate, "data (chat) messages per second per participant")
	fs.IntVar(&c.DataBurst, "data-burst", c.DataBurst, "data (chat) message burst per participant")
	fs.DurationVar(&c.ResumeWindow, "resume-window", c.ResumeWindow, "how long a participant whose WebSocket dropped stays, media flowing, for the client to resume it (0: end it at once)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: sfu [flags]\n       sfu healthcheck [http://127.0.0.1:8080/health]\n\n"+
			"Every flag can also be set by an environment variable: SFU_ and the flag name in capitals\n"+
			"with - as _ (e.g. SFU_LISTEN, SFU_PUBLIC_IP). Flags win over the environment.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Environment first, so explicit flags override it.
	if err := flagenv.Apply(fs, "SFU_", getenv); err != nil {
		return nil, err
	}
	for _, l := range []*listFlag{&o.publicIPs, &o.stun, &o.turn, &o.trusted} {
		l.fromEnv = len(l.vals) > 0
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.PublicIPs, c.STUNURLs, c.TURNURLs, c.TrustedProxies = o.publicIPs.vals, o.stun.vals, o.turn.vals, o.trusted.vals
	var err error
	if o.turnSecretFile != "" {
		if c.TURNSecret, err = secretfile.Read(o.turnSecretFile); err != nil {
			return nil, fmt.Errorf("--turn-secret-file: %w", err)
		}
	}
	if o.jwtSecret != "" {
		if c.JWTSecret, err = secretfile.Read(o.jwtSecret); err != nil {
			return nil, fmt.Errorf("--jwt-secret-file: %w", err)
		}
	}
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	o, err := parse(args, getenv, out)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	o.cfg.Logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	s, err := server.New(o.cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func healthcheck(args []string, out io.Writer) int {
	url := healthURL(os.Getenv("SFU_LISTEN"))
	if len(args) > 0 {
		url = args[0]
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(out, "healthcheck:", url, "answered", strconv.Itoa(resp.StatusCode))
		return 1
	}
	return 0
}

// healthURL is where the server listening on listen (SFU_LISTEN) answers
// from inside its own container: wildcard addresses mean loopback.
func healthURL(listen string) string {
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen + "/health"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/health"
}
