// Package agent is the translation agent: a participant that listens to
// every speaker in a room and puts back what they said in the languages
// the others asked for, as captions (data messages on the "captions"
// topic) and as speech (one track per speaker and language, which the SFU
// sends those who want that language in place of the speaker's voice),
// through the SFU's public signalling protocol.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jbcalling/platform/agent/audio"
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/agent/tts"
	"github.com/jbcalling/platform/sfu/client"
	"github.com/jbcalling/platform/sfu/signal"
	"github.com/pion/webrtc/v4"
)

// Config is what an agent needs to serve one room.
type Config struct {
	URL   string // the SFU's signalling endpoint, ws(s)://host/ws
	Room  string
	Token string // a join token with the agent claim
	Name  string // display name; empty means "Translator"

	Recognizer stt.Recognizer
	Translator mt.Translator
	// Synthesizer speaks the translations; nil means captions only.
	Synthesizer tts.Synthesizer
	// DefaultLanguage is taken for a speaker who declared none; empty
	// means "en".
	DefaultLanguage string
	// Queue bounds the utterances waiting for the engines; when it is
	// full the oldest waiting one is dropped (captions late by minutes
	// help nobody). 0 means 8.
	Queue int
	// EngineTimeout bounds the engines' work on one utterance; an engine
	// that takes longer (or hangs) gives an error caption and the agent
	// goes on. 0 means 20 s.
	EngineTimeout time.Duration

	Logger        *slog.Logger
	SettingEngine *webrtc.SettingEngine // nil: pion's defaults
}

// Caption is the payload of a "captions" data message: one utterance of
// one speaker, in the language spoken and in each language someone in the
// room wants.
type Caption struct {
	Speaker      string            `json:"speaker"` // participant id
	Segment      int               `json:"segment"` // per speaker, from 1
	Final        bool              `json:"final"`
	Lang         string            `json:"lang"`
	Text         string            `json:"text"`
	Translations map[string]string `json:"translations,omitempty"`
	// Error says, for people, why words are missing: the recogniser
	// failed (no Text), or a translation did (its language is missing).
	Error string `json:"error,omitempty"`
}

// ErrConfig names a missing part of Config.
var ErrConfig = errors.New("agent: bad config")

type utterance struct {
	speaker string
	pcm     []int16
	ended   time.Time
	// heard is what a streaming recogniser made of it while it was
	// spoken (nil: the worker recognises pcm).
	heard    *string
	heardErr error
	// segment is the number partial captions of it already carried (0:
	// none was sent; the worker numbers it).
	segment int
}

type agent struct {
	ctx context.Context // the session's: voices end with it
	cfg Config
	log *slog.Logger
	c   *client.Client

	mu       sync.Mutex
	people   map[string]signal.Participant // the room, by id
	segments map[string]int                // last segment number per speaker

	queue chan utterance

	voicesMu sync.Mutex
	voices   map[voiceKey]*voice
}

type voiceKey struct{ speaker, lang string }

// Run joins the room and captions it until ctx ends or the session does.
func Run(ctx context.Context, cfg Config) error {
	if cfg.URL == "" || cfg.Room == "" || cfg.Recognizer == nil || cfg.Translator == nil {
		return fmt.Errorf("%w: URL, Room, Recognizer and Translator are required", ErrConfig)
	}
	if cfg.Name == "" {
		cfg.Name = "Translator"
	}
	if cfg.DefaultLanguage == "" {
		cfg.DefaultLanguage = "en"
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 8
	}
	if cfg.EngineTimeout <= 0 {
		cfg.EngineTimeout = 20 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &agent{ctx: ctx, cfg: cfg, log: log.With("room", cfg.Room), people: map[string]signal.Participant{},
		segments: map[string]int{}, queue: make(chan utterance, cfg.Queue), voices: map[voiceKey]*voice{}}
	c, err := client.Dial(ctx, cfg.URL, client.Options{
		Room: cfg.Room, Name: cfg.Name, Token: cfg.Token, SettingEngine: cfg.SettingEngine, Logger: log,
		OnTrack: func(t *client.RemoteTrack) { a.listen(ctx, t) },
		OnEvent: a.onEvent,
	})
	if err != nil {
		return fmt.Errorf("agent: joining %q: %w", cfg.Room, err)
	}
	defer c.Close()
	a.c = c
	a.mu.Lock()
	for _, p := range c.Participants() {
		a.people[p.ID] = p
	}
	a.mu.Unlock()
	a.log.Info("captioning", "id", c.ID())
	go a.work(ctx)
	select {
	case <-ctx.Done():
		_ = c.Leave(context.Background())
		return nil
	case <-c.Done():
		return fmt.Errorf("agent: session ended: %w", c.Err())
	}
}

// onEvent keeps the room's languages; it runs on the signalling reader.
func (a *agent) onEvent(m signal.Message) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch m := m.(type) {
	case *signal.ParticipantJoined:
		a.people[m.Participant.ID] = m.Participant
	case *signal.ParticipantLeft:
		delete(a.people, m.ID)
		go a.silence(m.ID)
	case *signal.Languages:
		if p, ok := a.people[m.ParticipantID]; ok {
			p.Language, p.TranslateTo = m.Language, m.TranslateTo
			a.people[m.ParticipantID] = p
		}
	case *signal.Resumed:
		clear(a.people)
		for _, p := range m.Participants {
			a.people[p.ID] = p
		}
		go a.silenceAbsent() // who left while the agent's signalling was away
	}
}

// silenceAbsent ends the voices of speakers no longer in the room. Lock
// order: voicesMu, then mu (as in voice).
func (a *agent) silenceAbsent() {
	a.voicesMu.Lock()
	var gone []string
	for k := range a.voices {
		if !a.present(k.speaker) {
			gone = append(gone, k.speaker)
		}
	}
	a.voicesMu.Unlock()
	for _, id := range gone {
		a.silence(id)
	}
}

// listen decodes a person's audio and cuts it into utterances; other
// tracks are read and dropped (the client must read every track).
func (a *agent) listen(ctx context.Context, t *client.RemoteTrack) {
	a.mu.Lock()
	speaker, known := a.people[t.ParticipantID]
	a.mu.Unlock()
	if t.Kind != webrtc.RTPCodecTypeAudio || known && speaker.Agent {
		drain(t)
		return
	}
	dec, err := audio.NewDecoder(stt.Rate)
	if err != nil {
		a.log.Error("no decoder", "err", err)
		drain(t)
		return
	}
	seg := audio.Segmenter{Rate: stt.Rate}
	var live liveRecognition
	defer live.close()
	for {
		pkt, _, err := t.Track.ReadRTP()
		if err != nil {
			if u := seg.Flush(); u != nil {
				a.enqueue(live.end(utterance{speaker: t.ParticipantID, pcm: u, ended: time.Now()}))
			}
			return
		}
		if len(pkt.Payload) == 0 {
			continue
		}
		pcm, err := dec.Decode(pkt.Payload)
		if err != nil {
			continue // a damaged packet: the segmenter hears a gap
		}
		u := seg.Write(pcm)
		if u != nil {
			a.enqueue(live.end(utterance{speaker: t.ParticipantID, pcm: u, ended: time.Now()}))
		} else if cur := seg.Current(); cur != nil {
			live.feed(a, t.ParticipantID, cur)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// liveRecognition feeds one speaker's utterance to a streaming
// recogniser while it is spoken, if the agent has one and someone wants
// the speaker captioned, and sends what it has heard so far as partial
// captions; the decoder is kept from one utterance to the next while the
// speaker's language stays the same.
type liveRecognition struct {
	stream  stt.Stream
	lang    string
	active  bool   // feeding the current utterance
	fed     int    // samples of it fed so far
	guessed int    // samples fed at the last partial guess
	partial string // the last partial caption's words
	segment int    // its number (0: none sent)
}

// PartialEvery is how much speech passes between partial captions.
const PartialEvery = time.Second

func (l *liveRecognition) feed(a *agent, speaker string, cur []int16) {
	if len(cur) < l.fed {
		l.fed = 0
	}
	if l.fed == 0 { // the utterance starts
		l.active, l.guessed, l.partial, l.segment = false, 0, "", 0
		streamer, ok := a.cfg.Recognizer.(stt.Streamer)
		lang, _, wanted := a.targets(speaker)
		if !ok || !wanted {
			l.fed = len(cur)
			return
		}
		if l.stream == nil || l.lang != lang {
			l.close()
			s, err := streamer.Stream(lang)
			if err != nil {
				l.fed = len(cur) // the worker tries and reports it
				return
			}
			l.stream, l.lang = s, lang
		}
		l.active = true
	}
	if l.active {
		if err := l.stream.Write(cur[l.fed:]); err != nil {
			l.active = false
		}
	}
	l.fed = len(cur)
	if l.active && l.fed-l.guessed >= int(PartialEvery.Seconds()*stt.Rate) {
		l.guessed = l.fed
		l.sendPartial(a, speaker)
	}
}

// sendPartial sends the words heard so far, when they changed, as a
// caption that is not final: the speaker's words only (translating every
// guess would take the engines' time from finished sentences).
func (l *liveRecognition) sendPartial(a *agent, speaker string) {
	text, err := l.stream.Partial()
	if err != nil || text == "" || text == l.partial {
		return
	}
	if l.segment == 0 {
		l.segment = a.nextSegment(speaker)
	}
	l.partial = text
	c := Caption{Speaker: speaker, Segment: l.segment, Lang: l.lang, Text: text}
	if err := a.c.SendData(a.ctx, signal.TopicCaptions, c); err != nil {
		a.log.Debug("partial caption", "err", err)
	}
}

// end completes u with the words heard while it was spoken, if any, and
// the number its partial captions carried.
func (l *liveRecognition) end(u utterance) utterance {
	if l.active && l.fed <= len(u.pcm) {
		err := l.stream.Write(u.pcm[l.fed:])
		var text string
		if err == nil {
			text, err = l.stream.End()
		}
		u.heard, u.heardErr, u.segment = &text, err, l.segment
	}
	l.active, l.fed, l.guessed, l.partial, l.segment = false, 0, 0, "", 0
	return u
}

func (l *liveRecognition) close() {
	if l.stream != nil {
		l.stream.Close()
		l.stream = nil
	}
}

func drain(t *client.RemoteTrack) {
	for {
		if _, _, err := t.Track.ReadRTP(); err != nil {
			return
		}
	}
}

// enqueue hands an utterance to the engines, dropping the oldest waiting
// one when they are behind.
func (a *agent) enqueue(u utterance) {
	for {
		select {
		case a.queue <- u:
			return
		default:
		}
		select {
		case old := <-a.queue:
			a.log.Warn("engines behind: dropping an utterance", "speaker", old.speaker)
		default:
		}
	}
}

// work runs the engines on one utterance at a time: they are CPU-bound.
func (a *agent) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-a.queue:
			if err := a.caption(ctx, u); err != nil && ctx.Err() == nil {
				a.log.Warn("captioning an utterance", "speaker", u.speaker, "err", err)
			}
		}
	}
}

// targets are the languages the room wants speaker in: every other
// person's TranslateTo that is not what the speaker speaks. wanted says
// whether anyone wants captions of speaker at all (in its own language
// too); if not, nobody's time is spent on its words.
func (a *agent) targets(speaker string) (lang string, targets []string, wanted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.people[speaker]
	if !ok {
		return "", nil, false // left meanwhile
	}
	lang = p.Language
	if lang == "" {
		lang = a.cfg.DefaultLanguage
	}
	for id, o := range a.people {
		if id == speaker || o.Agent || o.TranslateTo == "" {
			continue
		}
		wanted = true
		if o.TranslateTo != lang && !slices.Contains(targets, o.TranslateTo) {
			targets = append(targets, o.TranslateTo)
		}
	}
	slices.Sort(targets)
	return lang, targets, wanted
}

func (a *agent) caption(ctx context.Context, u utterance) error {
	lang, targets, wanted := a.targets(u.speaker)
	if !wanted {
		return nil
	}
	start := u.ended // the latencies people notice count from the end of speech detection
	ctx, cancel := context.WithTimeout(ctx, a.cfg.EngineTimeout)
	defer cancel()
	var text string
	var err error
	if u.heard != nil {
		text, err = *u.heard, u.heardErr
	} else {
		text, err = bounded(ctx, func() (string, error) { return a.cfg.Recognizer.Recognize(ctx, u.pcm, lang) })
	}
	if err == nil && text == "" {
		if u.segment > 0 { // its partial captions are taken back
			return a.c.SendData(a.ctx, signal.TopicCaptions, Caption{Speaker: u.speaker, Segment: u.segment, Final: true, Lang: lang})
		}
		return nil // nothing heard: no caption
	}
	segment := u.segment
	if segment == 0 {
		segment = a.nextSegment(u.speaker)
	}
	c := Caption{Speaker: u.speaker, Segment: segment, Final: true, Lang: lang, Text: text}
	if err != nil {
		a.log.Warn("recognising", "speaker", u.speaker, "lang", lang, "err", err)
		c.Error = "speech recognition failed"
		return a.c.SendData(a.ctx, signal.TopicCaptions, c)
	}
	for _, to := range targets {
		tr, err := bounded(ctx, func() (string, error) { return a.cfg.Translator.Translate(ctx, text, lang, to) })
		if err != nil {
			a.log.Warn("translating", "from", lang, "to", to, "err", err)
			c.Error = "translation failed"
			continue
		}
		if c.Translations == nil {
			c.Translations = map[string]string{}
		}
		c.Translations[to] = tr
	}
	a.log.Info("caption", "speaker", u.speaker, "segment", c.Segment, "seconds", float64(len(u.pcm))/stt.Rate,
		"took", time.Since(start).Round(time.Millisecond), "languages", len(c.Translations))
	if err := a.c.SendData(a.ctx, signal.TopicCaptions, c); err != nil {
		return err
	}
	if a.cfg.Synthesizer == nil {
		return nil
	}
	for _, to := range targets {
		text := c.Translations[to]
		if text == "" {
			continue
		}
		type speech struct {
			pcm  []int16
			rate int
		}
		sp, err := bounded(ctx, func() (speech, error) {
			pcm, rate, err := a.cfg.Synthesizer.Synthesize(ctx, text, to)
			return speech{pcm, rate}, err
		})
		pcm, rate := sp.pcm, sp.rate
		if err != nil {
			a.log.Warn("speaking", "lang", to, "err", err)
			continue
		}
		v, err := a.voice(ctx, u.speaker, to)
		if errors.Is(err, errSpeakerLeft) {
			return nil
		} else if err != nil {
			return err
		}
		segment := c.Segment
		v.say(audio.Resample(pcm, rate, audio.EncoderRate), func() {
			a.log.Info("speaking", "speaker", u.speaker, "segment", segment, "lang", to, "after", time.Since(start).Round(time.Millisecond))
		})
	}
	return nil
}

// voice returns the track that speaks speaker in lang, publishing it the
// first time.
func (a *agent) voice(ctx context.Context, speaker, lang string) (*voice, error) {
	key := voiceKey{speaker, lang}
	a.voicesMu.Lock()
	v := a.voices[key]
	a.voicesMu.Unlock()
	if v != nil {
		return v, nil
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		speaker+"."+lang, a.c.ID())
	if err != nil {
		return nil, fmt.Errorf("agent: voice track: %w", err)
	}
	enc, err := audio.NewEncoder()
	if err != nil {
		return nil, err
	}
	sender, err := a.c.PublishTranslation(ctx, speaker, lang, track)
	if err != nil {
		return nil, fmt.Errorf("agent: publishing %s in %s: %w", speaker, lang, err)
	}
	vctx, stop := context.WithCancel(a.ctx)
	v = &voice{track: track, sender: sender, stop: stop}
	// The speaker may have left while the voice was being published:
	// silence scans the voices after the room forgot the speaker, so a
	// voice registered while it was still there is found and ended.
	a.voicesMu.Lock()
	here := a.present(speaker)
	if here {
		a.voices[key] = v
	}
	a.voicesMu.Unlock()
	if !here {
		stop()
		_ = a.c.Unpublish(ctx, sender)
		return nil, errSpeakerLeft
	}
	go v.run(vctx, enc)
	return v, nil
}

// errSpeakerLeft: the speaker left before their translation was spoken.
var errSpeakerLeft = errors.New("agent: the speaker left")

func (a *agent) present(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.people[id]
	return ok
}

// silence unpublishes the voices of a speaker who left.
func (a *agent) silence(speaker string) {
	a.voicesMu.Lock()
	var gone []*voice
	for k, v := range a.voices {
		if k.speaker == speaker {
			gone = append(gone, v)
			delete(a.voices, k)
		}
	}
	a.voicesMu.Unlock()
	for _, v := range gone {
		v.stop()
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		if err := a.c.Unpublish(ctx, v.sender); err != nil {
			a.log.Warn("unpublishing a voice", "speaker", speaker, "err", err)
		}
		cancel()
	}
}

// nextSegment numbers speaker's next captioned utterance.
func (a *agent) nextSegment(speaker string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.segments[speaker]++
	return a.segments[speaker]
}

// bounded returns f's result, or ctx's error as soon as ctx ends: an
// engine that ignores its context (a hung library call) holds one
// goroutine, never the agent.
func bounded[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("agent: engine: %w", ctx.Err())
	}
}
