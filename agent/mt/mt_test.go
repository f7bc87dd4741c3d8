package mt_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jbcalling/platform/agent/mt"
	"github.com/jbcalling/platform/internal/enginetest"
)

func checkSpanish(t *testing.T, tr mt.Translator) {
	t.Helper()
	got, err := tr.Translate(context.Background(), "the meeting starts tomorrow morning", "en", "es")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("es: %q", got)
	for _, w := range []string{"reunión", "mañana"} {
		if !strings.Contains(got, w) {
			t.Errorf("%q has no %q", got, w)
		}
	}
	if _, err := tr.Translate(context.Background(), "hello", "en", "fr"); !errors.Is(err, mt.ErrPair) {
		t.Errorf("English to French: %v, want ErrPair", err)
	}
	if got, err := tr.Translate(context.Background(), "-u --help", "en", "es"); err != nil || strings.Contains(got, "Usage") {
		t.Errorf("text that looks like options: %q, %v; want it translated as text", got, err)
	}
}

func TestApertium(t *testing.T) {
	enginetest.Require(t, "apertium")
	checkSpanish(t, mt.Apertium{})
}

// The HTTP backend against the real apertium-apy, on loopback.
func TestApertiumAPY(t *testing.T) {
	enginetest.Require(t, "apertium-apy", "apertium")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("apertium-apy", "-p", fmt.Sprint(port), "/usr/share/apertium/modes")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(base + "/listPairs"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("apertium-apy did not listen within 30 s")
		}
	}
	checkSpanish(t, mt.HTTP{URL: base})
}
