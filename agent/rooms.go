package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jbcalling/platform/sfu/signal"
)

// Lister says which rooms want translation now.
type Lister interface {
	Needs(ctx context.Context) ([]signal.RoomNeed, error)
}

// Fixed is one room, always wanted: the agent captions it whoever is in it.
type Fixed string

// Needs lists the room.
func (f Fixed) Needs(context.Context) ([]signal.RoomNeed, error) {
	return []signal.RoomNeed{{Room: string(f)}}, nil
}

// SFURooms asks the SFU's agent listing (signal.AgentRoomsPath) with an
// agent token for every room.
type SFURooms struct {
	URL    string // e.g. http://sfu:8080/agent/rooms
	Token  func() (string, error)
	Client *http.Client // nil: a client with a 5 s timeout
}

// ErrListing: the SFU did not list its rooms.
var ErrListing = errors.New("agent: listing rooms")

// Needs asks the SFU.
func (s SFURooms) Needs(ctx context.Context) ([]signal.RoomNeed, error) {
	token, err := s.Token()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrListing, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	hc := s.Client
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrListing, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%w: %s answered %s: %s", ErrListing, s.URL, resp.Status, msg)
	}
	var body signal.AgentRooms
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrListing, s.URL, err)
	}
	return body.Rooms, nil
}

// ServeConfig says how Serve finds rooms and joins them.
type ServeConfig struct {
	// Session is the template of each room's session; Serve sets Room
	// and Token.
	Session Config
	Rooms   Lister
	// Token signs a join token for a room.
	Token func(room string) (string, error)
	// Every is how often the rooms are listed; 0 means 2 s.
	Every time.Duration
	// Listed, if set, hears the outcome of every listing (health).
	Listed func(error)
}

// Serve keeps one session in each room that wants translation and no
// other agent, until ctx ends. A session that ends (the SFU restarted,
// the network dropped) is joined again at a later listing if the room
// still wants it; a room that stops wanting it is left.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Rooms == nil || cfg.Token == nil {
		return fmt.Errorf("%w: Rooms and Token are required", ErrConfig)
	}
	every := cfg.Every
	if every <= 0 {
		every = 2 * time.Second
	}
	log := cfg.Session.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ss := &sessions{cfg: cfg, log: log, running: map[string]*session{}}
	defer ss.stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		needs, err := cfg.Rooms.Needs(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if cfg.Listed != nil {
			cfg.Listed(err)
		}
		ss.reap()
		if err != nil {
			log.Warn("listing rooms", "err", err)
		} else if err := ss.follow(ctx, needs); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// sessions are Serve's sessions, by room; only Serve's goroutine uses it.
type sessions struct {
	cfg     ServeConfig
	log     *slog.Logger
	running map[string]*session
	wg      sync.WaitGroup
}

type session struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// reap forgets the sessions that ended, so their rooms can be joined again.
func (ss *sessions) reap() {
	for room, s := range ss.running {
		select {
		case <-s.done:
			delete(ss.running, room)
		default:
		}
	}
}

// follow joins the listed rooms that have neither an agent nor a session
// of ours, and leaves the rooms no longer listed.
func (ss *sessions) follow(ctx context.Context, needs []signal.RoomNeed) error {
	wanted := map[string]bool{}
	for _, n := range needs {
		wanted[n.Room] = true
		if ss.running[n.Room] == nil && n.Agents == 0 {
			if err := ss.start(ctx, n.Room); err != nil {
				return err
			}
		}
	}
	for room, s := range ss.running {
		if !wanted[room] {
			ss.log.Info("nobody wants translation any more: leaving", "room", room)
			s.cancel()
		}
	}
	return nil
}

func (ss *sessions) start(ctx context.Context, room string) error {
	token, err := ss.cfg.Token(room)
	if err != nil {
		return err
	}
	sc := ss.cfg.Session
	sc.Room, sc.Token = room, token
	sctx, cancel := context.WithCancel(ctx)
	s := &session{cancel: cancel, done: make(chan struct{})}
	ss.running[room] = s
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		defer close(s.done)
		if err := Run(sctx, sc); err != nil && sctx.Err() == nil {
			ss.log.Warn("session ended", "room", room, "err", err)
		}
	}()
	return nil
}

// stop ends every session and waits for them.
func (ss *sessions) stop() {
	for _, s := range ss.running {
		s.cancel()
	}
	ss.wg.Wait()
}
