package load

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// floorEnv, when set in this program's environment, makes it the floor
// sender instead of itself (see FloorChild).
const floorEnv = "SFULOAD_FLOOR_SENDER"

// FloorSpec describes the fan-out whose bare cost the floor measures:
// what the SFU sent in the window, without anything else it does.
type FloorSpec struct {
	Addr      string  // local IP of senders and receivers
	Size      int     // datagram bytes (the mean forwarded packet)
	Receivers int     // sockets, one per subscribing participant
	Fanout    int     // datagrams per incoming packet (subscribers per track)
	Rate      float64 // incoming packets per second
	Duration  time.Duration
}

// MeasureFanOutFloor is the forwarding floor of this machine: the process
// CPU per datagram of a second process that does nothing but the SFU's
// fan-out — spec.Rate times a second, one datagram to each of
// spec.Fanout receivers, sent with sendmmsg — to sockets of this process
// on the same address, each drained by its own goroutine as the
// subscribers' are. No SRTP, no receiving, no WebRTC: what is left is the
// kernel's sending and loopback delivery (including waking each receiver)
// and the Go runtime's waking up per round. Compared with the SFU's own
// CPU per forwarded packet (the same process-wide measure), it shows how
// much of that the SFU itself adds.
func MeasureFanOutFloor(spec FloorSpec) (time.Duration, error) {
	if spec.Receivers <= 0 || spec.Fanout <= 0 || spec.Rate <= 0 || spec.Size <= 0 {
		return 0, fmt.Errorf("fan-out floor: nothing to measure (%+v)", spec)
	}
	ip := net.ParseIP(spec.Addr)
	if ip == nil {
		return 0, fmt.Errorf("fan-out floor: bad address %q", spec.Addr)
	}
	var ports []string
	for range spec.Receivers {
		rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			return 0, fmt.Errorf("fan-out floor: %w", err)
		}
		defer rx.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
		ports = append(ports, strconv.Itoa(rx.LocalAddr().(*net.UDPAddr).Port))
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("fan-out floor: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), floorEnv+"="+strings.Join([]string{
		spec.Addr, strconv.Itoa(spec.Size), strconv.Itoa(spec.Fanout),
		strconv.FormatFloat(spec.Rate, 'f', 3, 64), spec.Duration.String(), strings.Join(ports, ","),
	}, ";"))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("fan-out floor sender: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("fan-out floor sender printed %q", out.String())
	}
	return time.Duration(ns), nil
}

// FloorChild runs the floor sender if this process was started as one
// (call it first thing in main and in TestMain): it sends, prints its CPU
// nanoseconds per datagram and reports true.
func FloorChild() bool {
	spec, ok := os.LookupEnv(floorEnv)
	if !ok {
		return false
	}
	ns, err := floorSend(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ns)
	return true
}

func floorSend(spec string) (int64, error) {
	f := strings.Split(spec, ";")
	if len(f) != 6 {
		return 0, errors.New("floor sender: bad spec")
	}
	ip := net.ParseIP(f[0])
	size, err1 := strconv.Atoi(f[1])
	fanout, err2 := strconv.Atoi(f[2])
	rate, err3 := strconv.ParseFloat(f[3], 64)
	d, err4 := time.ParseDuration(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil || ip == nil {
		return 0, fmt.Errorf("floor sender: bad spec: %v", err)
	}
	var to []*net.UDPAddr
	for _, p := range strings.Split(f[5], ",") {
		port, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("floor sender: bad port %q", p)
		}
		to = append(to, &net.UDPAddr{IP: ip, Port: port})
	}
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return 0, err
	}
	defer tx.Close()
	_ = tx.SetWriteBuffer(4 << 20) // as the SFU's ICE socket
	pc := ipv4.NewPacketConn(tx)
	payload := make([]byte, size)
	msgs := make([]ipv4.Message, fanout)
	next := 0
	round := func() error {
		for i := range msgs { // the next fanout receivers, round robin
			msgs[i].Buffers, msgs[i].Addr = [][]byte{payload}, to[next]
			next = (next + 1) % len(to)
		}
		for off := 0; off < len(msgs); {
			k, err := pc.WriteBatch(msgs[off:min(off+64, len(msgs))], 0)
			if err != nil {
				return err
			}
			off += k
		}
		return nil
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for range int(rate / 2) { // half a second to warm up
		<-tick.C
		if err := round(); err != nil {
			return 0, err
		}
	}
	start, rounds := processCPU(), 0
	for end := time.Now().Add(d); time.Now().Before(end); rounds++ {
		<-tick.C
		if err := round(); err != nil {
			return 0, err
		}
	}
	return int64(processCPU()-start) / int64(max(1, rounds*fanout)), nil
}

// processCPU is this process's user+system CPU time, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
