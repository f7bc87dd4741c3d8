package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jbcalling/platform/sfu/fastpath/mmsg"
	"github.com/jbcalling/platform/sfu/fastpath/srtpsend"
)

// floorEnv, when set in this program's environment, makes it the floor
// sender instead of itself (see FloorChild).
const floorEnv = "SFULOAD_FLOOR_SENDER"

// FloorSpec describes the fan-out whose bare cost the floor measures:
// what the SFU sent in the window, without anything else it does.
type FloorSpec struct {
	Addr      string        // local IP of senders and receivers
	Size      int           // datagram bytes (the mean forwarded packet)
	Receivers int           // sockets, one per subscribing participant
	Fanout    int           // datagrams per incoming packet (subscribers per track)
	Rate      float64       // incoming packets per second
	Duration  time.Duration // measured, after half a second of warm-up
}

// MeasureFanOutFloor is the forwarding floor of this machine: the process
// CPU per datagram of a second process that does nothing but the SFU's
// fan-out. It is woken as the SFU is, by an incoming datagram (spec.Rate
// a second, sent by this process), and sends one datagram to each of
// spec.Fanout receivers, to sockets of this process on the same address,
// each drained by its own goroutine as the subscribers' are. It reads and
// sends with the SFU's own code (srtprecv's raw reads of an ICE socket,
// srtpsend's sendmmsg from its twin). No SRTP, no WebRTC: what is left is
// the kernel's receiving, sending and loopback delivery (waking each
// receiver included) and the Go runtime's waking up per incoming
// datagram. It is the same process-wide measure as the SFU's CPU per
// forwarded packet, so the difference is what the SFU itself adds.
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
		spec.Addr, strconv.Itoa(spec.Size), strconv.Itoa(spec.Fanout), strings.Join(ports, ","),
	}, ";"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("fan-out floor: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("fan-out floor sender: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	fail := func(err error) (time.Duration, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return 0, fmt.Errorf("fan-out floor sender: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() { // its trigger port
		return fail(errors.New("no port"))
	}
	port, err := strconv.Atoi(lines.Text())
	if err != nil {
		return fail(fmt.Errorf("port %q", lines.Text()))
	}
	trig, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		return fail(err)
	}
	defer trig.Close()
	payload := make([]byte, spec.Size) // what a publisher's packet would be
	tick := time.NewTicker(time.Duration(float64(time.Second) / spec.Rate))
	defer tick.Stop()
	send := func(kind byte, d time.Duration) error {
		payload[0] = kind
		for end := time.Now().Add(d); time.Now().Before(end); {
			<-tick.C
			if _, err := trig.Write(payload); err != nil {
				return err
			}
		}
		return nil
	}
	if err := errors.Join(send(floorWarmup, time.Second/2), send(floorMeasure, spec.Duration)); err != nil {
		return fail(err)
	}
	// Loopback does not lose datagrams, but a sender that never answers
	// must not hang the run.
	stop := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
	defer stop.Stop()
	payload[0] = floorStop
	if _, err := trig.Write(payload); err != nil {
		return fail(err)
	}
	if !lines.Scan() {
		return fail(errors.New("no result"))
	}
	ns, err := strconv.ParseInt(lines.Text(), 10, 64)
	if err != nil {
		return fail(fmt.Errorf("printed %q", lines.Text()))
	}
	return time.Duration(ns), nil
}

// The first byte of a trigger datagram.
const (
	floorWarmup  = 1
	floorMeasure = 2
	floorStop    = 3
)

// FloorChild runs the floor sender if this process was started as one
// (call it first thing in main and in TestMain): it prints its trigger
// port, forwards until told to stop, prints its CPU nanoseconds per
// datagram and reports true.
func FloorChild() bool {
	spec, ok := os.LookupEnv(floorEnv)
	if !ok {
		return false
	}
	if err := floorSend(spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return true
}

func floorSend(spec string) error {
	f := strings.Split(spec, ";")
	if len(f) != 4 {
		return errors.New("floor sender: bad spec")
	}
	ip := net.ParseIP(f[0])
	size, err1 := strconv.Atoi(f[1])
	fanout, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil || ip == nil || size <= 0 || fanout <= 0 {
		return fmt.Errorf("floor sender: bad spec: %v", err)
	}
	addr, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		addr, _ = netip.AddrFromSlice(ip)
	}
	var to []netip.AddrPort
	for _, p := range strings.Split(f[3], ",") {
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return fmt.Errorf("floor sender: bad port %q", p)
		}
		to = append(to, netip.AddrPortFrom(addr, uint16(port)))
	}
	// The SFU's own sockets and calls: the ICE port's socket read as
	// srtprecv's readers do, on the goroutine that forwards (non-blocking
	// raw reads), sends from srtpsend's twin (raw sendmmsg).
	port, err := srtpsend.Listen(&net.UDPAddr{IP: ip}, 1, 4<<20)
	if err != nil {
		return err
	}
	defer port.Close()
	sock, conn := port.Send, port.Readers[0]
	if sock == nil {
		return fmt.Errorf("floor sender: %w", port.Unshared)
	}
	rx, err := mmsg.NewReader(conn)
	if err != nil {
		return err
	}
	fmt.Println(conn.LocalAddr().(*net.UDPAddr).Port)
	snd := sock.NewSender()
	ds := make([]srtpsend.Datagram, fanout)
	var bufs [mmsg.MaxBatch][]byte
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	var lens [mmsg.MaxBatch]int
	var froms [mmsg.MaxBatch]netip.AddrPort
	next := 0
	var start time.Duration
	rounds := 0
	for {
		got, err := rx.ReadBatch(bufs[:], lens[:], froms[:])
		if err != nil {
			return err
		}
		for k := range got {
			buf := bufs[k][:lens[k]]
			switch buf[0] {
			case floorStop:
				fmt.Println(int64(processCPU()-start) / int64(max(1, rounds*fanout)))
				return nil
			case floorMeasure:
				if rounds == 0 {
					start = processCPU()
				}
				rounds++
			}
			// Each trigger is sent on its own, to the next fanout
			// receivers, round robin: the triggers are paced, one per
			// wake-up, so there is no burst to segment.
			for i := range ds {
				ds[i] = srtpsend.Datagram{B: buf, To: to[next]}
				next = (next + 1) % len(to)
			}
			if _, err := snd.Send(ds); err != nil {
				return err
			}
		}
	}
}

// processCPU is this process's user+system CPU time, all threads.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
