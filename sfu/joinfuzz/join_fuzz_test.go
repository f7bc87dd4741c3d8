// Package joinfuzz fuzzes the SFU's join handler. It lives apart from the
// server tests because their TestMain re-executes the binary in a network
// namespace, which Go's fuzzing workers do not survive.
package joinfuzz

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jbcalling/platform/sfu/server"
	"github.com/jbcalling/platform/sfu/server/servertest"
	"github.com/jbcalling/platform/sfu/signal"
)

// FuzzJoin sends arbitrary first messages to the join handler: a valid
// join is admitted, anything else gets an error reply (or a pong), and
// the server never panics or stops answering.
func FuzzJoin(f *testing.F) {
	// No media is negotiated, so no namespace is needed.
	sfu := servertest.Start(f, "127.0.0.1", func(cfg *server.Config) {
		cfg.MaxRooms, cfg.MaxParticipants = 0, 0
		cfg.RateLimit, cfg.RateBurst = 1e6, 1e6
	})
	defer sfu.Close()
	url := sfu.WSURL()
	f.Add([]byte(`{"type":"join","v":1,"room":"r","name":"n"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		if err := c.Write(ctx, websocket.MessageText, data); err != nil {
			return // refused oversized frames close the connection
		}
		// A pong gets no reply; this ping makes sure something comes back.
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
		_, reply, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig && len(data) > signal.MaxMessageSize {
				return
			}
			t.Fatalf("no reply to %q: %v", data, err)
		}
		m, err := signal.Decode(reply)
		if err != nil {
			t.Fatalf("server replied %s: %v", reply, err)
		}
		in, inErr := signal.Decode(data)
		join, isJoin := in.(*signal.Join)
		switch m := m.(type) {
		case *signal.Joined:
			if !isJoin || inErr != nil || m.Room != join.Room || m.ID == "" {
				t.Fatalf("%q was answered with %s", data, reply)
			}
		case *signal.Error:
			if isJoin && inErr == nil && join.Version == signal.Version && join.Token == "" {
				t.Fatalf("valid anonymous join %q refused: %s", data, reply)
			}
		case *signal.Pong:
			switch in.(type) {
			case *signal.Ping, *signal.Pong:
			default:
				t.Fatalf("%q was answered with pong", data)
			}
		default:
			t.Fatalf("%q was answered with %s", data, reply)
		}
	})
}
