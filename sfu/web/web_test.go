package web

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// names are the matches of re's first group in text, sorted, once each.
func names(re *regexp.Regexp, text string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// classBody is the text of class name's body (up to the next top-level
// closing brace).
func classBody(t *testing.T, src, name string) string {
	t.Helper()
	start := strings.Index(src, "class "+name+" ")
	if start < 0 {
		t.Fatalf("no class %s", name)
	}
	end := strings.Index(src[start:], "\n}\n")
	if end < 0 {
		t.Fatalf("class %s does not end", name)
	}
	return src[start : start+end]
}

// sfu.d.ts declares what sfu.js exports, and Session's public methods,
// no more and no less: the declarations cannot drift from the module.
func TestDeclarationsMatchTheModule(t *testing.T) {
	js, err := Files.ReadFile("sfu.js")
	if err != nil {
		t.Fatal(err)
	}
	dts, err := Files.ReadFile("sfu.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	exported := regexp.MustCompile(`(?m)^export (?:async )?(?:function|class|const) (\w+)`)
	if got, want := names(exported, string(dts)), names(exported, string(js)); !slices.Equal(got, want) {
		t.Errorf("sfu.d.ts exports %v, sfu.js %v", got, want)
	}
	jsMethod := regexp.MustCompile(`(?m)^  (?:async )?([a-z]\w*)\(`)
	dtsMethod := regexp.MustCompile(`(?m)^  ([a-z]\w*)\(`)
	jsMethods := slices.DeleteFunc(names(jsMethod, classBody(t, string(js), "Session")), func(m string) bool { return m == "constructor" })
	dtsMethods := slices.DeleteFunc(names(dtsMethod, classBody(t, string(dts), "Session")), func(m string) bool {
		return m == "addEventListener" || m == "removeEventListener"
	})
	if !slices.Equal(dtsMethods, jsMethods) {
		t.Errorf("Session methods: sfu.d.ts %v, sfu.js %v", dtsMethods, jsMethods)
	}
	if len(jsMethods) < 8 {
		t.Fatalf("found only %v in sfu.js's Session", jsMethods)
	}
	// Every event the module emits is declared.
	emitted := names(regexp.MustCompile(`_emit\("(\w+)"`), string(js))
	for _, ev := range emitted {
		if !strings.Contains(string(dts), "  "+ev+": CustomEvent") {
			t.Errorf("sfu.js emits %q; sfu.d.ts does not declare it", ev)
		}
	}
}
