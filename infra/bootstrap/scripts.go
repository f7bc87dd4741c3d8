package bootstrap

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// The scripts are real files (shellcheck runs on them as they are and on
// every rendering): each declares its parameters with `: "${NAME:?}"` and
// carries a marker line where render writes `readonly NAME='value'` lines.
//
//go:embed scripts/*.sh
var scriptFS embed.FS

const paramsMarker = "# @PARAMETERS@"

// param is one rendered script parameter.
type param struct{ name, value string }

var paramName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// render returns the embedded script `name` with its parameter block filled in.
func render(name string, params ...param) (string, error) {
	raw, err := scriptFS.ReadFile("scripts/" + name)
	if err != nil {
		return "", fmt.Errorf("bootstrap: no embedded script %q", name)
	}
	src := string(raw)
	if strings.Count(src, paramsMarker+"\n") != 1 {
		return "", fmt.Errorf("bootstrap: script %s must contain the line %q exactly once", name, paramsMarker)
	}
	var b strings.Builder
	b.WriteString("# Parameters rendered by the Pulumi program (infra/bootstrap).\n")
	for _, p := range params {
		if !paramName.MatchString(p.name) {
			return "", fmt.Errorf("bootstrap: script %s: bad parameter name %q", name, p.name)
		}
		if strings.ContainsAny(p.value, "\x00\n\r") {
			return "", fmt.Errorf("bootstrap: script %s: parameter %s contains a line break or NUL", name, p.name)
		}
		fmt.Fprintf(&b, "readonly %s=%s\n", p.name, shellQuote(p.value))
	}
	return strings.Replace(src, paramsMarker+"\n", b.String(), 1), nil
}

// shellQuote quotes s as one single-quoted shell word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// asRoot turns a rendered script into the command line a remote.Command runs:
// the SSH user is an ordinary GCE login with passwordless sudo. The script
// stays the command text (readable in `pulumi preview` diffs, and a change to
// it is an update of that one resource); secrets only ever travel on stdin.
func asRoot(script string) string {
	return "sudo -n bash -c " + shellQuote(script)
}

// version is a short content hash used to tell whether a node has applied a
// given script.
func version(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
