package stacks

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSFUEnvMatchesItsFlags keeps the stack's SFU_* variables in step with
// the flags sfu/cmd/sfu actually defines (each flag reads SFU_<FLAG>): a
// renamed flag would otherwise be silently ignored in production.
func TestSFUEnvMatchesItsFlags(t *testing.T) {
	src, err := os.ReadFile("../sfu/cmd/sfu/main.go")
	if err != nil {
		t.Skipf("sfu/cmd/sfu not present: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`fs\.\w*Var\(&[\w.]+, "([a-z0-9-]+)"`).FindAllStringSubmatch(string(src), -1) {
		flags["SFU_"+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
	}
	if len(flags) < 5 {
		t.Fatalf("found only %d flags in sfu/cmd/sfu/main.go; the pattern no longer matches", len(flags))
	}
	for _, stack := range []string{"prod", "staging"} {
		_, st := load(t, stack)
		s := svc(t, st, "sfu")
		for k := range s.Env {
			if !flags[k] {
				t.Errorf("%s: SFU env %s matches no flag of sfu/cmd/sfu", stack, k)
			}
		}
		for k := range s.ExternalIPEnv {
			if !flags[k] {
				t.Errorf("%s: SFU env %s matches no flag of sfu/cmd/sfu", stack, k)
			}
		}
		if s.Env["SFU_ALLOW_ANONYMOUS"] != "false" {
			t.Errorf("%s: the stack must set SFU_ALLOW_ANONYMOUS=false", stack)
		}
	}
}
