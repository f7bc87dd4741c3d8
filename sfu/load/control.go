package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// control sends one publisher's video track, besides to the SFU, straight
// to a local pion receiver: the same packets, the same pion stacks at
// both ends, the same machine and moment, without the SFU. The difference
// between the video latency through the SFU and this one is what the SFU
// adds; neither alone isolates it on a machine the load tool shares.
type control struct {
	tx, rx *webrtc.PeerConnection
	wg     sync.WaitGroup // the RTCP reader
	reader chan struct{}  // closed when the track reader returns, if it started
	began  atomic.Bool

	mu  sync.Mutex
	lat histogram // while measuring
}

// startControl connects the pair in-process (offer and answer exchanged
// directly, ICE on the run's address) and starts measuring latency on it
// whenever r.measuring is set.
func (r *runner) startControl(ctx context.Context, video *webrtc.TrackLocalStaticRTP) (*control, error) {
	api := webrtc.NewAPI(webrtc.WithSettingEngine(*r.se))
	c := &control{reader: make(chan struct{})}
	var err error
	if c.tx, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	if c.rx, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		c.tx.Close()
		return nil, err
	}
	fail := func(err error) (*control, error) {
		c.close()
		return nil, fmt.Errorf("latency control pair: %w", err)
	}
	sender, err := c.tx.AddTrack(video)
	if err != nil {
		return fail(err)
	}
	c.wg.Add(1)
	go func() { // RTCP must be read for pion's NACK responder to run
		defer c.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	flowing := make(chan struct{})
	var once sync.Once
	c.rx.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if c.began.Swap(true) {
			return // one video track only
		}
		defer close(c.reader)
		buf := make([]byte, 1500)
		var pkt rtp.Packet
		for {
			n, _, err := t.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			once.Do(func() { close(flowing) })
			if !r.measuring.Load() || pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			if ts, ok := sentAt(pkt.Payload); ok {
				c.mu.Lock()
				c.lat.add(now.Sub(time.Unix(0, ts)))
				c.mu.Unlock()
			}
		}
	})
	if err := exchange(c.tx, c.rx); err != nil {
		return fail(err)
	}
	select {
	case <-flowing:
		return c, nil
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(r.cfg.ConnectTimeout):
		return fail(errors.New("no video arrived"))
	}
}

// exchange negotiates offerer → answerer with complete candidate lists.
func exchange(offerer, answerer *webrtc.PeerConnection) error {
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		return err
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		return err
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		return err
	}
	<-gathered
	return offerer.SetRemoteDescription(*answerer.LocalDescription())
}

func (c *control) latency() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lat.summary()
}

func (c *control) close() {
	_ = c.tx.Close()
	_ = c.rx.Close()
	c.wg.Wait()
	if c.began.Load() {
		<-c.reader
	}
}
