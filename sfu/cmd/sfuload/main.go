// Command sfuload measures a running SFU with real WebRTC participants:
// P publishers and S subscribers in each of R rooms for a fixed time, then
// a table (and optionally JSON) of forwarded packets, loss, NACKs/PLIs,
// the SFU's CPU per forwarded packet against a plain UDP send (the
// forwarding ratio), latency, join → first keyframe and memory.
//
//	sfuload --url ws://10.203.0.1:8080/ws --ice-ip 10.203.0.1 --rooms 1 --publishers 1 --subscribers 50
//
// Run it, and the SFU, in a private network namespace (run-in-netns.sh):
// pion gathers candidates on every interface. docs/benchmarks.md has the
// commands and results.
package main

import (
	"context"
	"encoding/json"
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

	"github.com/jbcalling/platform/sfu/load"
)

func main() {
	if load.FloorChild() { // this process is the fan-out floor's sender
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sfuload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "markdown" {
		return markdown(args[1:], stdout)
	}
	c := load.Defaults()
	fs := flag.NewFlagSet("sfuload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:8080/ws", "the SFU's signalling URL")
	fs.StringVar(&c.MetricsURL, "metrics", "", "the SFU's /metrics URL (default: derived from --url)")
	fs.IntVar(&c.Rooms, "rooms", c.Rooms, "rooms")
	fs.IntVar(&c.Publishers, "publishers", c.Publishers, "publishers per room (each also receives the others)")
	fs.IntVar(&c.Subscribers, "subscribers", c.Subscribers, "receive-only participants per room, joining after the publishers")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "measurement window")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "wait after every track flows, before measuring")
	fs.BoolVar(&c.Audio, "audio", c.Audio, "publish Opus-sized audio at 50 packets/s")
	fs.IntVar(&c.AudioPayload, "audio-bytes", c.AudioPayload, "audio payload bytes per packet")
	fs.IntVar(&c.VideoBitrate, "video-bitrate", c.VideoBitrate, "video bits/s per publisher (0: no video)")
	fs.BoolVar(&c.Simulcast, "simulcast", c.Simulcast, "publish video as three simulcast layers (a tenth, a third and all of --video-bitrate); each subscriber receives one")
	fs.IntVar(&c.FPS, "fps", c.FPS, "video frames per second")
	fs.DurationVar(&c.KeyframeInterval, "keyframe-interval", c.KeyframeInterval, "periodic keyframe interval (publishers also send one on every PLI)")
	fs.IntVar(&c.PacketSize, "packet-size", c.PacketSize, "largest video RTP packet in bytes")
	fs.DurationVar(&c.FloorDuration, "floor-duration", c.FloorDuration, "after the run, measure the fan-out floor this long (0: skip)")
	fs.StringVar(&c.ICEAddr, "ice-ip", "", "gather ICE candidates only on this local IP (e.g. the namespace's 10.203.0.1)")
	secretFile := fs.String("jwt-secret-file", "", "sign join tokens with this HS256 secret (default: anonymous joins)")
	fs.IntVar(&c.JoinConcurrency, "join-concurrency", c.JoinConcurrency, "simultaneous joins")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", c.ConnectTimeout, "bound on each phase: publishers connected, all tracks flowing")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file (- for stdout, replacing the table)")
	verbose := fs.Bool("v", false, "log the clients' warnings")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sfuload [flags]\n       sfuload markdown REPORT.json...\n\nDrives a running SFU with WebRTC publishers and subscribers and reports\nwhat it costs the SFU. Run it in a private network namespace (see run-in-netns.sh).\n'markdown' prints --json reports as the results table of docs/benchmarks.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return err
		}
		c.JWTSecret = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	if *verbose {
		c.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	// A hard bound, whatever the SFU does.
	ctx, cancel := context.WithTimeout(ctx, 3*c.ConnectTimeout+c.Warmup+c.Duration+time.Minute)
	defer cancel()
	rep, err := load.Run(ctx, c)
	if err != nil {
		return err
	}
	if *jsonOut != "-" {
		if err := rep.WriteTable(stdout); err != nil {
			return err
		}
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if *jsonOut == "-" {
			_, err = stdout.Write(b)
		} else {
			err = os.WriteFile(*jsonOut, b, 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// markdown prints reports written with --json as docs/benchmarks.md's
// results table.
func markdown(paths []string, stdout io.Writer) error {
	if len(paths) == 0 {
		return errors.New("markdown: no reports given (sfuload markdown REPORT.json...)")
	}
	var reps []*load.Report
	for _, p := range paths {
		rep, err := load.ReadReport(p)
		if err != nil {
			return err
		}
		reps = append(reps, rep)
	}
	return load.WriteMarkdown(stdout, reps)
}
