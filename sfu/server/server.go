package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/sfu/auth"
	"github.com/jbcalling/platform/sfu/fastpath"
	"github.com/jbcalling/platform/sfu/room"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/jbcalling/platform/sfu/web"
	"github.com/pion/webrtc/v4"
)

// Server is one SFU process: rooms, signalling sessions and HTTP.
type Server struct {
	cfg      Config
	log      *slog.Logger
	rooms    *room.Manager
	verifier *auth.Verifier
	socks    *iceSockets
	metrics  *metrics
	started  time.Time
	web      http.Handler
	trusted  []netip.Prefix
	sockets  *counter // signalling WebSockets

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool
	wg       sync.WaitGroup // sessions
}

// New validates cfg, opens the ICE sockets and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	apis, err := newAPIs(&cfg, log)
	if err != nil {
		return nil, err
	}
	var iceServers []webrtc.ICEServer
	// With an announced public IP the server's own STUN lookups add
	// nothing (and cost a DNS lookup per peer connection).
	if len(cfg.STUNURLs) > 0 && len(cfg.PublicIPs) == 0 {
		iceServers = append(iceServers, webrtc.ICEServer{URLs: cfg.STUNURLs})
	}
	counters := &room.Counters{}
	s := &Server{
		cfg: cfg, log: log, socks: apis.socks, started: time.Now(),
		verifier: auth.NewVerifier(cfg.JWTSecret, cfg.JWTIssuer, cfg.AllowAnonymous),
		sessions: map[*session]struct{}{},
		rooms: room.NewManager(room.Config{
			API: apis.shared, PublisherAPI: apis.NewPublisher, SubscriberAPI: apis.NewSubscriber, ICEServers: iceServers, MaxRooms: cfg.MaxRooms, MaxParticipants: cfg.MaxParticipants,
			MaxTracks: cfg.MaxTracks, MaxPerIdentity: cfg.MaxPerIdentity, ICETimeout: cfg.ICETimeout, Logger: log, Counters: counters,
		}),
	}
	s.trusted, _ = cfg.trusted() // validated
	s.sockets = newCounter(cfg.MaxWebSockets, cfg.MaxWebSocketsPerIP)
	s.metrics = newMetrics(s)
	files := cfg.Web
	if files == nil {
		files = web.Files
	}
	s.web = http.FileServer(http.FS(staticOnly{files}))
	if cfg.AllowAnonymous {
		log.Warn("anonymous joins are allowed (--allow-anonymous): anyone who can reach the server can join any room")
	}
	return s, nil
}

// ICEUDPAddr is the UDP mux's address (nil without a single-address mux).
func (s *Server) ICEUDPAddr() net.Addr { return s.socks.UDPAddr() }

// Rooms exposes the room manager (tests and metrics).
func (s *Server) Rooms() *room.Manager { return s.rooms }

// Paths counts connections by media path (tests and metrics).
func (s *Server) Paths() *fastpath.Counters { return &s.socks.port.Counters }

// Handler serves /ws, /health, /agent/rooms, /client/, the demo at /, and /metrics
// unless MetricsListen serves it apart.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	mux.HandleFunc("GET /health", s.serveHealth)
	mux.HandleFunc("GET "+signal.AgentRoomsPath, s.serveAgentRooms)
	if s.cfg.MetricsListen == "" {
		mux.Handle("GET /metrics", s.metrics.handler())
	}
	// The client module is public and token-free, so any origin (the real
	// frontend) may import it; module scripts need CORS for that.
	mux.Handle("GET /client/", http.StripPrefix("/client", allowAnyOrigin(typeScriptDeclarations(s.web))))
	mux.Handle("GET /", s.web)
	return mux
}

// Health is the /health body.
type Health struct {
	Status        string  `json:"status"` // "ok" or "draining"
	Rooms         int     `json:"rooms"`
	Participants  int     `json:"participants"`
	UptimeSeconds float64 `json:"uptimeSeconds"`
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	rooms, participants := s.rooms.Stats()
	h := Health{Status: "ok", Rooms: rooms, Participants: participants, UptimeSeconds: time.Since(s.started).Seconds()}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if s.isDraining() {
		h.Status = "draining"
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// ConfigureHTTP sets the limits every HTTP server of the SFU has: idle
// keep-alive connections close, headers are bounded, errors go to the log
// at debug level (clients' broken TLS handshakes are routine).
func (s *Server) ConfigureHTTP(hs *http.Server) {
	hs.ReadHeaderTimeout = 10 * time.Second
	hs.IdleTimeout = s.cfg.HTTPIdleTimeout
	hs.MaxHeaderBytes = httpMaxHeaderBytes
	hs.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
}

// LimitListener bounds l's connections in all and per client address
// (MaxConns, MaxConnsPerIP); a connection over the limits is closed once
// accepted.
func (s *Server) LimitListener(l net.Listener) net.Listener {
	return &limitListener{Listener: l, c: newCounter(s.cfg.MaxConns, s.cfg.MaxConnsPerIP), trusted: s.trusted,
		refused: s.metrics.connsRefused.Inc}
}

// Run serves HTTP (and HTTPS, and the metrics listener) until ctx is
// done, then drains.
func (s *Server) Run(ctx context.Context) error {
	var servers []*http.Server
	errc := make(chan error, 3)
	start := func(addr string, tlsOn bool, h http.Handler) error {
		hs := &http.Server{Addr: addr, Handler: h}
		s.ConfigureHTTP(hs)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		l = s.LimitListener(l)
		servers = append(servers, hs)
		go func() {
			var err error
			if tlsOn {
				hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				err = hs.ServeTLS(l, s.cfg.TLSCert, s.cfg.TLSKey)
			} else {
				err = hs.Serve(l)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		s.log.Info("listening", "addr", l.Addr().String(), "tls", tlsOn)
		return nil
	}
	if s.cfg.Listen != "" {
		if err := start(s.cfg.Listen, false, s.Handler()); err != nil {
			return err
		}
	}
	if s.cfg.MetricsListen != "" {
		if err := start(s.cfg.MetricsListen, false, s.MetricsHandler()); err != nil {
			return err
		}
	}
	if s.cfg.TLSListen != "" {
		if _, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey); err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		if err := start(s.cfg.TLSListen, true, s.Handler()); err != nil {
			return err
		}
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	s.Drain(dctx)
	for _, hs := range servers {
		_ = hs.Shutdown(dctx)
	}
	s.Close()
	return runErr
}

// Drain stops accepting joins, tells every client, and waits until they
// left or ctx ends; then it closes the remaining sessions.
func (s *Server) Drain(ctx context.Context) {
	s.mu.Lock()
	s.draining = true
	list := make([]*session, 0, len(s.sessions))
	for se := range s.sessions {
		list = append(list, se)
	}
	s.mu.Unlock()
	s.rooms.Drain()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now()
	}
	s.log.Info("draining", "sessions", len(list), "deadline", deadline)
	for _, se := range list {
		se.drain(deadline)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for se := range s.sessions {
			// No close handshake: a client that ignored draining gets no
			// more time than the deadline.
			se.end(websocket.StatusGoingAway, "server shutting down")
			se.conn.CloseNow()
		}
		s.mu.Unlock()
		<-done
	}
	// Those waiting for a resume have no session to end: they leave now.
	s.rooms.CloseDetached()
	s.rooms.Wait()
}

// MetricsHandler serves /metrics alone (the MetricsListen listener).
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.handler())
	return mux
}

// Close releases the ICE sockets. Call after Drain.
func (s *Server) Close() { s.socks.Close() }

func allowAnyOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h.ServeHTTP(w, r)
	})
}

// typeScriptDeclarations serves .d.ts files as TypeScript (by extension
// alone, .ts would be an MPEG transport stream).
func typeScriptDeclarations(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".d.ts") {
			w.Header().Set("Content-Type", "application/typescript; charset=utf-8")
		}
		h.ServeHTTP(w, r)
	})
}

// staticOnly hides the Go sources that share the embedded directory.
type staticOnly struct{ fs.FS }

func (f staticOnly) Open(name string) (fs.File, error) {
	if name == "." {
		return f.FS.Open(name) // the directory, for index.html
	}
	switch path.Ext(name) {
	case ".html", ".js", ".mjs", ".css", ".svg", ".png", ".ico", ".json", ".map", ".txt", ".ts":
		return f.FS.Open(name)
	}
	return nil, fs.ErrNotExist
}
