package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "jwt")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*options) string
		err   string
	}{
		{name: "defaults", check: func(o *options) string {
			c := o.cfg
			if c.Listen != "127.0.0.1:8080" || c.ICEUDPPort != 40000 || c.ICETCPPort != 40000 || !c.AllowAnonymous {
				return fmt.Sprintf("%+v", c)
			}
			return ""
		}},
		{name: "environment", env: map[string]string{"SFU_LISTEN": ":9000", "SFU_PUBLIC_IP": "203.0.113.7,203.0.113.8", "SFU_ALLOW_ANONYMOUS": "false", "SFU_JWT_SECRET_FILE": secret, "SFU_MAX_PARTICIPANTS": "7"},
			check: func(o *options) string {
				c := o.cfg
				if c.Listen != ":9000" || len(c.PublicIPs) != 2 || c.AllowAnonymous || string(c.JWTSecret) != "s3cret" || c.MaxParticipants != 7 {
					return fmt.Sprintf("%+v", c)
				}
				return ""
			}},
		{name: "flags win over environment", args: []string{"--listen", ":9100", "--public-ip", "198.51.100.1"}, env: map[string]string{"SFU_LISTEN": ":9000", "SFU_PUBLIC_IP": "203.0.113.7"},
			check: func(o *options) string {
				if o.cfg.Listen != ":9100" || len(o.cfg.PublicIPs) != 1 || o.cfg.PublicIPs[0] != "198.51.100.1" {
					return fmt.Sprintf("%+v", o.cfg)
				}
				return ""
			}},
		{name: "repeatable list", args: []string{"--turn-url", "turn:a:3478", "--turn-url", "turns:a:5349"}, check: func(o *options) string {
			if len(o.cfg.TURNURLs) != 2 {
				return fmt.Sprint(o.cfg.TURNURLs)
			}
			return ""
		}},
		{name: "bad env value", env: map[string]string{"SFU_ICE_UDP_PORT": "many"}, err: "SFU_ICE_UDP_PORT"},
		{name: "missing secret file", args: []string{"--jwt-secret-file", filepath.Join(dir, "nope")}, err: "--jwt-secret-file"},
		{name: "stray argument", args: []string{"serve"}, err: "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(tc.args, env(tc.env), io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(o); msg != "" {
				t.Fatalf("parsed %s", msg)
			}
		})
	}
}

// --help documents every setting and its environment variable scheme.
func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := parse([]string{"--help"}, env(nil), &out); err == nil {
		t.Fatal("--help did not stop")
	}
	for _, want := range []string{"SFU_", "-listen", "-tls-listen", "-tls-cert", "-tls-key", "-ice-udp-port", "-ice-tcp-port", "-ice-port-range", "-ice-bind", "-public-ip", "-stun", "-turn-url", "-turn-secret-file", "-jwt-secret-file", "-allow-anonymous", "-max-rooms", "-max-participants", "-max-tracks", "-idle-timeout", "-ice-timeout", "-drain-timeout", "-log-level", "healthcheck"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

// Configuration errors are reported before anything listens.
func TestRunRejectsBadConfig(t *testing.T) {
	for _, args := range [][]string{
		{"--allow-anonymous=false"},
		{"--public-ip", "not-an-ip"},
		{"--ice-port-range", "500-100"},
		{"--tls-listen", ":8443"},
		{"--turn-url", "http://x"},
		{"--log-level", "loud"},
	} {
		err := run(context.Background(), args, env(nil), io.Discard)
		if err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The command serves /health, the healthcheck subcommand sees it, and a
// cancelled context (SIGTERM) makes it drain and exit.
func TestRunServesUntilTerminated(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", addr, "--ice-bind", "127.0.0.1", "--ice-udp-port", "0", "--ice-tcp-port", "0", "--drain-timeout", "2s", "--log-level", "error"}, env(nil), io.Discard)
	}()
	url := "http://" + addr + "/health"
	deadline := time.Now().Add(10 * time.Second)
	for healthcheck([]string{url}, io.Discard) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("healthcheck never passed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within the drain time")
	}
	if healthcheck([]string{url}, io.Discard) == 0 {
		t.Fatal("healthcheck passes against a stopped server")
	}
}

// The Dockerfile builds on this engine from a static binary, and the
// container answers /health and turns healthy through its HEALTHCHECK.
func TestDockerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the image build in -short mode")
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers, so the image cannot be built here: %v: %s", err, bytes.TrimSpace(out))
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "sfu"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tag := fmt.Sprintf("platform-test/sfu:%d", time.Now().UnixNano())
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	docker("build", "-q", "-f", filepath.Join("..", "..", "Dockerfile"), "-t", tag, dir)
	defer func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() }()

	if user := docker("image", "inspect", "--format", "{{.Config.User}}", tag); user == "" || strings.HasPrefix(user, "0") || user == "root" {
		t.Fatalf("image runs as %q, want a non-root user", user)
	}
	id := docker("run", "-d", "-p", "127.0.0.1::8080", "-e", "SFU_ICE_TCP_PORT=-1", tag)
	defer func() { _ = exec.Command("docker", "rm", "-f", id).Run() }()
	hostPort := docker("port", id, "8080/tcp")
	hostPort = strings.Split(hostPort, "\n")[0]

	url := "http://" + hostPort + "/health"
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			var h struct{ Status string }
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && h.Status == "ok" {
				break
			}
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", id).CombinedOutput()
			t.Fatalf("container /health never answered ok: %v\n%s", err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		status := docker("inspect", "--format", "{{.State.Health.Status}}", id)
		if status == "healthy" {
			break
		}
		if status == "unhealthy" || time.Now().After(deadline) {
			t.Fatalf("container health %q", status)
		}
		time.Sleep(time.Second)
	}
}

func TestHealthURL(t *testing.T) {
	for listen, want := range map[string]string{
		"":              "http://127.0.0.1:8080/health",
		":8080":         "http://127.0.0.1:8080/health",
		"0.0.0.0:9000":  "http://127.0.0.1:9000/health",
		"[::]:9000":     "http://127.0.0.1:9000/health",
		"10.0.0.5:8080": "http://10.0.0.5:8080/health",
		"[::1]:8080":    "http://[::1]:8080/health",
	} {
		if got := healthURL(listen); got != want {
			t.Errorf("healthURL(%q) = %q, want %q", listen, got, want)
		}
	}
}
