package swarmtest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// TraefikVersion is the Traefik release tools/traefik builds.
const TraefikVersion = "v3.0.4"

// BuildImage builds an image from an in-memory context (path -> file) with
// the engine's builder and returns its ID ("sha256:..."). Services run
// images by ID: the engine then never tries to pull (a tag would make every
// task attempt a pull from a registry this machine cannot reach).
func (e *Engine) BuildImage(ctx context.Context, tag string, files map[string]File) (string, error) {
	return e.BuildImageWith(ctx, tag, files, nil)
}

// BuildImageWith is BuildImage with Dockerfile ARG values.
func (e *Engine) BuildImageWith(ctx context.Context, tag string, files map[string]File, buildArgs map[string]string) (string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(f.Data)), ModTime: time.Unix(0, 0)}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	q := url.Values{"t": {tag}, "rm": {"1"}, "forcerm": {"1"}}
	if len(buildArgs) > 0 {
		raw, err := json.Marshal(buildArgs)
		if err != nil {
			return "", err
		}
		q.Set("buildargs", string(raw))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/"+APIVersion+"/build?"+q.Encode(), &buf)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := e.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("building %s: %w", tag, err)
	}
	defer resp.Body.Close()
	// The answer is a stream of JSON messages; a failed step is an "error"
	// message inside a 200 answer.
	var log strings.Builder
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var m struct {
			Stream, Error string
			Message       string `json:"message"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("building %s: reading build output: %w", tag, err)
		}
		log.WriteString(m.Stream)
		if m.Error != "" || (resp.StatusCode/100 != 2 && m.Message != "") {
			return "", fmt.Errorf("building %s: %s%s\n%s", tag, m.Error, m.Message, log.String())
		}
	}
	var img struct{ ID string }
	if err := e.Do(ctx, http.MethodGet, "/images/"+tag+"/json", nil, nil, &img); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", tag, err, log.String())
	}
	return img.ID, nil
}

// File is one file of a build context.
type File struct {
	Data []byte
	Mode int64
}

// GoBuild builds a static linux binary of package pkg (run from dir, a
// directory inside the module that holds pkg) and returns its bytes.
func GoBuild(ctx context.Context, dir, pkg string, extraEnv ...string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "swarmtest-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), extraEnv...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return os.ReadFile(out)
}

// ScratchImage builds a FROM scratch image holding one static binary at
// path (absolute, e.g. /usr/local/bin/traefik), run as user ("0" where the
// process must bind ports below 1024 or read the engine's socket), with the
// given extra Dockerfile lines. PATH is set so that health checks can name
// the binary the way the official images do.
func (e *Engine) ScratchImage(ctx context.Context, tag, path, user string, bin []byte, extra ...string) (string, error) {
	rel := strings.TrimPrefix(path, "/")
	df := "FROM scratch\nENV PATH=/usr/local/bin:/usr/bin:/bin\nCOPY " + rel + " " + path + "\nUSER " + user +
		"\nENTRYPOINT [\"" + path + "\"]\n" + strings.Join(extra, "\n") + "\n"
	return e.BuildImage(ctx, tag, map[string]File{
		"Dockerfile": {Data: []byte(df)},
		rel:          {Data: bin, Mode: 0o755},
	})
}

// DirImage builds an image from a directory's Dockerfile, with extra files
// (e.g. a binary built beforehand) added to the context. Test files and
// dot-directories are left out of the context.
func (e *Engine) DirImage(ctx context.Context, tag, dir string, extra map[string]File) (string, error) {
	files := map[string]File{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, "_test.go") || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st, _ := d.Info()
		files[filepath.ToSlash(rel)] = File{Data: data, Mode: int64(st.Mode().Perm())}
		return nil
	})
	if err != nil {
		return "", err
	}
	if _, ok := files["Dockerfile"]; !ok {
		return "", fmt.Errorf("%s has no Dockerfile", dir)
	}
	for k, v := range extra {
		files[k] = v
	}
	return e.BuildImage(ctx, tag, files)
}

// TraefikBinary returns the path of a Traefik binary built from
// tools/traefik (a wrapper module, so Traefik stays out of the project's
// go.mod), building it on first use. The binary is cached under cacheDir
// keyed by version: the build takes minutes, later runs reuse it.
func TraefikBinary(ctx context.Context, repoRoot, cacheDir string) (string, error) {
	dir := filepath.Join(cacheDir, "platform-traefik-"+TraefikVersion)
	bin := filepath.Join(dir, "traefik")
	if st, err := os.Stat(bin); err == nil && st.Size() > 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := bin + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp,
		"github.com/traefik/traefik/v3/cmd/traefik")
	cmd.Dir = filepath.Join(repoRoot, "tools", "traefik")
	// -mod=mod: the wrapper's go.sum is completed from the module proxy on
	// first build; GOWORK=off keeps any workspace out of it.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=mod", "GOWORK=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building traefik %s in tools/traefik: %v\n%s", TraefikVersion, err, msg)
	}
	return bin, os.Rename(tmp, bin)
}

// DebianRelease is the Debian release of the agent's image (agent/Dockerfile).
const DebianRelease = "bookworm"

// DebianBase returns the ID of a minimal Debian image made here, where no
// registry can be pulled from: debootstrap's minbase variant from Debian's
// mirror, imported as an image. It is made once per engine (tagged) and
// stands in for the official debian:<release>-slim as an image's BASE.
func (e *Engine) DebianBase(ctx context.Context) (string, error) {
	tag := "platform-swarmtest/debian:" + DebianRelease
	var img struct{ ID string }
	if err := e.Do(ctx, http.MethodGet, "/images/"+tag+"/json", nil, nil, &img); err == nil {
		return img.ID, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("the Debian base image needs debootstrap (.ci/run installs it): %w", err)
	}
	dir, err := os.MkdirTemp("", "swarmtest-debian-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", DebianRelease, dir, "http://deb.debian.org/debian")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("debootstrap %s: %v\n%s", DebianRelease, err, tail(out, 2000))
	}
	tarCmd := exec.CommandContext(ctx, "tar", "-C", dir, "-c", ".")
	body, err := tarCmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := tarCmd.Start(); err != nil {
		return "", err
	}
	q := url.Values{"fromSrc": {"-"}, "repo": {"platform-swarmtest/debian"}, "tag": {DebianRelease}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/"+APIVersion+"/images/create?"+q.Encode(), body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := e.hc.Do(req)
	if err != nil {
		_ = tarCmd.Wait()
		return "", fmt.Errorf("importing the Debian base: %w", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := tarCmd.Wait(); err != nil {
		return "", fmt.Errorf("tar of the Debian base: %w", err)
	}
	if resp.StatusCode/100 != 2 || bytes.Contains(msg, []byte(`"error"`)) {
		return "", fmt.Errorf("importing the Debian base: %s: %s", resp.Status, tail(msg, 2000))
	}
	if err := e.Do(ctx, http.MethodGet, "/images/"+tag+"/json", nil, nil, &img); err != nil {
		return "", fmt.Errorf("the imported Debian base: %w", err)
	}
	return img.ID, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
