// Package signal holds the SFU's JSON signalling messages (PROTOCOL.md) and
// their codec. Every message is one JSON object with a "type" field; the
// rest of its fields depend on the type.
package signal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Version is the protocol version. A join with another version is refused
// with CodeVersion; the server reports its version in Joined.
const Version = 1

// MaxMessageSize bounds one signalling message. SDP for a handful of tracks
// is a few kilobytes; 64 KiB leaves room without letting a client make the
// server buffer megabytes.
const MaxMessageSize = 64 << 10

// Message types.
const (
	TypeJoin              = "join"
	TypeJoined            = "joined"
	TypeOffer             = "offer"
	TypeAnswer            = "answer"
	TypeCandidate         = "candidate"
	TypeParticipantJoined = "participant_joined"
	TypeParticipantLeft   = "participant_left"
	TypeTrackPublished    = "track_published"
	TypeTrackUnpublished  = "track_unpublished"
	TypeMute              = "mute"
	TypeLeave             = "leave"
	TypeError             = "error"
	TypeDraining          = "draining"
	TypeICEServers        = "ice_servers"
	TypePing              = "ping"
	TypePong              = "pong"
	TypeData              = "data"
	TypeActiveSpeakers    = "active_speakers"
	TypeResume            = "resume"
	TypeResumed           = "resumed"
	TypeParticipantStatus = "participant_status"
	TypeICERestart        = "ice_restart"
	TypeLanguages         = "languages"
	TypeSubscription      = "subscription"
	TypeLayer             = "layer"
	TypeActiveLayers      = "active_layers"
)

// Peer connection targets. Each participant has two peer connections: the
// client offers on "publisher" to send media, the server offers on
// "subscriber" to send everyone else's media. Offers never cross, so there
// is no glare.
const (
	TargetPublisher  = "publisher"
	TargetSubscriber = "subscriber"
)

// Error codes carried in Error.Code.
const (
	CodeBadMessage    = "bad_message"    // malformed JSON or missing fields
	CodeUnknownType   = "unknown_type"   // type not in this protocol
	CodeIdentityLimit = "identity_limit" // the token's identity is in the room too often
	CodeTooLarge      = "too_large"      // message above MaxMessageSize
	CodeVersion       = "version"        // unsupported protocol version
	CodeUnauthorized  = "unauthorized"   // missing, invalid or expired token
	CodeNotJoined     = "not_joined"     // message needs a join first
	CodeAlreadyJoined = "already_joined" // second join on one connection
	CodeUnknownRoom   = "unknown_room"   // leave names a room the client is not in
	CodeRoomFull      = "room_full"      // max participants reached
	CodeTooManyRooms  = "too_many_rooms" // max rooms reached
	CodeTooManyTracks = "too_many_tracks"
	CodeBadSDP        = "bad_sdp"       // SDP did not parse or negotiate
	CodeBadCandidate  = "bad_candidate" // ICE candidate rejected
	CodeUnknownTrack  = "unknown_track"
	CodeRateLimited   = "rate_limited"
	// CodeResumeFailed: the participant to resume is gone (its window
	// passed, it left, or the token is wrong); join again.
	CodeResumeFailed       = "resume_failed"
	CodeUnknownParticipant = "unknown_participant" // data addressed to someone not in the room
	CodeDraining           = "draining"            // server shutting down, no new joins
	CodeInternal           = "internal"
)

// Sentinel errors of the codec.
var (
	ErrBadMessage  = errors.New("signal: malformed message")
	ErrUnknownType = errors.New("signal: unknown message type")
	ErrTooLarge    = errors.New("signal: message too large")
)

// Message is implemented by every message struct.
type Message interface {
	MessageType() string
}

// Join is the first message a client sends.
type Join struct {
	Version int    `json:"v"`
	Room    string `json:"room"`
	Name    string `json:"name,omitempty"`
	Token   string `json:"token,omitempty"`
	// Language is what the participant speaks, TranslateTo what it wants
	// to read and hear others in (language tags such as "en", "es").
	Language    string `json:"language,omitempty"`
	TranslateTo string `json:"translateTo,omitempty"`
}

// ICEServer mirrors the browser's RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Track describes one published track.
type Track struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"` // "audio" or "video"
	Codec string `json:"codec,omitempty"`
	Muted bool   `json:"muted,omitempty"`
	// Source is what the track carries: one of the Source constants.
	Source string `json:"source,omitempty"`
	// TranslationOf and Lang, on a SourceTranslation track: whose words
	// it speaks, in which language.
	TranslationOf string `json:"translationOf,omitempty"`
	Lang          string `json:"lang,omitempty"`
	// Layers is how many simulcast layers the publisher sends (absent:
	// one). Each subscriber receives one at a time: see Subscription and
	// Layer.
	Layers int `json:"layers,omitempty"`
}

// MaxLayers is the most simulcast layers of a track the server forwards.
const MaxLayers = 3

// Subscription is a subscriber's wish for one remote track: the highest
// simulcast layer it wants (0 the lowest; absent: any, as bandwidth
// allows), e.g. for the size of the tile showing it, or none at all
// (Paused, for a track not shown). It applies to simulcast tracks only.
type Subscription struct {
	ParticipantID string `json:"participantId"`
	TrackID       string `json:"trackId"`
	MaxLayer      *int   `json:"maxLayer,omitempty"`
	Paused        bool   `json:"paused,omitempty"`
}

// Layer tells a subscriber which layer of a simulcast track it now
// receives (Paused: none, because it asked so or its link carries too
// little), and which one the server aims for (Target).
type Layer struct {
	ParticipantID string `json:"participantId"`
	TrackID       string `json:"trackId"`
	Layer         int    `json:"layer"`
	Target        int    `json:"target"`
	Paused        bool   `json:"paused,omitempty"`
}

// ActiveLayers tells a publisher which simulcast layers of its track
// (by its transceiver's mid) anyone receives or may soon: it need not
// encode the others (RTCRtpEncodingParameters.active) until a later
// ActiveLayers wants them again. Active is by layer, lowest first.
type ActiveLayers struct {
	MID    string `json:"mid"`
	Active []bool `json:"active"`
}

// Track sources. A track whose publisher named none is its kind's
// default: microphone for audio, camera for video.
const (
	SourceCamera      = "camera"
	SourceMicrophone  = "microphone"
	SourceScreen      = "screen"
	SourceScreenAudio = "screen_audio"
	// SourceTranslation is an agent's audio: another participant's words
	// spoken in another language.
	SourceTranslation = "translation"
)

// ValidSource reports whether s is one of the Source constants.
func ValidSource(s string) bool {
	switch s {
	case SourceCamera, SourceMicrophone, SourceScreen, SourceScreenAudio, SourceTranslation:
		return true
	}
	return false
}

// TrackSource names the source of the track a publisher offer sends on
// the transceiver with that mid.
type TrackSource struct {
	MID    string `json:"mid"`
	Source string `json:"source"`
	// TranslationOf and Lang are required with SourceTranslation, and
	// allowed with no other source.
	TranslationOf string `json:"translationOf,omitempty"`
	Lang          string `json:"lang,omitempty"`
}

// Participant describes one member of a room.
type Participant struct {
	ID          string  `json:"id"`
	Name        string  `json:"name,omitempty"`
	Tracks      []Track `json:"tracks"`
	Language    string  `json:"language,omitempty"`
	TranslateTo string  `json:"translateTo,omitempty"`
	// Agent marks a participant that joined with an agent token: a
	// service in the room (the translation agent), not a person.
	Agent bool `json:"agent,omitempty"`
}

// Languages changes what a participant speaks and wants (from a client,
// ParticipantID empty), and tells the others (from the server).
type Languages struct {
	ParticipantID string `json:"participantId,omitempty"`
	Language      string `json:"language"`
	TranslateTo   string `json:"translateTo"`
}

// TopicCaptions is the data topic of captions; only agents may send it.
const TopicCaptions = "captions"

// ValidLanguage reports whether s is empty or a short language tag: 2 or
// 3 lowercase letters, optionally a region or script ("pt-BR").
func ValidLanguage(s string) bool {
	if s == "" {
		return true
	}
	base, sub, hasSub := strings.Cut(s, "-")
	if len(base) < 2 || len(base) > 3 || hasSub && (len(sub) < 2 || len(sub) > 8) {
		return false
	}
	for _, c := range base {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	for _, c := range sub {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Joined answers a successful Join.
type Joined struct {
	Version      int           `json:"v"`
	ID           string        `json:"id"`
	Room         string        `json:"room"`
	Participants []Participant `json:"participants"`
	ICEServers   []ICEServer   `json:"iceServers"`
	// ResumeToken lets a new WebSocket take this session over (Resume)
	// within ResumeWindowMS of the old one dropping.
	ResumeToken    string `json:"resumeToken,omitempty"`
	ResumeWindowMS int64  `json:"resumeWindowMs,omitempty"`
}

// Resume is, instead of Join, the first message of a WebSocket that takes
// over a participant whose WebSocket dropped.
type Resume struct {
	Version       int    `json:"v"`
	ParticipantID string `json:"participantId"`
	ResumeToken   string `json:"resumeToken"`
}

// Resumed answers a Resume: the room as it is now (which replaces what the
// client knew), the ICE servers, and the token for the next resume.
type Resumed Joined

// ParticipantStatus tells the others that a participant's signalling
// dropped and it may come back (StatusReconnecting), or that it did
// (StatusConnected). A participant that does not come back is announced
// by ParticipantLeft.
type ParticipantStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// Participant statuses.
const (
	StatusReconnecting = "reconnecting"
	StatusConnected    = "connected"
)

// ICERestart asks the other side to restart ICE on the connection it
// offers: a client names "subscriber" (the server then sends an offer that
// restarts ICE), the server names "publisher" (the client restarts ICE
// with its next offer).
type ICERestart struct {
	Target string `json:"target"`
}

// Data is a room message for apps (chat, captions, reactions): reliable and
// ordered, through the signalling WebSocket. A client sends Topic and
// Payload, and To to address some participants only; the server relays it
// with From and TS (milliseconds since the Unix epoch, the server's
// clock) set.
type Data struct {
	From    string          `json:"from,omitempty"`
	TS      int64           `json:"ts,omitempty"`
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
	To      []string        `json:"to,omitempty"`
}

// Limits of Data: the payload's size, the topic's form and the number of
// addressees.
const (
	MaxDataPayload = 8 << 10
	MaxDataTo      = 64
)

// ActiveSpeakers lists the loudest participants, loudest first, as the
// server measures the audio it forwards. Sent when the list changes, at
// most every ActiveSpeakersInterval.
type ActiveSpeakers struct {
	Speakers []Speaker `json:"speakers"`
}

// Speaker is one active speaker: Level from 0 (silence) to 1 (loudest).
type Speaker struct {
	ParticipantID string  `json:"participantId"`
	Level         float64 `json:"level"`
}

// SDP carries an offer or an answer for one of the two peer connections.
type SDP struct {
	Type   string `json:"-"`
	Target string `json:"target"`
	SDP    string `json:"sdp"`
	// Tracks, in a client's publisher offer, name the source of tracks
	// by their transceiver's mid.
	Tracks []TrackSource `json:"tracks,omitempty"`
}

// Offer is an SDP offer (client→server on "publisher", server→client on
// "subscriber").
type Offer SDP

// Answer is an SDP answer, the reverse direction of Offer.
type Answer SDP

// ICECandidate mirrors the browser's RTCIceCandidateInit.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Candidate trickles one ICE candidate for a peer connection. A nil
// Candidate field means end of candidates.
type Candidate struct {
	Target    string        `json:"target"`
	Candidate *ICECandidate `json:"candidate"`
}

// ParticipantJoined announces a new member to the others.
type ParticipantJoined struct {
	Participant Participant `json:"participant"`
}

// ParticipantLeft announces that a member left; its tracks are gone.
type ParticipantLeft struct {
	ID string `json:"id"`
}

// TrackPublished announces a new track of a participant. The server then
// offers it on every other participant's subscriber connection with stream
// id = ParticipantID and track id = Track.ID.
type TrackPublished struct {
	ParticipantID string `json:"participantId"`
	Track         Track  `json:"track"`
}

// TrackUnpublished announces that a track ended.
type TrackUnpublished struct {
	ParticipantID string `json:"participantId"`
	TrackID       string `json:"trackId"`
}

// Mute is sent by a publisher about its own track (ParticipantID empty) and
// relayed by the server to the others with ParticipantID set.
type Mute struct {
	ParticipantID string `json:"participantId,omitempty"`
	// TrackID is the track's id as the server forwards it (its SDP msid);
	// MID, from a client about its own track, is the publisher
	// transceiver's mid, which both sides know whatever the browser (in
	// Firefox a MediaStreamTrack's id is not its msid).
	TrackID string `json:"trackId,omitempty"`
	MID     string `json:"mid,omitempty"`
	Muted   bool   `json:"muted"`
}

// Leave ends the session. Room is optional; when set it must be the room
// the client joined.
type Leave struct {
	Room string `json:"room,omitempty"`
}

// Error reports a problem with a message or the session.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Ref is the type of the message that caused the error, if known.
	Ref string `json:"ref,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Draining tells clients that the server shuts down; it closes the
// connection within DeadlineMS milliseconds.
type Draining struct {
	DeadlineMS int64 `json:"deadlineMs"`
}

// ICEServers renews the ICE servers of joined: fresh TURN credentials,
// sent before the previous ones expire, for as long as the session lasts.
type ICEServers struct {
	ICEServers []ICEServer `json:"iceServers"`
}

// Ping asks for a Pong; either side may send it.
type Ping struct{}

// Pong answers Ping.
type Pong struct{}

func (*Join) MessageType() string              { return TypeJoin }
func (*Joined) MessageType() string            { return TypeJoined }
func (*Offer) MessageType() string             { return TypeOffer }
func (*Answer) MessageType() string            { return TypeAnswer }
func (*Candidate) MessageType() string         { return TypeCandidate }
func (*ParticipantJoined) MessageType() string { return TypeParticipantJoined }
func (*ParticipantLeft) MessageType() string   { return TypeParticipantLeft }
func (*TrackPublished) MessageType() string    { return TypeTrackPublished }
func (*TrackUnpublished) MessageType() string  { return TypeTrackUnpublished }
func (*Mute) MessageType() string              { return TypeMute }
func (*Leave) MessageType() string             { return TypeLeave }
func (*Error) MessageType() string             { return TypeError }
func (*Draining) MessageType() string          { return TypeDraining }
func (*ICEServers) MessageType() string        { return TypeICEServers }
func (*Ping) MessageType() string              { return TypePing }
func (*Pong) MessageType() string              { return TypePong }
func (*Data) MessageType() string              { return TypeData }
func (*ActiveSpeakers) MessageType() string    { return TypeActiveSpeakers }
func (*Resume) MessageType() string            { return TypeResume }
func (*Resumed) MessageType() string           { return TypeResumed }
func (*ParticipantStatus) MessageType() string { return TypeParticipantStatus }
func (*ICERestart) MessageType() string        { return TypeICERestart }
func (*Languages) MessageType() string         { return TypeLanguages }
func (*Subscription) MessageType() string      { return TypeSubscription }
func (*Layer) MessageType() string             { return TypeLayer }
func (*ActiveLayers) MessageType() string      { return TypeActiveLayers }

func newMessage(typ string) Message {
	switch typ {
	case TypeJoin:
		return &Join{}
	case TypeJoined:
		return &Joined{}
	case TypeOffer:
		return &Offer{}
	case TypeAnswer:
		return &Answer{}
	case TypeCandidate:
		return &Candidate{}
	case TypeParticipantJoined:
		return &ParticipantJoined{}
	case TypeParticipantLeft:
		return &ParticipantLeft{}
	case TypeTrackPublished:
		return &TrackPublished{}
	case TypeTrackUnpublished:
		return &TrackUnpublished{}
	case TypeMute:
		return &Mute{}
	case TypeLeave:
		return &Leave{}
	case TypeError:
		return &Error{}
	case TypeICEServers:
		return &ICEServers{}
	case TypeDraining:
		return &Draining{}
	case TypePing:
		return &Ping{}
	case TypePong:
		return &Pong{}
	case TypeData:
		return &Data{}
	case TypeActiveSpeakers:
		return &ActiveSpeakers{}
	case TypeResume:
		return &Resume{}
	case TypeResumed:
		return &Resumed{}
	case TypeParticipantStatus:
		return &ParticipantStatus{}
	case TypeICERestart:
		return &ICERestart{}
	case TypeLanguages:
		return &Languages{}
	case TypeSubscription:
		return &Subscription{}
	case TypeLayer:
		return &Layer{}
	case TypeActiveLayers:
		return &ActiveLayers{}
	}
	return nil
}

// Decode parses one message. Errors wrap ErrTooLarge, ErrBadMessage or
// ErrUnknownType; the type of a message with an unknown type is in the
// error text.
func Decode(data []byte) (Message, error) {
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	var head struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if head.Type == nil {
		return nil, fmt.Errorf("%w: no \"type\" field", ErrBadMessage)
	}
	m := newMessage(*head.Type)
	if m == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, truncate(*head.Type, 40))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadMessage, *head.Type, err)
	}
	if err := validate(m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadMessage, *head.Type, err)
	}
	return m, nil
}

// validate checks what a message's type can check by itself.
func validate(m Message) error {
	if v, ok := m.(interface{ validate() error }); ok {
		return v.validate()
	}
	return nil
}

func (m *Join) validate() error {
	switch {
	case m.Room == "":
		return errors.New("room is required")
	case len(m.Room) > 128 || len(m.Name) > 128:
		return errors.New("room and name are limited to 128 bytes")
	case !ValidLanguage(m.Language) || !ValidLanguage(m.TranslateTo):
		return errBadLanguages
	}
	return nil
}

func (m *Subscription) validate() error {
	switch {
	case m.ParticipantID == "" || m.TrackID == "":
		return errors.New("participantId and trackId are required")
	case m.MaxLayer != nil && (*m.MaxLayer < 0 || *m.MaxLayer >= MaxLayers):
		return fmt.Errorf("maxLayer must be from 0 to %d", MaxLayers-1)
	}
	return nil
}

var errBadLanguages = errors.New("language and translateTo must be language tags such as \"en\" or \"pt-BR\"")

func (m *Languages) validate() error {
	if !ValidLanguage(m.Language) || !ValidLanguage(m.TranslateTo) {
		return errBadLanguages
	}
	return nil
}

func (m *Offer) validate() error  { return validateSDP((*SDP)(m)) }
func (m *Answer) validate() error { return validateSDP((*SDP)(m)) }

func (m *Candidate) validate() error  { return validTarget(m.Target) }
func (m *ICERestart) validate() error { return validTarget(m.Target) }

func validTarget(t string) error {
	if t != TargetPublisher && t != TargetSubscriber {
		return fmt.Errorf("target must be %q or %q", TargetPublisher, TargetSubscriber)
	}
	return nil
}

func (m *Mute) validate() error {
	if m.TrackID == "" && m.MID == "" {
		return errors.New("mid (or trackId) is required")
	}
	return nil
}

func (m *Resume) validate() error {
	if m.ParticipantID == "" || m.ResumeToken == "" {
		return errors.New("participantId and resumeToken are required")
	}
	return nil
}

func (m *Data) validate() error {
	if !validTopic(m.Topic) {
		return errors.New("topic must be 1 to 64 of a-z, 0-9, '.', '_', '-'")
	}
	if len(m.Payload) == 0 || string(m.Payload) == "null" {
		return errors.New("payload is required")
	}
	if len(m.Payload) > MaxDataPayload {
		return fmt.Errorf("payload is %d bytes, limit %d", len(m.Payload), MaxDataPayload)
	}
	if len(m.To) > MaxDataTo {
		return fmt.Errorf("to names %d participants, limit %d", len(m.To), MaxDataTo)
	}
	return nil
}

func validTopic(t string) bool {
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	for _, c := range t {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func validateSDP(s *SDP) error {
	if err := validTarget(s.Target); err != nil {
		return err
	}
	if s.SDP == "" {
		return errors.New("sdp is required")
	}
	if len(s.Tracks) > 64 {
		return errors.New("tracks names more than 64 transceivers")
	}
	for _, t := range s.Tracks {
		if t.MID == "" || !ValidSource(t.Source) {
			return fmt.Errorf("tracks: mid %q source %q: want a mid and one of camera, microphone, screen, screen_audio, translation", t.MID, t.Source)
		}
		translation := t.Source == SourceTranslation
		if translation != (t.TranslationOf != "") || translation != (t.Lang != "") || !ValidLanguage(t.Lang) || len(t.TranslationOf) > 64 {
			return fmt.Errorf("tracks: mid %q: a translation names translationOf and lang, other sources neither", t.MID)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Encode renders m with its "type" field.
func Encode(m Message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	// Splice "type" in front of the struct's own fields, so the structs
	// stay plain and the wire form stays flat.
	typ, _ := json.Marshal(m.MessageType())
	out := make([]byte, 0, len(body)+len(typ)+10)
	out = append(out, `{"type":`...)
	out = append(out, typ...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	out = append(out, body[1:]...)
	return out, nil
}
