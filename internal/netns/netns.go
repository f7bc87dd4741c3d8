// Package netns runs a test binary inside a private network namespace, so
// that WebRTC stacks (pion, Chromium) which gather candidates on every
// interface can only ever reach addresses inside that namespace.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { netns.Main(m) }
//
// and guard tests that open peer connections with netns.Require(t).
//
// The namespace has lo up and a veth pair v0/v1 with 10.203.0.1/24 on v0 and
// a default route through v0: Chromium and pion then offer a 10.203.0.1 host
// candidate and connect, and no packet leaves the namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

const envKey = "PLATFORM_TEST_NETNS"

// Addr is the address tests in the namespace use for WebRTC host candidates.
const Addr = "10.203.0.1"

var reason = "netns.Main was not called from TestMain"

// Isolated reports whether this process runs inside the private namespace
// (either kind).
func Isolated() bool { return os.Getenv(envKey) == "1" || os.Getenv(envKey) == "lo" }

// Require skips t, saying why, unless the process is isolated.
func Require(t testing.TB) {
	t.Helper()
	if !Isolated() {
		t.Skipf("needs a private network namespace (WebRTC must not reach the host's interfaces): %s", reason)
	}
}

// Main re-executes the test binary in a new network namespace and exits
// with its status. Where a namespace cannot be made (not root, no iproute2),
// it runs the tests here and Require skips those that need isolation.
func Main(m *testing.M) { run(m, "1") }

// MainLoopback is Main with a namespace that has only lo: nothing but this
// process's own listeners can be reached (an offline Pulumi preview).
func MainLoopback(m *testing.M) { run(m, "lo") }

func run(m *testing.M, kind string) {
	if os.Getenv(envKey) == "lo" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "netns: lo up: %v: %s\n", err, out)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	if Isolated() {
		if err := setup(); err != nil {
			fmt.Fprintf(os.Stderr, "netns: setting up the namespace: %v\n", err)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		reason = "iproute2's ip command is not installed"
		os.Exit(m.Run())
	}
	self, err := os.Executable()
	if err != nil {
		reason = "cannot find the test binary: " + err.Error()
		os.Exit(m.Run())
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envKey+"="+kind)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	default:
		reason = fmt.Sprintf("cannot create a network namespace (%v); run the tests as root", err)
		os.Exit(m.Run())
	}
}

func setup() error {
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"addr", "add", Addr + "/24", "dev", "v0"},
		{"link", "set", "v0", "up"},
		{"link", "set", "v1", "up"},
		{"route", "add", "default", "dev", "v0"},
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	return nil
}
