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
	type session struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	sessions := map[string]*session{}
	var wg sync.WaitGroup
	defer func() {
		for _, s := range sessions {
			s.cancel()
		}
		wg.Wait()
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		needs, err := cfg.Rooms.Needs(ctx)
		if cfg.Listed != nil && ctx.Err() == nil {
			cfg.Listed(err)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("listing rooms", "err", err)
		}
		for name, s := range sessions {
			select {
			case <-s.done:
				delete(sessions, name)
			default:
			}
		}
		if err == nil {
			wanted := map[string]bool{}
			for _, n := range needs {
				wanted[n.Room] = true
				if sessions[n.Room] != nil || n.Agents > 0 {
					continue
				}
				token, err := cfg.Token(n.Room)
				if err != nil {
					return err
				}
				sc := cfg.Session
				sc.Room, sc.Token = n.Room, token
				sctx, cancel := context.WithCancel(ctx)
				s := &session{cancel: cancel, done: make(chan struct{})}
				sessions[n.Room] = s
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer close(s.done)
					if err := Run(sctx, sc); err != nil && sctx.Err() == nil {
						log.Warn("session ended", "room", sc.Room, "err", err)
					}
				}()
			}
			for name, s := range sessions {
				if !wanted[name] {
					log.Info("nobody wants translation any more: leaving", "room", name)
					s.cancel()
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
