package load

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// The SFU's /metrics series the report is computed from.
const (
	mCPU        = "process_cpu_seconds_total"
	mRSS        = "process_resident_memory_bytes"
	mForwarded  = "sfu_packets_forwarded_total"
	mFwdBytes   = "sfu_bytes_forwarded_total"
	mReceived   = "sfu_packets_received_total"
	mNACKs      = "sfu_nacks_total"
	mPLIs       = "sfu_plis_total"
	mKeyframes  = "sfu_keyframe_requests_total"
	mParticipnt = "sfu_participants"
	mDatagrams  = "sfu_direct_datagrams_total"
	mSegmented  = "sfu_direct_segmented_datagrams_total"
)

// sample is one scrape: every family's values summed over its labels.
type sample struct {
	at time.Time
	v  map[string]float64
}

func scrape(ctx context.Context, url string) (sample, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return sample{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return sample{}, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sample{}, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return sample{}, fmt.Errorf("parsing %s: %w", url, err)
	}
	s := sample{at: time.Now(), v: map[string]float64{}}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s.v[name] += value(m)
		}
	}
	return s, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// metricsURL turns the signalling URL (ws://host:port/ws) into the same
// server's /metrics URL.
func metricsURL(ws string) (string, error) {
	u, err := url.Parse(ws)
	if err != nil {
		return "", fmt.Errorf("--url: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("--url %q: want ws:// or wss://", ws)
	}
	u.Path, u.RawQuery = "/metrics", ""
	return u.String(), nil
}

// MeasureUDPSend is the CPU time one plain UDP send of size bytes costs
// this process: n sends from one unconnected socket to a loopback socket
// on addr (which another goroutine drains), timed with the sending
// thread's CPU clock so time spent by other threads and processes does not
// count. The sends are timed in udpRounds rounds and the median round
// counts: one round's figure varied by a quarter between runs on a busy
// machine. It is the denominator of the forwarding ratio.
func MeasureUDPSend(addr string, size, n int) (time.Duration, error) {
	ip := net.ParseIP(addr)
	if ip == nil {
		return 0, fmt.Errorf("udp baseline: bad address %q", addr)
	}
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return 0, fmt.Errorf("udp baseline: %w", err)
	}
	defer rx.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return 0, fmt.Errorf("udp baseline: %w", err)
	}
	defer tx.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, size)
	to := rx.LocalAddr().(*net.UDPAddr)
	send := func(k int) error {
		for range k {
			if _, err := tx.WriteToUDP(buf, to); err != nil {
				return fmt.Errorf("udp baseline: %w", err)
			}
		}
		return nil
	}
	if err := send(n / 10); err != nil { // warm up
		return 0, err
	}
	per := max(1, n/udpRounds)
	rounds := make([]time.Duration, udpRounds)
	for i := range rounds {
		start, err := threadCPU()
		if err != nil {
			return 0, err
		}
		if err := send(per); err != nil {
			return 0, err
		}
		end, err := threadCPU()
		if err != nil {
			return 0, err
		}
		rounds[i] = (end - start) / time.Duration(per)
	}
	slices.Sort(rounds)
	return rounds[len(rounds)/2], nil
}

// udpRounds is how many rounds MeasureUDPSend takes the median of.
const udpRounds = 5

func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("thread CPU clock: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// loadAvg is /proc/loadavg's first three fields, recorded next to results
// because the machine may be shared.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// udpDrops is the kernel's count of UDP datagrams dropped for a full
// receive buffer in this network namespace (-1 when unreadable).
func udpDrops() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					return -1
				}
				return v
			}
		}
	}
	return -1
}
