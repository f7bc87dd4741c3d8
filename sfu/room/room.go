// Package room holds rooms and their participants: each participant's
// publisher and subscriber peer connections, the tracks it publishes (each
// with a forward.Forwarder) and its subscriptions to everyone else's.
//
// Locking: Manager.mu, then Room.mu, each held briefly and never while
// calling pion or sending; a participant's negMu serializes its subscriber
// negotiation and subMu its subscription table.
package room

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath"
	"github.com/jbcalling/platform/sfu/forward"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
)

// Sentinel errors.
var (
	ErrRoomFull = errors.New("room: room is full")
	// ErrIdentityLimit: the token's identity has MaxPerIdentity
	// participants in the room already.
	ErrIdentityLimit = errors.New("room: too many participants with this identity")
	ErrTooManyRooms  = errors.New("room: too many rooms")
	ErrDraining      = errors.New("room: server is draining")
	ErrClosed        = errors.New("room: participant closed")
)

// Config configures a Manager.
type Config struct {
	// API makes the peer connections (codecs, ICE muxes) when
	// PublisherAPI or SubscriberAPI do not.
	API *webrtc.API
	// PublisherAPI makes one publisher peer connection's API and its
	// receive path, which decides once media flows whether the fast
	// path or pion reads it. Publisher connections have no pion
	// interceptors: the SFU sends NACKs, receiver reports and
	// transport-cc feedback itself (package feedback). Nil: API, and
	// pion reads.
	PublisherAPI func() (*webrtc.API, *fastpath.Publisher)
	// SubscriberAPI makes one subscriber peer connection's API (the same
	// codecs and muxes but no interceptors, since the forwarder answers
	// NACKs and sends sender reports itself) and its send path, which
	// decides once connected whether the direct path or pion writes. Nil:
	// API, and pion writes.
	SubscriberAPI func() (*webrtc.API, *fastpath.Subscriber)
	// ICEServers for the server's own peer connections (STUN to learn a
	// reflexive address); usually empty when the public IP is announced.
	ICEServers []webrtc.ICEServer
	// Limits; 0 means unlimited. MaxPerIdentity bounds the participants
	// one identity (a token's subject) has in one room, so that one token
	// cannot fill a room; anonymous joins have no identity and no bound.
	MaxRooms, MaxParticipants, MaxTracks, MaxPerIdentity int
	// ICETimeout bounds the time from a negotiation to a connected peer
	// connection; 0 means 30 s.
	ICETimeout time.Duration
	// KeyframeInterval throttles PLIs to a publisher; 0 means 500 ms.
	KeyframeInterval time.Duration
	Logger           *slog.Logger
	// Counters, if set, collect forwarding totals.
	Counters *Counters
}

// SenderReportInterval is how often subscribers get RTCP sender reports
// (pion's report interceptor used the same).
const SenderReportInterval = time.Second

// Counters are totals for the metrics.
type Counters struct {
	Forward       forward.Counters
	NACKs         atomic.Uint64 // NACK packets received from subscribers
	PLIs          atomic.Uint64 // PLI/FIR packets received from subscribers
	ICEFailures   atomic.Uint64
	TracksCurrent atomic.Int64
	// ICE restarts the server started (a connection dropped) and the
	// clients asked for.
	ServerICERestarts, ClientICERestarts atomic.Uint64
	// PausedLayers: simulcast subscriptions that receive no layer now
	// (asked so, or too little bandwidth).
	PausedLayers atomic.Int64
	// Probes of subscribers' links sent, and those that passed; cuts of
	// an estimate for a queue or loss the transport-cc feedback showed.
	Probes, ProbesPassed, CongestionCuts atomic.Uint64
	// ObserveEstimate, if set, sees each subscriber's bandwidth estimate
	// (bits/s) at each allocation of its simulcast layers.
	ObserveEstimate func(float64)
}

// Manager owns all rooms.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	rooms    map[string]*Room
	byID     map[string]*Participant
	draining bool
	wg       sync.WaitGroup // participant goroutines
	reports  reporter
	speakers speakers
}

// NewManager returns an empty Manager.
func NewManager(cfg Config) *Manager {
	if cfg.ICETimeout == 0 {
		cfg.ICETimeout = 30 * time.Second
	}
	if cfg.Counters == nil {
		cfg.Counters = &Counters{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log, rooms: map[string]*Room{}, byID: map[string]*Participant{}}
}

// Counters are the manager's totals.
func (m *Manager) Counters() *Counters { return m.cfg.Counters }

// Stats counts rooms and participants.
func (m *Manager) Stats() (rooms, participants int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rooms {
		r.mu.Lock()
		participants += len(r.participants)
		r.mu.Unlock()
	}
	return len(m.rooms), participants
}

// Drain refuses further joins.
func (m *Manager) Drain() {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
}

// participants is everyone in every room now, taken under m.mu so that
// the caller can close them without it.
func (m *Manager) participants() []*Participant {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.byID))
}

// Wait blocks until every participant's goroutines ended.
func (m *Manager) Wait() { m.wg.Wait() }

// Sink receives messages for one client. It must not block (the server
// queues them).
type Sink func(signal.Message)

// JoinRequest describes a participant to admit.
type JoinRequest struct {
	Room     string
	Name     string
	Identity string
	// Agent: the token says this is an agent (captions are its alone).
	Agent                 bool
	Language, TranslateTo string
	Sink                  Sink
	// OnReplaced ends the signalling connection when another takes the
	// participant over (Resume).
	OnReplaced func()
	// Welcome makes the first message the participant gets (the joined
	// reply); it is sent before any other.
	Welcome func(Welcome) signal.Message
	// OnClose is called (once, from its own goroutine) when the
	// participant ends for a reason other than Close: ICE failure or
	// timeout.
	OnClose func(reason error)
}

// Join admits a participant and returns it with the others already in the
// room. The new participant is then subscribed to their tracks.
func (m *Manager) Join(req JoinRequest) (*Participant, []signal.Participant, error) {
	id := newID()
	p := &Participant{
		id: id, name: req.Name, identity: req.Identity, sink: req.Sink, onClose: req.OnClose,
		agent: req.Agent, language: req.Language, translateTo: req.TranslateTo,
		onReplaced: req.OnReplaced, gen: 1, resumeToken: newResumeToken(),
		m: m, log: m.log.With("participant", id), tracks: map[string]*publishedTrack{},
		subs: map[subKey]*subscription{}, closed: make(chan struct{}),
	}
	if err := p.setup(); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		p.closePeerConnections()
		return nil, nil, ErrDraining
	}
	r := m.rooms[req.Room]
	if r == nil {
		if m.cfg.MaxRooms > 0 && len(m.rooms) >= m.cfg.MaxRooms {
			m.mu.Unlock()
			p.closePeerConnections()
			return nil, nil, ErrTooManyRooms
		}
		r = &Room{name: req.Room, participants: map[string]*Participant{}}
		m.rooms[req.Room] = r
	}
	r.mu.Lock()
	if m.cfg.MaxParticipants > 0 && len(r.participants) >= m.cfg.MaxParticipants {
		r.mu.Unlock()
		m.mu.Unlock()
		p.closePeerConnections()
		return nil, nil, ErrRoomFull
	}
	if req.Identity != "" && m.cfg.MaxPerIdentity > 0 && r.countIdentityLocked(req.Identity) >= m.cfg.MaxPerIdentity {
		r.mu.Unlock()
		m.mu.Unlock()
		p.closePeerConnections()
		return nil, nil, ErrIdentityLimit
	}
	others := r.snapshotLocked()
	var existing []*publishedTrack
	for _, o := range r.participants {
		for _, t := range o.publishedLocked() {
			if r.wantsLocked(p, t) {
				existing = append(existing, t)
			}
		}
	}
	r.participants[id] = p
	m.byID[id] = p
	p.room = r
	m.wg.Add(1) // done when p closes
	infos := make([]signal.Participant, 0, len(others))
	for _, o := range others {
		infos = append(infos, o.info)
	}
	if req.Welcome != nil {
		// Under the room lock: nothing can reach p before its welcome.
		p.sink(req.Welcome(Welcome{ID: id, Room: r.name, Others: infos, ResumeToken: p.resumeToken}))
	}
	r.mu.Unlock()
	m.mu.Unlock()

	info := p.info()
	for _, o := range others {
		o.p.send(&signal.ParticipantJoined{Participant: info})
	}
	p.subscribeAll(existing)
	// The subscriber connection is offered now, with the room's data
	// channel if there is no track yet: a participant that never
	// connects it is ended within the ICE timeout of joining.
	p.negotiate()
	p.armJoinTimer()
	return p, infos, nil
}

// countIdentityLocked is how many participants identity has; r.mu held.
func (r *Room) countIdentityLocked(identity string) int {
	n := 0
	for _, p := range r.participants {
		if p.identity == identity {
			n++
		}
	}
	return n
}

// Room is a set of participants who receive each other's tracks.
type Room struct {
	name         string
	mu           sync.Mutex
	participants map[string]*Participant
}

type member struct {
	p    *Participant
	info signal.Participant
}

func (r *Room) snapshotLocked() []member {
	out := make([]member, 0, len(r.participants))
	for _, p := range r.participants {
		out = append(out, member{p: p, info: p.infoLocked()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].p.joined.Before(out[j].p.joined) })
	return out
}

// othersLocked lists the participants other than p.
func (r *Room) othersLocked(p *Participant) []*Participant {
	out := make([]*Participant, 0, len(r.participants))
	for _, o := range r.participants {
		if o != p {
			out = append(out, o)
		}
	}
	return out
}

func (r *Room) others(p *Participant) []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.othersLocked(p)
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "p-" + hex.EncodeToString(b[:])
}
