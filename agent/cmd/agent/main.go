// Command agent translates calls: it joins rooms through the SFU as an
// agent and sends what each speaker says, translated into the languages
// the others want, as "captions" data messages and translated voices.
//
//	agent --sfu ws://127.0.0.1:8080/ws --jwt-secret-file /run/secrets/sfu_jwt_secret
//	agent --room standup ...   # one room, whoever is in it
//	agent healthcheck          # for the image's HEALTHCHECK
//
// Without --room it asks the SFU which rooms want translation and keeps
// one session in each. Every flag can also be set by an environment
// variable: AGENT_ and the flag name in capitals with - as _.
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jbcalling/platform/internal/flagenv"
	"github.com/jbcalling/platform/internal/secretfile"

	"github.com/jbcalling/platform/agent"
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/agent/tts"
	"github.com/jbcalling/platform/sfu/auth"
	sfusignal "github.com/jbcalling/platform/sfu/signal"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(os.Args[2:], os.Getenv, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(2)
	}
}

type options struct {
	sfu, room, secretFile, stt, mt, tts, lang, level, healthListen string
	every                                                          time.Duration
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.sfu, "sfu", "ws://127.0.0.1:8080/ws", "the SFU's signalling endpoint; its room listing is on the same host")
	fs.StringVar(&o.room, "room", "", "caption this one room, whoever is in it (empty: every room the SFU says wants translation)")
	fs.StringVar(&o.secretFile, "jwt-secret-file", "", "file holding the SFU's join-token secret: the agent signs its own agent tokens (required without --room; with --room, empty joins anonymously and the SFU refuses its captions)")
	fs.StringVar(&o.stt, "stt", "pocketsphinx", `speech to text: "pocketsphinx" (local, English) or the URL of a service with the agent's STT contract`)
	fs.StringVar(&o.mt, "mt", "apertium", `translation: "apertium" (local) or the URL of an apertium-apy service`)
	fs.StringVar(&o.tts, "tts", "espeak-ng", `speech: "espeak-ng" (local), "none" (captions only) or the URL of a service with the agent's TTS contract`)
	fs.StringVar(&o.lang, "default-language", "en", "language of speakers who declared none")
	fs.DurationVar(&o.every, "poll", 2*time.Second, "how often the SFU's room listing is read")
	fs.StringVar(&o.healthListen, "health-listen", "127.0.0.1:8090", "where /health answers (empty: nowhere)")
	fs.StringVar(&o.level, "log-level", "info", "debug, info, warn or error")
	if err := flagenv.Apply(fs, envPrefix, getenv); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.room == "" && o.secretFile == "" {
		return nil, errors.New("--jwt-secret-file is required to find rooms (or name one with --room)")
	}
	return &o, nil
}

// envPrefix starts the variable of each flag (AGENT_JWT_SECRET_FILE).
const envPrefix = "AGENT_"

func isURL(v string) bool { return strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") }

// engines builds the session template from the engine flags.
func engines(o *options, log *slog.Logger) (agent.Config, error) {
	cfg := agent.Config{URL: o.sfu, DefaultLanguage: o.lang, Logger: log}
	switch v := o.stt; {
	case v == "pocketsphinx":
		cfg.Recognizer = stt.Sphinx{}
	case isURL(v):
		cfg.Recognizer = stt.HTTP{URL: v}
	default:
		return cfg, fmt.Errorf("--stt %q: want pocketsphinx or an http(s) URL", v)
	}
	switch v := o.mt; {
	case v == "apertium":
		cfg.Translator = mt.Apertium{}
	case isURL(v):
		cfg.Translator = mt.HTTP{URL: v}
	default:
		return cfg, fmt.Errorf("--mt %q: want apertium or an http(s) URL", v)
	}
	switch v := o.tts; {
	case v == "espeak-ng":
		cfg.Synthesizer = tts.Espeak{}
	case v == "none":
	case isURL(v):
		cfg.Synthesizer = tts.HTTP{URL: v}
	default:
		return cfg, fmt.Errorf("--tts %q: want espeak-ng, none or an http(s) URL", v)
	}
	return cfg, nil
}

// roomsURL is the SFU's agent listing on the signalling endpoint's host.
func roomsURL(signalling string) (string, error) {
	scheme, rest, ok := strings.Cut(signalling, "://")
	if !ok {
		return "", fmt.Errorf("--sfu %q: want ws://host/ws or wss://host/ws", signalling)
	}
	switch scheme {
	case "ws":
		scheme = "http"
	case "wss":
		scheme = "https"
	default:
		return "", fmt.Errorf("--sfu %q: want ws://host/ws or wss://host/ws", signalling)
	}
	host, _, _ := strings.Cut(rest, "/")
	return scheme + "://" + host + sfusignal.AgentRoomsPath, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(o.level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	session, err := engines(o, log)
	if err != nil {
		return err
	}
	var secret []byte
	if o.secretFile != "" {
		if secret, err = secretfile.Read(o.secretFile); err != nil {
			return fmt.Errorf("--jwt-secret-file: %w", err)
		}
	}
	// A fresh token for each join and listing: they are checked only then.
	token := func(room string) (string, error) {
		if secret == nil {
			return "", nil
		}
		return auth.SignAgent(secret, room, "agent", "Translator", time.Minute)
	}
	sc := agent.ServeConfig{Session: session, Token: token, Every: o.every, Rooms: agent.Fixed(o.room)}
	h := &health{}
	if o.room == "" {
		u, err := roomsURL(o.sfu)
		if err != nil {
			return err
		}
		sc.Rooms = agent.SFURooms{URL: u, Token: func() (string, error) { return token(auth.AnyRoom) }}
		sc.Listed = h.set
		log.Info("finding rooms that want translation", "listing", u)
	} else {
		h.set(nil)
	}
	if o.healthListen != "" {
		ln, err := net.Listen("tcp", o.healthListen)
		if err != nil {
			return fmt.Errorf("--health-listen: %w", err)
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
	}
	return agent.Serve(ctx, sc)
}

// health answers 200 while the last room listing succeeded: an agent
// that cannot reach the SFU translates nothing.
type health struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

func (h *health) set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err, h.at = err, time.Now()
}

func (h *health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	err, at := h.err, h.at
	h.mu.Unlock()
	switch {
	case at.IsZero():
		http.Error(w, "starting: the SFU's rooms not listed yet", http.StatusServiceUnavailable)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ok")
	}
}

func healthcheck(args []string, getenv func(string) string, out io.Writer) int {
	listen := getenv(flagenv.Name(envPrefix, "health-listen"))
	if listen == "" {
		listen = "127.0.0.1:8090"
	}
	url := "http://" + listen + "/health"
	if len(args) > 0 {
		url = args[0]
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(url)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		fmt.Fprintf(out, "healthcheck: %s answered %s: %s", url, resp.Status, msg)
		return 1
	}
	return 0
}
