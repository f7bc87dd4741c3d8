package demopage

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// firefoxPrefs make a fresh profile a test browser: fake camera and
// microphone without a permission prompt, host candidates as addresses
// rather than mDNS names, and nothing that phones home.
var firefoxPrefs = map[string]any{
	"media.navigator.streams.fake":                      true,
	"media.navigator.permission.disabled":               true,
	"media.peerconnection.ice.obfuscate_host_addresses": false,
	"media.autoplay.default":                            0,
	"browser.shell.checkDefaultBrowser":                 false,
	"datareporting.policy.dataSubmissionEnabled":        false,
	"toolkit.telemetry.enabled":                         false,
	"app.update.enabled":                                false,
}

// firefox drives one Firefox process over WebDriver BiDi, the W3C
// protocol it serves on a WebSocket.
type firefox struct {
	conn    *websocket.Conn
	context string // the browsing context (tab)

	mu      sync.Mutex
	nextID  int
	pending map[int]chan bidiReply
	closed  error
}

type bidiReply struct {
	Type    string          `json:"type"` // success, error, event
	ID      int             `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

var bidiListening = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

func startFirefox(t *testing.T, execPath, dir string, o Options, p *Page) (driver, error) {
	if o.Netns != "" || len(o.Flags) > 0 {
		return nil, errors.New("firefox pages run in the test's own namespace and take no Chromium flags")
	}
	var prefs strings.Builder
	for k, v := range firefoxPrefs {
		b, _ := json.Marshal(v)
		fmt.Fprintf(&prefs, "user_pref(%q, %s);\n", k, b)
	}
	if err := os.WriteFile(filepath.Join(dir, "user.js"), []byte(prefs.String()), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(execPath, "--headless", "--no-remote", "--profile", dir,
		"--remote-debugging-port", "0", "--width", "1100", "--height", "800", "about:blank")
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // killed at cleanup: its exit status says nothing
	// Firefox's content processes share its process group.
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // gone already is fine
		<-exited
	})

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := bidiListening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var endpoint string
	select {
	case endpoint = <-found:
	case <-exited:
		return nil, errors.New("firefox exited before serving WebDriver BiDi")
	case <-time.After(60 * time.Second):
		return nil, errors.New("firefox did not serve WebDriver BiDi within 60 s")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, endpoint+"/session", nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to firefox: %w", err)
	}
	conn.SetReadLimit(64 << 20) // screenshots
	f := &firefox{conn: conn, pending: map[int]chan bidiReply{}}
	go f.read(p)
	t.Cleanup(func() { conn.CloseNow() })

	if _, err := f.call(ctx, "session.new", map[string]any{"capabilities": map[string]any{}}); err != nil {
		return nil, err
	}
	if _, err := f.call(ctx, "session.subscribe", map[string]any{"events": []string{"log.entryAdded"}}); err != nil {
		return nil, err
	}
	tree, err := f.call(ctx, "browsingContext.getTree", map[string]any{})
	if err != nil {
		return nil, err
	}
	var contexts struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := json.Unmarshal(tree, &contexts); err != nil || len(contexts.Contexts) == 0 {
		return nil, fmt.Errorf("firefox has no tab: %s", tree)
	}
	f.context = contexts.Contexts[0].Context
	return f, nil
}

// read delivers replies to their callers and the page's log entries to
// the test.
func (f *firefox) read(p *Page) {
	for {
		_, data, err := f.conn.Read(context.Background())
		if err != nil {
			f.mu.Lock()
			f.closed = err
			for id, ch := range f.pending {
				close(ch)
				delete(f.pending, id)
			}
			f.mu.Unlock()
			return
		}
		var r bidiReply
		if json.Unmarshal(data, &r) != nil {
			continue
		}
		if r.Type == "event" {
			if r.Method == "log.entryAdded" {
				var e struct {
					Type   string `json:"type"` // console or javascript
					Level  string `json:"level"`
					Text   string `json:"text"`
					Method string `json:"method"`
				}
				if json.Unmarshal(r.Params, &e) == nil {
					if e.Type == "javascript" {
						p.exception(e.Text)
					} else {
						p.console(e.Method, e.Text)
					}
				}
			}
			continue
		}
		f.mu.Lock()
		ch := f.pending[r.ID]
		delete(f.pending, r.ID)
		f.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

func (f *firefox) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	ch := make(chan bidiReply, 1)
	f.mu.Lock()
	if f.closed != nil {
		f.mu.Unlock()
		return nil, fmt.Errorf("firefox connection closed: %w", f.closed)
	}
	f.nextID++
	id := f.nextID
	f.pending[id] = ch
	f.mu.Unlock()
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	if err := f.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, errors.New("firefox connection closed")
		}
		if r.Type == "error" {
			return nil, fmt.Errorf("%s: %s: %s", method, r.Error, r.Message)
		}
		return r.Result, nil
	case <-ctx.Done():
		f.mu.Lock()
		delete(f.pending, id)
		f.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (f *firefox) navigate(ctx context.Context, url string) error {
	_, err := f.call(ctx, "browsingContext.navigate", map[string]any{"context": f.context, "url": url, "wait": "complete"})
	return err
}

func (f *firefox) evalJSON(ctx context.Context, script string) (string, error) {
	res, err := f.call(ctx, "script.evaluate", map[string]any{
		"expression":   script,
		"target":       map[string]any{"context": f.context},
		"awaitPromise": true,
	})
	if err != nil {
		return "", err
	}
	var r struct {
		Type   string `json:"type"` // success or exception
		Result struct {
			Type  string `json:"type"`
			Value any    `json:"value"`
		} `json:"result"`
		ExceptionDetails struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return "", err
	}
	if r.Type == "exception" {
		return "", fmt.Errorf("exception: %s", r.ExceptionDetails.Text)
	}
	s, ok := r.Result.Value.(string)
	if r.Result.Type != "string" || !ok {
		return "", fmt.Errorf("script gave a %s, not the JSON string it should", r.Result.Type)
	}
	return s, nil
}

func (f *firefox) screenshot(ctx context.Context) ([]byte, error) {
	res, err := f.call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": f.context})
	if err != nil {
		return nil, err
	}
	var r struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}
