// Command agent captions a room: it joins it through the SFU as an agent
// and sends what each speaker says, translated into the languages the
// others want, as "captions" data messages.
//
//	agent --sfu ws://127.0.0.1:8080/ws --room standup --jwt-secret-file /run/secrets/sfu_jwt_secret
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jbcalling/platform/agent"
	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/agent/stt"
	"github.com/jbcalling/platform/sfu/auth"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(2)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("sfu", "ws://127.0.0.1:8080/ws", "the SFU's signalling endpoint")
	room := fs.String("room", "", "the room to caption (required)")
	secretFile := fs.String("jwt-secret-file", "", "file holding the SFU's join-token secret: the agent signs its own agent token (empty: join anonymously, which the SFU refuses captions from)")
	sttFlag := fs.String("stt", "pocketsphinx", `speech to text: "pocketsphinx" (local, English) or the URL of a service with the agent's STT contract`)
	mtFlag := fs.String("mt", "apertium", `translation: "apertium" (local) or the URL of an apertium-apy service`)
	lang := fs.String("default-language", "en", "language of speakers who declared none")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *room == "" {
		return errors.New("--room is required")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg := agent.Config{URL: *url, Room: *room, DefaultLanguage: *lang, Logger: log}
	switch v := *sttFlag; {
	case v == "pocketsphinx":
		cfg.Recognizer = stt.Sphinx{}
	case strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://"):
		cfg.Recognizer = stt.HTTP{URL: v}
	default:
		return fmt.Errorf("--stt %q: want pocketsphinx or an http(s) URL", v)
	}
	switch v := *mtFlag; {
	case v == "apertium":
		cfg.Translator = mt.Apertium{}
	case strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://"):
		cfg.Translator = mt.HTTP{URL: v}
	default:
		return fmt.Errorf("--mt %q: want apertium or an http(s) URL", v)
	}
	var secret []byte
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("--jwt-secret-file: %w", err)
		}
		if secret = []byte(strings.TrimSpace(string(b))); len(secret) == 0 {
			return fmt.Errorf("--jwt-secret-file %s is empty", *secretFile)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for {
		if secret != nil { // a fresh token for each join: it is checked only then
			var err error
			if cfg.Token, err = auth.SignAgent(secret, *room, "agent", "Translator", time.Minute); err != nil {
				return err
			}
		}
		err := agent.Run(ctx, cfg)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("session ended; joining again in 5 s", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
}
