// Package client is a pion-based SFU participant: it joins a room over the
// signalling WebSocket (sfu/PROTOCOL.md), publishes local tracks on its
// publisher peer connection and receives everyone else's tracks on its
// subscriber peer connection. Tests, the load tool and the smoke tests use
// it as a headless browser.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Sentinel errors.
var (
	ErrClosed     = errors.New("client: closed")
	ErrNotJoined  = errors.New("client: join failed")
	ErrNoAnswer   = errors.New("client: no answer to publish offer")
	ErrBadMessage = errors.New("client: unexpected message from server")
)

// Options configure Dial.
type Options struct {
	Room  string
	Name  string
	Token string // JWT; empty for a server that allows anonymous joins

	// SettingEngine restricts pion (interfaces, IP filter, network types,
	// ports). Nil means pion's defaults.
	SettingEngine *webrtc.SettingEngine
	// Configure replaces the default codecs and interceptors (pion's
	// defaults: Opus, VP8, VP9, H264, NACK, reports, TWCC) when set, e.g.
	// for a load tool that wants fewer interceptors per participant.
	Configure func(*webrtc.MediaEngine, *interceptor.Registry) error
	// ICEServers replaces the servers from the join reply when non-nil
	// (an empty non-nil slice means none).
	ICEServers []webrtc.ICEServer
	// HTTPHeader is sent with the WebSocket handshake.
	HTTPHeader http.Header
	// Logger receives debug information; nil discards it.
	Logger *slog.Logger

	// OnTrack is called, from its own goroutine, for every remote track.
	// The callee must read the track (RemoteTrack.Track.ReadRTP) until it
	// returns an error, or the receiver's buffers fill up.
	OnTrack func(*RemoteTrack)
	// OnEvent receives the server's room notifications (*signal.ParticipantJoined,
	// *signal.ParticipantLeft, *signal.TrackPublished, *signal.TrackUnpublished,
	// *signal.Mute, *signal.Draining, *signal.Error). It is called from the
	// signalling reader; it must not block.
	OnEvent func(signal.Message)
	// OnRTCP receives RTCP the SFU sends about a published track (PLI, FIR,
	// NACK, receiver reports), keyed by the local track's id. Called from
	// that track's RTCP reader goroutine.
	OnRTCP func(trackID string, pkts []rtcp.Packet)
}

// RemoteTrack is another participant's track as received from the SFU.
type RemoteTrack struct {
	ParticipantID string // the publisher
	TrackID       string
	Kind          webrtc.RTPCodecType
	Track         *webrtc.TrackRemote
	Receiver      *webrtc.RTPReceiver
}

// Client is one participant. Its methods are safe for concurrent use.
type Client struct {
	opts   Options
	log    *slog.Logger
	conn   *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc

	id           string
	room         string
	participants []signal.Participant

	api *webrtc.API
	pub *webrtc.PeerConnection
	sub *webrtc.PeerConnection

	publishMu sync.Mutex // one publish negotiation at a time
	answers   chan *signal.Answer
	offerErrs chan *signal.Error // the server refused a publish offer

	mu       sync.Mutex
	pendPub  []webrtc.ICECandidateInit // candidates before remote description
	pendSub  []webrtc.ICECandidateInit
	closeErr error

	done chan struct{}
	wg   sync.WaitGroup
}

// Dial connects to the SFU's WebSocket URL (ws:// or wss://, path /ws),
// joins opts.Room and returns once the server accepted the join.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: opts.HTTPHeader})
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	conn.SetReadLimit(signal.MaxMessageSize)
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: opts, log: log, conn: conn, ctx: cctx, cancel: cancel,
		answers: make(chan *signal.Answer, 1), offerErrs: make(chan *signal.Error, 1),
		done: make(chan struct{}),
	}
	if err := c.join(ctx); err != nil {
		cancel()
		conn.Close(websocket.StatusNormalClosure, "join failed")
		return nil, err
	}
	if err := c.setupPeerConnections(); err != nil {
		c.shutdown(err)
		return nil, err
	}
	c.wg.Add(1)
	go c.readLoop()
	return c, nil
}

func (c *Client) join(ctx context.Context) error {
	if err := c.send(ctx, &signal.Join{Version: signal.Version, Room: c.opts.Room, Name: c.opts.Name, Token: c.opts.Token}); err != nil {
		return fmt.Errorf("client: join: %w", err)
	}
	for {
		m, err := c.read(ctx)
		if err != nil {
			return fmt.Errorf("client: join: %w", err)
		}
		switch m := m.(type) {
		case *signal.Joined:
			c.id, c.room, c.participants = m.ID, m.Room, m.Participants
			if c.opts.ICEServers == nil {
				for _, s := range m.ICEServers {
					c.opts.ICEServers = append(c.opts.ICEServers, webrtc.ICEServer{
						URLs: s.URLs, Username: s.Username, Credential: s.Credential,
					})
				}
			}
			return nil
		case *signal.Error:
			return fmt.Errorf("%w: %w", ErrNotJoined, m)
		case *signal.Ping, *signal.Pong:
		default:
			return fmt.Errorf("%w: %s before joined", ErrBadMessage, m.MessageType())
		}
	}
}

func (c *Client) setupPeerConnections() error {
	var se webrtc.SettingEngine
	if c.opts.SettingEngine != nil {
		se = *c.opts.SettingEngine
	}
	m := &webrtc.MediaEngine{}
	ir := &interceptor.Registry{}
	if c.opts.Configure != nil {
		if err := c.opts.Configure(m, ir); err != nil {
			return fmt.Errorf("client: configure: %w", err)
		}
	} else {
		if err := m.RegisterDefaultCodecs(); err != nil {
			return err
		}
		if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
			return err
		}
	}
	c.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	cfg := webrtc.Configuration{ICEServers: c.opts.ICEServers}
	var err error
	if c.pub, err = c.api.NewPeerConnection(cfg); err != nil {
		return fmt.Errorf("client: publisher peer connection: %w", err)
	}
	if c.sub, err = c.api.NewPeerConnection(cfg); err != nil {
		return fmt.Errorf("client: subscriber peer connection: %w", err)
	}
	for target, pc := range map[string]*webrtc.PeerConnection{signal.TargetPublisher: c.pub, signal.TargetSubscriber: c.sub} {
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			msg := &signal.Candidate{Target: target}
			if cand != nil {
				init := cand.ToJSON()
				msg.Candidate = &signal.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment}
			}
			if err := c.send(c.ctx, msg); err != nil {
				c.log.Debug("sending candidate", "err", err)
			}
		})
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			c.log.Debug("peer connection state", "target", target, "state", s)
		})
	}
	c.sub.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		rt := &RemoteTrack{ParticipantID: t.StreamID(), TrackID: t.ID(), Kind: t.Kind(), Track: t, Receiver: r}
		if c.opts.OnTrack != nil {
			c.opts.OnTrack(rt)
			return
		}
		// Nobody wants it: drain so pion's buffers and interceptors keep going.
		for {
			if _, _, err := t.ReadRTP(); err != nil {
				return
			}
		}
	})
	return nil
}

// ID is this participant's id, assigned by the server.
func (c *Client) ID() string { return c.id }

// Room is the joined room.
func (c *Client) Room() string { return c.room }

// Participants are the others that were in the room at join time.
func (c *Client) Participants() []signal.Participant { return c.participants }

// Done is closed when the session ended (Close, server close, error).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the session ended; nil while it runs or after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// Publisher is the publisher peer connection (for stats and tests).
func (c *Client) Publisher() *webrtc.PeerConnection { return c.pub }

// Subscriber is the subscriber peer connection (for stats and tests).
func (c *Client) Subscriber() *webrtc.PeerConnection { return c.sub }

// Publish adds tracks (e.g. webrtc.TrackLocalStaticRTP for Opus or VP8)
// to the publisher connection, negotiates with the SFU and returns their
// senders once the SFU answered. RTCP from the SFU about each track goes to
// Options.OnRTCP.
func (c *Client) Publish(ctx context.Context, tracks ...webrtc.TrackLocal) ([]*webrtc.RTPSender, error) {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	var senders []*webrtc.RTPSender
	for _, t := range tracks {
		tr, err := c.pub.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, fmt.Errorf("client: publish %s: %w", t.ID(), err)
		}
		s := tr.Sender()
		senders = append(senders, s)
		c.wg.Add(1)
		go c.readSenderRTCP(t.ID(), s)
	}
	if err := c.negotiatePublisher(ctx); err != nil {
		return nil, err
	}
	return senders, nil
}

// Unpublish stops sending a track published earlier and renegotiates.
func (c *Client) Unpublish(ctx context.Context, sender *webrtc.RTPSender) error {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	if err := c.pub.RemoveTrack(sender); err != nil {
		return fmt.Errorf("client: unpublish: %w", err)
	}
	return c.negotiatePublisher(ctx)
}

func (c *Client) negotiatePublisher(ctx context.Context) error {
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("client: publish offer: %w", err)
	}
	if err := c.pub.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("client: publish offer: %w", err)
	}
	// Drop a stale answer or refusal from an earlier, abandoned negotiation.
	select {
	case <-c.answers:
	default:
	}
	select {
	case <-c.offerErrs:
	default:
	}
	if err := c.send(ctx, &signal.Offer{Target: signal.TargetPublisher, SDP: offer.SDP}); err != nil {
		return fmt.Errorf("client: publish offer: %w", err)
	}
	select {
	case a := <-c.answers:
		if err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.SDP}); err != nil {
			return fmt.Errorf("client: publish answer: %w", err)
		}
		c.flushCandidates(signal.TargetPublisher)
		return nil
	case e := <-c.offerErrs:
		return fmt.Errorf("client: publish refused: %w", e)
	case <-c.done:
		return fmt.Errorf("%w: %w", ErrNoAnswer, c.endErr())
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNoAnswer, ctx.Err())
	}
}

func (c *Client) readSenderRTCP(trackID string, s *webrtc.RTPSender) {
	defer c.wg.Done()
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if c.opts.OnRTCP != nil {
			c.opts.OnRTCP(trackID, pkts)
		}
	}
}

// SetMuted tells the others that a published track is muted or unmuted,
// naming it by its publisher transceiver's mid, as the protocol asks. The
// caller stops or resumes writing media itself.
func (c *Client) SetMuted(ctx context.Context, trackID string, muted bool) error {
	for _, tr := range c.pub.GetTransceivers() {
		if s := tr.Sender(); s != nil && s.Track() != nil && s.Track().ID() == trackID && tr.Mid() != "" {
			return c.send(ctx, &signal.Mute{MID: tr.Mid(), Muted: muted})
		}
	}
	return fmt.Errorf("sfu client: no published track %q", trackID)
}

// RequestKeyframe sends a PLI for a remote track to the SFU, which
// forwards it (throttled) to the track's publisher.
func (c *Client) RequestKeyframe(t *RemoteTrack) error {
	return c.sub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.Track.SSRC())}})
}

// Send writes a raw signalling message; tests use it to misbehave.
func (c *Client) Send(ctx context.Context, m signal.Message) error { return c.send(ctx, m) }

// Leave sends leave and waits (bounded by ctx) for the server to close the
// connection, then releases everything.
func (c *Client) Leave(ctx context.Context) error {
	err := c.send(ctx, &signal.Leave{Room: c.room})
	if err == nil {
		select {
		case <-c.done:
		case <-ctx.Done():
		}
	}
	c.shutdown(nil)
	c.wg.Wait()
	return err
}

// Close ends the session without a leave message (like a closed tab) and
// releases every goroutine and connection.
func (c *Client) Close() error {
	c.shutdown(nil)
	c.wg.Wait()
	return nil
}

func (c *Client) endErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}

func (c *Client) shutdown(cause error) {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return
	default:
	}
	c.closeErr = cause
	close(c.done)
	c.mu.Unlock()
	c.cancel()
	c.conn.Close(websocket.StatusNormalClosure, "bye")
	if c.pub != nil {
		c.pub.Close()
	}
	if c.sub != nil {
		c.sub.Close()
	}
}

func (c *Client) send(ctx context.Context, m signal.Message) error {
	data, err := signal.Encode(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, data)
}

func (c *Client) read(ctx context.Context) (signal.Message, error) {
	_, data, err := c.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	return signal.Decode(data)
}

func (c *Client) readLoop() {
	defer c.wg.Done()
	for {
		m, err := c.read(c.ctx)
		if err != nil {
			if errors.Is(err, signal.ErrBadMessage) || errors.Is(err, signal.ErrUnknownType) {
				c.log.Warn("ignoring message", "err", err)
				continue
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.StatusNormalClosure || c.ctx.Err() != nil {
				err = nil
			}
			go c.shutdown(err) // not inline: shutdown waits for nothing, but Close may hold wg
			return
		}
		if err := c.handle(m); err != nil {
			c.log.Warn("handling message", "type", m.MessageType(), "err", err)
		}
	}
}

func (c *Client) handle(m signal.Message) error {
	switch m := m.(type) {
	case *signal.Answer:
		if m.Target != signal.TargetPublisher {
			return fmt.Errorf("%w: answer for %s", ErrBadMessage, m.Target)
		}
		select {
		case c.answers <- m:
		default:
		}
	case *signal.Offer:
		if m.Target != signal.TargetSubscriber {
			return fmt.Errorf("%w: offer for %s", ErrBadMessage, m.Target)
		}
		return c.answerSubscriber(m.SDP)
	case *signal.Candidate:
		return c.addCandidate(m)
	case *signal.Ping:
		return c.send(c.ctx, &signal.Pong{})
	case *signal.Pong:
	default:
		if e, ok := m.(*signal.Error); ok && e.Ref == signal.TypeOffer {
			select {
			case c.offerErrs <- e:
			default:
			}
		}
		if c.opts.OnEvent != nil {
			c.opts.OnEvent(m)
		}
	}
	return nil
}

func (c *Client) answerSubscriber(sdp string) error {
	if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	c.flushCandidates(signal.TargetSubscriber)
	answer, err := c.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := c.sub.SetLocalDescription(answer); err != nil {
		return err
	}
	return c.send(c.ctx, &signal.Answer{Target: signal.TargetSubscriber, SDP: answer.SDP})
}

func (c *Client) addCandidate(m *signal.Candidate) error {
	if m.Candidate == nil || strings.TrimSpace(m.Candidate.Candidate) == "" {
		return nil // end of candidates
	}
	init := webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid, SDPMLineIndex: m.Candidate.SDPMLineIndex, UsernameFragment: m.Candidate.UsernameFragment}
	pc := c.pub
	if m.Target == signal.TargetSubscriber {
		pc = c.sub
	}
	c.mu.Lock()
	if pc.RemoteDescription() == nil {
		if m.Target == signal.TargetSubscriber {
			c.pendSub = append(c.pendSub, init)
		} else {
			c.pendPub = append(c.pendPub, init)
		}
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return pc.AddICECandidate(init)
}

func (c *Client) flushCandidates(target string) {
	c.mu.Lock()
	var pc *webrtc.PeerConnection
	var pend []webrtc.ICECandidateInit
	if target == signal.TargetSubscriber {
		pc, pend, c.pendSub = c.sub, c.pendSub, nil
	} else {
		pc, pend, c.pendPub = c.pub, c.pendPub, nil
	}
	c.mu.Unlock()
	for _, cand := range pend {
		if err := pc.AddICECandidate(cand); err != nil {
			c.log.Debug("adding buffered candidate", "err", err)
		}
	}
}
