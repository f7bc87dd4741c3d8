// Package client is a pion-based SFU participant: it joins a room over the
// signalling WebSocket (sfu/PROTOCOL.md), publishes local tracks on its
// publisher peer connection and receives everyone else's tracks on its
// subscriber peer connection. Tests, the load tool and the smoke tests use
// it as a headless browser.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Sentinel errors.
var (
	ErrClosed     = errors.New("client: closed")
	ErrNotJoined  = errors.New("client: join failed")
	ErrNoAnswer   = errors.New("client: no answer to publish offer")
	ErrBadMessage = errors.New("client: unexpected message from server")
	// ErrBadSimulcast: PublishSimulcast with too few or too many layers.
	ErrBadSimulcast = errors.New("client: bad simulcast layers")
	// ErrResume: the signalling connection dropped and could not be
	// resumed within the server's window.
	ErrResume = errors.New("client: could not resume the session")
)

// Options configure Dial.
type Options struct {
	Room  string
	Name  string
	Token string // JWT; empty for a server that allows anonymous joins
	// Language the participant speaks and TranslateTo the one it wants
	// others in (join's fields); empty for none.
	Language, TranslateTo string

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
	// *signal.ParticipantLeft, *signal.ParticipantStatus, *signal.TrackPublished,
	// *signal.TrackUnpublished, *signal.Mute, *signal.Languages, *signal.Data, *signal.ActiveSpeakers,
	// *signal.Resumed, *signal.Draining, *signal.Error). It is called from the
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
	url    string
	ctx    context.Context
	cancel context.CancelFunc

	// The signalling connection, replaced when the session resumes.
	connMu       sync.Mutex
	conn         *websocket.Conn
	resumeToken  string
	resumeWindow time.Duration
	resumes      int
	draining     atomic.Bool // the server said it shuts down: no resume

	id           string
	room         string
	participants []signal.Participant

	api *webrtc.API
	pub *webrtc.PeerConnection
	sub *webrtc.PeerConnection

	publishMu sync.Mutex // one publish negotiation at a time
	// candidates, per target, sends each connection's candidates after
	// the offer or answer they belong to.
	candidates map[string]*signal.CandidateQueue
	answers    chan *signal.Answer
	offerErrs  chan *signal.Error // the server refused a publish offer

	mu         sync.Mutex
	pendPub    []webrtc.ICECandidateInit // candidates before remote description
	pendSub    []webrtc.ICECandidateInit
	sources    map[*webrtc.RTPTransceiver]signal.TrackSource // published with a source
	simulcasts map[string]*Simulcast                         // published simulcast tracks, by mid
	closeErr   error

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
		opts: opts, log: log, url: url, conn: conn, ctx: cctx, cancel: cancel,
		candidates: map[string]*signal.CandidateQueue{signal.TargetPublisher: {}, signal.TargetSubscriber: {}},
		answers:    make(chan *signal.Answer, 1), offerErrs: make(chan *signal.Error, 1),
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
	if err := c.send(ctx, &signal.Join{Version: signal.Version, Room: c.opts.Room, Name: c.opts.Name, Token: c.opts.Token,
		Language: c.opts.Language, TranslateTo: c.opts.TranslateTo}); err != nil {
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
			c.resumeToken, c.resumeWindow = m.ResumeToken, time.Duration(m.ResumeWindowMS)*time.Millisecond
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
		if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
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
			c.candidates[target].Send(msg, c.sendCandidate)
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
	return c.PublishAs(ctx, "", tracks...)
}

// PublishAs is Publish for tracks from one source (signal.SourceScreen,
// ...), which the others see in their track's Source; "" is the kind's
// default, camera or microphone.
func (c *Client) PublishAs(ctx context.Context, source string, tracks ...webrtc.TrackLocal) ([]*webrtc.RTPSender, error) {
	return c.publish(ctx, signal.TrackSource{Source: source}, tracks...)
}

// PublishTranslation publishes an agent's track speaking speaker's words
// in lang (signal.SourceTranslation): the SFU sends it to those who want
// lang instead of the speaker's own voice.
func (c *Client) PublishTranslation(ctx context.Context, speaker, lang string, track webrtc.TrackLocal) (*webrtc.RTPSender, error) {
	s, err := c.publish(ctx, signal.TrackSource{Source: signal.SourceTranslation, TranslationOf: speaker, Lang: lang}, track)
	if err != nil {
		return nil, err
	}
	return s[0], nil
}

func (c *Client) publish(ctx context.Context, src signal.TrackSource, tracks ...webrtc.TrackLocal) ([]*webrtc.RTPSender, error) {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	var senders []*webrtc.RTPSender
	for _, t := range tracks {
		tr, err := c.pub.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, fmt.Errorf("client: publish %s: %w", t.ID(), err)
		}
		if src.Source != "" {
			c.mu.Lock()
			if c.sources == nil {
				c.sources = map[*webrtc.RTPTransceiver]signal.TrackSource{}
			}
			c.sources[tr] = src
			c.mu.Unlock()
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

// PublishSimulcast publishes one video track as simulcast layers, lowest
// first (each a track with its own rid, webrtc.WithRTPStreamID, all of
// one id and codec); write their packets through the Simulcast it
// returns once the SFU answered. The SFU sends each subscriber one layer
// (Subscription, Layer). The client's media engine must offer the mid
// and rid header extensions (webrtc.ConfigureSimulcastExtensionHeaders;
// the default engine does).
func (c *Client) PublishSimulcast(ctx context.Context, layers ...*webrtc.TrackLocalStaticRTP) (*Simulcast, error) {
	if len(layers) < 2 || len(layers) > signal.MaxLayers {
		return nil, fmt.Errorf("%w: %d simulcast layers, want 2 to %d", ErrBadSimulcast, len(layers), signal.MaxLayers)
	}
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	tr, err := c.pub.AddTransceiverFromTrack(layers[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("client: publish %s: %w", layers[0].ID(), err)
	}
	s := tr.Sender()
	for _, l := range layers[1:] {
		if err := s.AddEncoding(l); err != nil {
			return nil, fmt.Errorf("client: simulcast layer %q: %w", l.RID(), err)
		}
	}
	for _, l := range layers {
		c.wg.Add(1)
		go c.readLayerRTCP(l.ID(), s, l.RID())
	}
	if err := c.negotiatePublisher(ctx); err != nil {
		return nil, err
	}
	sc := &Simulcast{Sender: s, layers: layers, mid: []byte(tr.Mid())}
	for l := range layers {
		sc.active[l].Store(true)
	}
	for _, e := range s.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			sc.midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			sc.ridID = uint8(e.ID)
		}
	}
	if sc.midID == 0 || sc.ridID == 0 {
		return nil, fmt.Errorf("%w: the mid and rid header extensions were not negotiated", ErrBadSimulcast)
	}
	c.mu.Lock()
	if c.simulcasts == nil {
		c.simulcasts = map[string]*Simulcast{}
	}
	c.simulcasts[tr.Mid()] = sc
	c.mu.Unlock()
	return sc, nil
}

// Simulcast is a published simulcast track.
type Simulcast struct {
	Sender       *webrtc.RTPSender
	layers       []*webrtc.TrackLocalStaticRTP
	mid          []byte
	midID, ridID uint8
	active       [signal.MaxLayers]atomic.Bool
}

// Active reports whether the SFU wants layer sent (signal.ActiveLayers):
// a publisher need not encode one it does not, until it does again.
func (s *Simulcast) Active(layer int) bool {
	return layer >= 0 && layer < len(s.layers) && s.active[layer].Load()
}

// WriteRTP sends pkt on layer (0 the lowest), naming its mid and rid in
// its header, which is how the SFU tells the layers apart.
func (s *Simulcast) WriteRTP(layer int, pkt *rtp.Packet) error {
	if layer < 0 || layer >= len(s.layers) {
		return fmt.Errorf("%w: no layer %d", ErrBadSimulcast, layer)
	}
	l := s.layers[layer]
	if err := pkt.SetExtension(s.midID, s.mid); err != nil {
		return err
	}
	if err := pkt.SetExtension(s.ridID, []byte(l.RID())); err != nil {
		return err
	}
	return l.WriteRTP(pkt)
}

// SetSubscription asks the SFU for at most layer maxLayer of a remote
// simulcast track (nil: any the link carries), or for none (paused).
func (c *Client) SetSubscription(ctx context.Context, participantID, trackID string, maxLayer *int, paused bool) error {
	return c.send(ctx, &signal.Subscription{ParticipantID: participantID, TrackID: trackID, MaxLayer: maxLayer, Paused: paused})
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
	return c.offerPublisher(ctx, nil)
}

// restartPublisherICE offers the publisher connection with new ICE
// credentials, as the server asked.
func (c *Client) restartPublisherICE() {
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	if err := c.offerPublisher(ctx, &webrtc.OfferOptions{ICERestart: true}); err != nil {
		c.log.Warn("publisher ICE restart", "err", err)
	}
}

func (c *Client) offerPublisher(ctx context.Context, opts *webrtc.OfferOptions) error {
	offer, err := c.pub.CreateOffer(opts)
	if err != nil {
		return fmt.Errorf("client: publish offer: %w", err)
	}
	cq := c.candidates[signal.TargetPublisher]
	cq.Hold()
	released := false
	defer func() {
		if !released {
			cq.Release(c.sendCandidate)
		}
	}()
	if err := c.pub.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("client: publish offer: %w", err)
	}
	// Drop a stale answer or refusal from an earlier, abandoned negotiation.
	select {
	case <-c.answers:
	default:
	}
	select {
	case stale := <-c.offerErrs:
		_ = stale // the refusal of an abandoned offer
	default:
	}
	var sources []signal.TrackSource
	c.mu.Lock()
	for tr, src := range c.sources {
		if tr.Mid() != "" {
			src.MID = tr.Mid()
			sources = append(sources, src)
		}
	}
	c.mu.Unlock()
	err = c.send(ctx, &signal.Offer{Target: signal.TargetPublisher, SDP: offer.SDP, Tracks: sources})
	cq.Release(c.sendCandidate)
	released = true
	if err != nil {
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

// readLayerRTCP is readSenderRTCP for one layer (rid) of a simulcast
// track: the SFU's PLIs name the layer it wants a keyframe of.
func (c *Client) readLayerRTCP(trackID string, s *webrtc.RTPSender, rid string) {
	defer c.wg.Done()
	for {
		pkts, _, err := s.ReadSimulcastRTCP(rid)
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

// SendData sends an app message (chat, captions) to the room, or to the
// participants to names; payload is marshalled to JSON. The others get it
// as a *signal.Data event.
func (c *Client) SendData(ctx context.Context, topic string, payload any, to ...string) error {
	raw, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("client: data payload: %w", err)
	}
	return c.send(ctx, &signal.Data{Topic: topic, Payload: raw, To: to})
}

// DropSignalling cuts the signalling connection the way a network failure
// would (no close handshake); the client then resumes the session on a new
// one, as it does for any drop. For tests.
func (c *Client) DropSignalling() { c.connection().CloseNow() }

// Resumes counts the session's resumes on a new signalling connection.
func (c *Client) Resumes() int {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.resumes
}

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
	// A normal close first: cancelling the reader's context would drop
	// the connection without one, which the server takes for a network
	// failure and keeps the participant for a resume.
	c.connection().Close(websocket.StatusNormalClosure, "bye")
	c.cancel()
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
	return c.connection().Write(ctx, websocket.MessageText, data)
}

func (c *Client) connection() *websocket.Conn {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.conn
}

func (c *Client) read(ctx context.Context) (signal.Message, error) {
	return readFrom(ctx, c.connection())
}

func readFrom(ctx context.Context, conn *websocket.Conn) (signal.Message, error) {
	_, data, err := conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	return signal.Decode(data)
}

// resume takes the session over on a new signalling connection after the
// old one dropped, retrying until the server's window closes; the media
// connections go on meanwhile.
func (c *Client) resume() error {
	c.connMu.Lock()
	token, window := c.resumeToken, c.resumeWindow
	c.connMu.Unlock()
	if token == "" || window <= 0 {
		return ErrResume
	}
	deadline := time.Now().Add(window)
	for wait := 100 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 2*time.Second) {
		err := c.resumeOnce(deadline, token)
		if err == nil || errors.Is(err, ErrResume) || c.ctx.Err() != nil {
			return err
		}
		c.log.Debug("resume attempt", "err", err)
		select {
		case <-time.After(wait):
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
	return fmt.Errorf("%w within %s", ErrResume, window)
}

func (c *Client) resumeOnce(deadline time.Time, token string) error {
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{HTTPHeader: c.opts.HTTPHeader})
	if err != nil {
		return err
	}
	conn.SetReadLimit(signal.MaxMessageSize)
	data, _ := signal.Encode(&signal.Resume{Version: signal.Version, ParticipantID: c.id, ResumeToken: token})
	if err := conn.Write(ctx, websocket.MessageText, data); err != nil {
		conn.CloseNow()
		return err
	}
	for {
		m, err := readFrom(ctx, conn)
		if err != nil {
			conn.CloseNow()
			return err
		}
		switch m := m.(type) {
		case *signal.Resumed:
			c.connMu.Lock()
			c.conn, c.resumeToken, c.resumes = conn, m.ResumeToken, c.resumes+1
			c.resumeWindow = time.Duration(m.ResumeWindowMS) * time.Millisecond
			c.connMu.Unlock()
			c.log.Debug("resumed", "participant", c.id)
			if c.opts.OnEvent != nil {
				c.opts.OnEvent(m)
			}
			// A publish offer whose answer was lost goes again.
			if c.pub.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
				if d := c.pub.LocalDescription(); d != nil {
					return c.send(c.ctx, &signal.Offer{Target: signal.TargetPublisher, SDP: d.SDP})
				}
			}
			return nil
		case *signal.Error:
			conn.CloseNow()
			if m.Code == signal.CodeResumeFailed || m.Code == signal.CodeDraining {
				return fmt.Errorf("%w: %w", ErrResume, m)
			}
			return m
		}
	}
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
				go c.shutdown(nil) // not inline: shutdown waits for nothing, but Close may hold wg
				return
			}
			// Any other end may be the network: take the session over on a
			// new connection, media flowing meanwhile. Not from a server
			// that said it shuts down.
			if c.draining.Load() {
				go c.shutdown(err)
				return
			}
			if rerr := c.resume(); rerr == nil {
				continue
			} else if c.ctx.Err() == nil {
				err = fmt.Errorf("%w (after %w)", rerr, err)
			}
			go c.shutdown(err)
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
	case *signal.ICERestart:
		if m.Target == signal.TargetPublisher {
			c.wg.Add(1) // the reader holds one: Close waits for both
			go func() { defer c.wg.Done(); c.restartPublisherICE() }()
		}
	case *signal.ActiveLayers:
		c.mu.Lock()
		sc := c.simulcasts[m.MID]
		c.mu.Unlock()
		if sc != nil {
			for l := range sc.layers {
				sc.active[l].Store(l >= len(m.Active) || m.Active[l])
			}
		}
		if c.opts.OnEvent != nil {
			c.opts.OnEvent(m)
		}
	case *signal.Ping:
		return c.send(c.ctx, &signal.Pong{})
	case *signal.Pong:
	case *signal.Draining:
		c.draining.Store(true)
		if c.opts.OnEvent != nil {
			c.opts.OnEvent(m)
		}
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
	// An offer that restarts ICE restarts it here too, within
	// SetRemoteDescription: the new candidates wait for the answer.
	cq := c.candidates[signal.TargetSubscriber]
	cq.Hold()
	defer cq.Release(c.sendCandidate)
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

// sendCandidate sends a candidate message from a connection's queue.
func (c *Client) sendCandidate(m signal.Message) {
	if err := c.send(c.ctx, m); err != nil {
		c.log.Debug("sending candidate", "err", err)
	}
}
