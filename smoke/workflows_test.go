package smoke

// The GitHub workflows are part of the product: users rely on a fork PR never
// reaching our cloud credentials, on prod never being updated without an
// approval, on throwaway clusters always being destroyed and on drift failing
// loudly. These tests read .github/workflows/*.yml and check exactly those
// properties; each rule is also run against a broken workflow in
// testdata/workflows/ to prove it catches the mistake.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type workflow struct {
	File        string
	Name        string         `yaml:"name"`
	On          yaml.Node      `yaml:"on"`
	Permissions any            `yaml:"permissions"`
	Env         map[string]any `yaml:"env"`
	Concurrency any            `yaml:"concurrency"`
	Jobs        map[string]*job
}

type job struct {
	ID          string
	Raw         string         // the job's YAML, re-serialised, for "does it mention X" checks
	Name        string         `yaml:"name"`
	If          string         `yaml:"if"`
	Uses        string         `yaml:"uses"`
	Secrets     any            `yaml:"secrets"`
	Needs       any            `yaml:"needs"`
	Environment any            `yaml:"environment"`
	Concurrency any            `yaml:"concurrency"`
	Permissions any            `yaml:"permissions"`
	Env         map[string]any `yaml:"env"`
	Strategy    struct {
		Matrix map[string]any `yaml:"matrix"`
	} `yaml:"strategy"`
	Steps []step `yaml:"steps"`
}

type step struct {
	ID              string         `yaml:"id"`
	Name            string         `yaml:"name"`
	If              string         `yaml:"if"`
	Uses            string         `yaml:"uses"`
	Run             string         `yaml:"run"`
	With            map[string]any `yaml:"with"`
	Env             map[string]any `yaml:"env"`
	ContinueOnError any            `yaml:"continue-on-error"`
}

func (s step) label() string {
	if s.Name != "" {
		return s.Name
	}
	if s.Uses != "" {
		return s.Uses
	}
	return firstLine(s.Run)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func loadWorkflow(path string) (*workflow, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var wf workflow
	if err := yaml.Unmarshal(raw, &wf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Jobs are decoded by hand to keep each job's own YAML text.
	var doc struct {
		Jobs map[string]yaml.Node `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	wf.File = filepath.Base(path)
	wf.Jobs = map[string]*job{}
	for id, node := range doc.Jobs {
		j := &job{ID: id}
		if err := node.Decode(j); err != nil {
			return nil, fmt.Errorf("%s: job %s: %w", path, id, err)
		}
		out, err := yaml.Marshal(&node)
		if err != nil {
			return nil, err
		}
		j.Raw = string(out)
		wf.Jobs[id] = j
	}
	return &wf, nil
}

// events are the workflow's triggers, whichever of the three YAML forms
// (string, list, map) `on:` uses.
func (wf *workflow) events() []string {
	switch wf.On.Kind {
	case yaml.ScalarNode:
		return []string{wf.On.Value}
	case yaml.SequenceNode:
		var out []string
		for _, n := range wf.On.Content {
			out = append(out, n.Value)
		}
		return out
	case yaml.MappingNode:
		var out []string
		for i := 0; i < len(wf.On.Content); i += 2 {
			out = append(out, wf.On.Content[i].Value)
		}
		return out
	}
	return nil
}

func (wf *workflow) sortedJobs() []*job {
	var out []*job
	for _, j := range wf.Jobs {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b *job) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (j *job) environmentName() string {
	switch e := j.Environment.(type) {
	case string:
		return e
	case map[string]any:
		name, _ := e["name"].(string)
		return name
	}
	return ""
}

func (j *job) needs() []string {
	switch n := j.Needs.(type) {
	case string:
		return []string{n}
	case []any:
		var out []string
		for _, v := range n {
			out = append(out, fmt.Sprint(v))
		}
		return out
	}
	return nil
}

// concurrency returns the job's group and whether a newer run cancels it.
func concurrency(c any) (group string, cancels bool) {
	switch c := c.(type) {
	case string:
		return c, false
	case map[string]any:
		group, _ = c["group"].(string)
		switch v := c["cancel-in-progress"].(type) {
		case bool:
			cancels = v
		case string:
			cancels = v != "false" // an expression may evaluate to true
		}
	}
	return group, cancels
}

func permission(p any, scope string) string {
	switch p := p.(type) {
	case string:
		if p == "write-all" {
			return "write"
		}
		if p == "read-all" {
			return "read"
		}
	case map[string]any:
		s, _ := p[scope].(string)
		return s
	}
	return ""
}

func (j *job) usesAction(prefix string) bool {
	for _, s := range j.Steps {
		if strings.HasPrefix(s.Uses, prefix) {
			return true
		}
	}
	return false
}

// touchesCredentials: the job can read a secret or mint a cloud token.
func (j *job) touchesCredentials() bool {
	return strings.Contains(j.Raw, "secrets.") ||
		permission(j.Permissions, "id-token") == "write" ||
		j.usesAction("google-github-actions/auth@") ||
		j.usesAction("pulumi/actions@")
}

// expand resolves ${{ matrix.X }} and $VAR / ${VAR} (from the job's env) in a
// stack name, returning every stack it may name.
func (j *job) expand(v string) []string {
	v = strings.Trim(v, `"'`)
	if m := regexp.MustCompile(`^\$\{\{\s*matrix\.(\w+)\s*\}\}$`).FindStringSubmatch(v); m != nil {
		var out []string
		if vals, ok := j.Strategy.Matrix[m[1]].([]any); ok {
			for _, x := range vals {
				out = append(out, fmt.Sprint(x))
			}
		}
		return out
	}
	if m := regexp.MustCompile(`^\$\{?(\w+)\}?$`).FindStringSubmatch(v); m != nil {
		if val, ok := j.Env[m[1]]; ok {
			return []string{fmt.Sprint(val)}
		}
	}
	return []string{v}
}

var stackFlag = regexp.MustCompile(`(?:--stack|-s)[= ]\s*("[^"]*"|'[^']*'|\S+)`)

// pulumiOps lists what each step does to which stack: "up prod",
// "destroy ci-${{ github.run_id }}", "preview staging", ...
func (j *job) pulumiOps() []op {
	var ops []op
	for i, s := range j.Steps {
		if strings.HasPrefix(s.Uses, "pulumi/actions@") {
			cmd, _ := s.With["command"].(string)
			if cmd == "update" {
				cmd = "up"
			}
			if cmd == "" {
				continue // install-only
			}
			stack, _ := s.With["stack-name"].(string)
			for _, st := range j.expand(stack) {
				ops = append(ops, op{cmd, st, i})
			}
		}
		for _, line := range strings.Split(s.Run, "\n") {
			if regexp.MustCompile(`^\s*(echo|printf|#)`).MatchString(line) {
				continue // prose about pulumi, not a pulumi command
			}
			for _, cmd := range []string{"up", "destroy", "preview", "refresh", "stack rm", "stack init"} {
				if !regexp.MustCompile(`\bpulumi ` + cmd + `\b`).MatchString(line) {
					continue
				}
				stack := ""
				if m := stackFlag.FindStringSubmatch(line); m != nil {
					stack = m[1]
				} else if f := strings.Fields(line[strings.Index(line, "pulumi "+cmd)+len("pulumi "+cmd):]); len(f) > 0 && !strings.HasPrefix(f[0], "-") {
					stack = f[0] // `pulumi stack rm NAME`
				}
				for _, st := range j.expand(stack) {
					ops = append(ops, op{cmd, st, i})
				}
			}
		}
	}
	return ops
}

type op struct {
	Cmd, Stack string
	Step       int
}

// ---- the rules ----

type rule func(wf *workflow) []string

var pinnedRef = regexp.MustCompile(`^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$`)

// Actions are pinned to a release (or a commit), never a moving branch.
func ruleActionsPinned(wf *workflow) []string {
	var bad []string
	for _, j := range wf.sortedJobs() {
		uses := []string{j.Uses}
		for _, s := range j.Steps {
			uses = append(uses, s.Uses)
		}
		for _, u := range uses {
			if u == "" || strings.HasPrefix(u, "./") {
				continue
			}
			if !pinnedRef.MatchString(u) {
				bad = append(bad, fmt.Sprintf("job %s: action %q is not pinned to a vX.Y.Z release or a commit", j.ID, u))
			}
		}
	}
	return bad
}

// The token is read-only unless a job asks for more, and only jobs that log
// in to GCP may mint an OIDC token.
func ruleMinimalPermissions(wf *workflow) []string {
	var bad []string
	top, ok := wf.Permissions.(map[string]any)
	if !ok {
		bad = append(bad, fmt.Sprintf("top-level permissions must be an explicit map (got %v)", wf.Permissions))
	}
	for scope, level := range top {
		if level == "write" {
			bad = append(bad, fmt.Sprintf("top-level permission %s: write; grant writes per job", scope))
		}
	}
	for _, j := range wf.sortedJobs() {
		if s, ok := j.Permissions.(string); ok && s == "write-all" {
			bad = append(bad, fmt.Sprintf("job %s: permissions write-all", j.ID))
		}
		if permission(j.Permissions, "id-token") == "write" && !j.usesAction("google-github-actions/auth@") {
			bad = append(bad, fmt.Sprintf("job %s: id-token: write without an OIDC login step", j.ID))
		}
	}
	return bad
}

const forkGuard = "github.event.pull_request.head.repo.full_name == github.repository"

// A PR from a fork reaches no secret and no cloud: pull_request (never
// pull_request_target), and every job that can touch a credential carries
// the same-repository guard. The offline checks still run for forks.
func ruleForkPRsOffline(wf *workflow) []string {
	events := wf.events()
	var bad []string
	if slices.Contains(events, "pull_request_target") {
		bad = append(bad, "triggered by pull_request_target: fork code would run with our secrets")
	}
	if !slices.Contains(events, "pull_request") {
		return bad
	}
	offline := false
	for _, j := range wf.sortedJobs() {
		if j.Secrets != nil {
			bad = append(bad, fmt.Sprintf("job %s passes secrets to %s", j.ID, j.Uses))
		}
		if j.touchesCredentials() {
			if !strings.Contains(strings.Join(strings.Fields(j.If), " "), forkGuard) {
				bad = append(bad, fmt.Sprintf("job %s touches credentials but is not guarded by `if: %s`", j.ID, forkGuard))
			}
			continue
		}
		if j.If == "" && (strings.HasSuffix(j.Uses, "/checks.yml") || strings.Contains(j.Raw, "./scripts/test")) {
			offline = true
		}
	}
	if !offline {
		bad = append(bad, "no unguarded job runs the offline checks, so fork PRs get none")
	}
	return bad
}

// No run: script can print a secret: secrets reach scripts only through env,
// scripts never echo those variables, never trace (set -x), and
// --show-secrets output only goes to a file.
func ruleNoSecretEcho(wf *workflow) []string {
	var bad []string
	secretVars := map[string]bool{}
	collect := func(env map[string]any) {
		for k, v := range env {
			if strings.Contains(fmt.Sprint(v), "secrets.") || strings.Contains(fmt.Sprint(v), "github.token") {
				secretVars[k] = true
			}
		}
	}
	collect(wf.Env)
	for _, j := range wf.Jobs {
		collect(j.Env)
		for _, s := range j.Steps {
			collect(s.Env)
		}
	}
	printer := regexp.MustCompile(`\b(echo|printf|cat|printenv|env|declare|export -p)\b`)
	for _, j := range wf.sortedJobs() {
		for _, s := range j.Steps {
			if s.Run == "" {
				continue
			}
			where := fmt.Sprintf("job %s step %q", j.ID, s.label())
			if strings.Contains(s.Run, "secrets.") {
				bad = append(bad, where+": interpolates a secret into the script; pass it through env:")
			}
			for _, line := range strings.Split(s.Run, "\n") {
				t := strings.TrimSpace(line)
				if regexp.MustCompile(`^set\s+(-\w*x|-o\s+xtrace)`).MatchString(t) {
					bad = append(bad, where+": set -x would trace secret values")
				}
				if regexp.MustCompile(`^(printenv|env)\s*$`).MatchString(t) {
					bad = append(bad, where+": dumps the environment")
				}
				if strings.Contains(t, "--show-secrets") && !strings.Contains(t, ">") {
					bad = append(bad, where+": --show-secrets output is not redirected to a file")
				}
				if !printer.MatchString(t) {
					continue
				}
				for v := range secretVars {
					if regexp.MustCompile(`\$\{?` + v + `\b`).MatchString(t) {
						bad = append(bad, fmt.Sprintf("%s: prints secret variable %s", where, v))
					}
				}
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// prod changes only through a job that waits for the `production`
// environment's approval, after staging went up from the same run.
func ruleProdNeedsApproval(wf *workflow) []string {
	var bad []string
	for _, j := range wf.sortedJobs() {
		for _, o := range j.pulumiOps() {
			if o.Stack != "prod" || (o.Cmd != "up" && o.Cmd != "destroy" && o.Cmd != "refresh") {
				continue
			}
			if j.environmentName() != "production" {
				bad = append(bad, fmt.Sprintf("job %s runs `pulumi %s` on prod without `environment: production`", j.ID, o.Cmd))
			}
			stagingFirst := false
			for _, n := range j.needs() {
				if dep, ok := wf.Jobs[n]; ok {
					for _, d := range dep.pulumiOps() {
						stagingFirst = stagingFirst || (d.Cmd == "up" && d.Stack == "staging")
					}
				}
			}
			if o.Cmd == "up" && !stagingFirst {
				bad = append(bad, fmt.Sprintf("job %s updates prod without needing the staging up", j.ID))
			}
		}
	}
	return bad
}

// Two updates never race on one stack: every job that changes a stack holds
// a job-level concurrency group naming it, and never cancels a running update.
func ruleOneUpdatePerStack(wf *workflow) []string {
	var bad []string
	for _, j := range wf.sortedJobs() {
		for _, o := range j.pulumiOps() {
			if o.Cmd != "up" && o.Cmd != "destroy" {
				continue
			}
			group, cancels := concurrency(j.Concurrency)
			if group == "" {
				group, cancels = concurrency(wf.Concurrency)
			}
			stack := strings.TrimSuffix(strings.SplitN(o.Stack, "$", 2)[0], "-") // ci-${{ github.run_id }} -> ci
			if group == "" || !strings.Contains(group, stack) {
				bad = append(bad, fmt.Sprintf("job %s runs `pulumi %s` on %s outside a concurrency group for that stack (group %q)", j.ID, o.Cmd, o.Stack, group))
			}
			if cancels {
				bad = append(bad, fmt.Sprintf("job %s: cancel-in-progress would kill a running `pulumi %s` on %s", j.ID, o.Cmd, o.Stack))
			}
		}
	}
	return slices.Compact(bad)
}

// A throwaway cluster is always destroyed: a fresh ci-<run id> stack, up,
// smoke test, then destroy and stack rm in an `if: always()` step, with no
// --force (leftover resources must fail the job, not vanish from the state).
func ruleThrowawayAlwaysDestroyed(wf *workflow) []string {
	var bad []string
	for _, j := range wf.sortedJobs() {
		ops := j.pulumiOps()
		step := map[string]int{}
		stack := ""
		for _, o := range ops {
			if _, seen := step[o.Cmd]; !seen {
				step[o.Cmd] = o.Step
			}
			if o.Cmd == "stack init" {
				stack = o.Stack
			}
		}
		if _, ok := step["stack init"]; !ok {
			continue
		}
		if !strings.HasPrefix(stack, "ci-") || !strings.Contains(stack, "github.run_id") {
			bad = append(bad, fmt.Sprintf("job %s: throwaway stack %q is not ci-<run id>", j.ID, stack))
		}
		smoke := -1
		for i, s := range j.Steps {
			if strings.Contains(s.Run, "go test ./smoke") || strings.Contains(s.Run, "./smoke/cmd/smoke") {
				smoke = i
			}
		}
		up, hasUp := step["up"]
		destroy, hasDestroy := step["destroy"]
		rm, hasRm := step["stack rm"]
		switch {
		case !hasUp:
			bad = append(bad, fmt.Sprintf("job %s: no `pulumi up` of the throwaway stack", j.ID))
		case smoke < up:
			bad = append(bad, fmt.Sprintf("job %s: no smoke test after `pulumi up`", j.ID))
		case !hasDestroy || !hasRm:
			bad = append(bad, fmt.Sprintf("job %s: no `pulumi destroy` and `pulumi stack rm` of the throwaway stack", j.ID))
		case destroy < smoke || rm < smoke:
			bad = append(bad, fmt.Sprintf("job %s: destroy/stack rm run before the smoke test", j.ID))
		default:
			for _, i := range []int{destroy, rm} {
				s := j.Steps[i]
				if !strings.Contains(s.If, "always()") {
					bad = append(bad, fmt.Sprintf("job %s step %q: destroy/stack rm must run `if: always()` (got %q)", j.ID, s.label(), s.If))
				}
				if regexp.MustCompile(`pulumi stack rm.*(--force|\s-f\b)`).MatchString(s.Run) {
					bad = append(bad, fmt.Sprintf("job %s step %q: `stack rm --force` would hide leftover resources", j.ID, s.label()))
				}
			}
		}
	}
	return slices.Compact(bad)
}

// Drift is checked daily on prod and fails loudly: preview/refresh with
// --expect-no-changes, not swallowed by continue-on-error, and reported in an
// issue when it fails.
func ruleDriftFailsLoudly(wf *workflow) []string {
	events := wf.events()
	if !slices.Contains(events, "schedule") {
		return []string{"drift is not scheduled"}
	}
	var bad []string
	if !slices.Contains(events, "workflow_dispatch") {
		bad = append(bad, "drift cannot be run on demand (workflow_dispatch)")
	}
	found := false
	for _, j := range wf.sortedJobs() {
		for _, o := range j.pulumiOps() {
			s := j.Steps[o.Step]
			text := s.Run + fmt.Sprint(s.With)
			isCheck := (o.Cmd == "preview" && strings.Contains(text, "--refresh")) ||
				(o.Cmd == "refresh" && strings.Contains(text, "--preview-only")) ||
				(o.Cmd == "preview" && fmt.Sprint(s.With["refresh"]) == "true")
			if !isCheck || o.Stack != "prod" {
				continue
			}
			found = true
			if !strings.Contains(s.Run, "--expect-no-changes") && fmt.Sprint(s.With["expect-no-changes"]) != "true" {
				bad = append(bad, fmt.Sprintf("job %s step %q: no --expect-no-changes, so drift passes silently", j.ID, s.label()))
			}
			if s.ContinueOnError != nil && fmt.Sprint(s.ContinueOnError) != "false" {
				bad = append(bad, fmt.Sprintf("job %s step %q: continue-on-error swallows drift", j.ID, s.label()))
			}
			if strings.Contains(s.Run, "|| true") {
				bad = append(bad, fmt.Sprintf("job %s step %q: `|| true` swallows drift", j.ID, s.label()))
			}
			if strings.Contains(s.Run, "|") && !strings.Contains(s.Run, "pipefail") {
				bad = append(bad, fmt.Sprintf("job %s step %q: a pipe without pipefail hides the preview's exit status", j.ID, s.label()))
			}
			reported := false
			for _, r := range j.Steps[o.Step+1:] {
				reported = reported || (strings.Contains(r.If, "failure()") && strings.Contains(r.Run, "gh issue"))
			}
			if !reported {
				bad = append(bad, fmt.Sprintf("job %s: no `if: failure()` step opens an issue about the drift", j.ID))
			}
		}
	}
	if !found {
		bad = append(bad, "no `pulumi preview --refresh` (or `refresh --preview-only`) of prod")
	}
	return bad
}

// Every secret is an environment's: each job gets only its own stack's, and
// the environments that hold prod's admit the main branch only (a setting
// of the repository, documented, not in these files). A job that reads a
// repository-wide secret hands it to whatever code the job runs.
func ruleSecretsInEnvironments(wf *workflow) []string {
	var bad []string
	repoSecret := regexp.MustCompile(`secrets\.(\w+)`)
	for _, j := range wf.sortedJobs() {
		for _, m := range repoSecret.FindAllStringSubmatch(j.Raw, -1) {
			if m[1] != "GITHUB_TOKEN" && j.environmentName() == "" {
				bad = append(bad, fmt.Sprintf("job %s reads secret %s outside an environment (a repository-wide secret)", j.ID, m[1]))
			}
		}
	}
	return slices.Compact(bad)
}

// prEnvironment is the one environment a PR's code runs in: read-only
// credentials for staging, none of prod's.
const prEnvironment = "pr-preview"

// prodAccount names the service accounts that can change the cloud or
// decrypt prod's secrets; only main's workflows may act as them.
var prodAccount = regexp.MustCompile(`GCP_(DEPLOY|PROD_PREVIEW)_SERVICE_ACCOUNT`)

// A pull request's code never reaches prod: its jobs use no environment but
// pr-preview, run pulumi on staging only, and never log in as the deploy
// service account. A PR could otherwise print prod's passphrase and decrypt
// its secrets (root on the nodes), bypassing the production approval.
func rulePRCodeNeverSeesProd(wf *workflow) []string {
	events := wf.events()
	if !slices.Contains(events, "pull_request") && !slices.Contains(events, "pull_request_target") {
		return nil
	}
	var bad []string
	for _, j := range wf.sortedJobs() {
		env := j.environmentName()
		if env != "" && env != prEnvironment {
			bad = append(bad, fmt.Sprintf("job %s: PR code runs in environment %s (only %s)", j.ID, env, prEnvironment))
		}
		if j.touchesCredentials() && env != prEnvironment {
			bad = append(bad, fmt.Sprintf("job %s: PR code gets credentials outside the %s environment", j.ID, prEnvironment))
		}
		for _, o := range j.pulumiOps() {
			if o.Stack != "staging" {
				bad = append(bad, fmt.Sprintf("job %s: PR code runs pulumi %s on %s (staging only)", j.ID, o.Cmd, o.Stack))
			}
		}
		if m := prodAccount.FindString(j.Raw); m != "" {
			bad = append(bad, fmt.Sprintf("job %s: PR code logs in as %s", j.ID, m))
		}
	}
	return bad
}

// The PR preview: staging, with the official action, as a comment.
func rulePreviewCommented(wf *workflow) []string {
	stacks := map[string]bool{}
	var bad []string
	for _, j := range wf.sortedJobs() {
		for _, s := range j.Steps {
			if !strings.HasPrefix(s.Uses, "pulumi/actions@") || s.With["command"] != "preview" {
				continue
			}
			if fmt.Sprint(s.With["comment-on-pr"]) != "true" {
				bad = append(bad, fmt.Sprintf("job %s: preview without comment-on-pr: true", j.ID))
			}
			st, _ := s.With["stack-name"].(string)
			for _, x := range j.expand(st) {
				stacks[x] = true
			}
		}
	}
	if !stacks["staging"] {
		bad = append(bad, "no pulumi/actions preview of staging")
	}
	return bad
}

// ---- the tests ----

func repoWorkflows(t *testing.T) map[string]*workflow {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", ".github", "workflows", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no workflows under .github/workflows (%v)", err)
	}
	out := map[string]*workflow{}
	for _, f := range files {
		wf, err := loadWorkflow(f)
		if err != nil {
			t.Fatal(err)
		}
		out[wf.File] = wf
	}
	return out
}

var everyWorkflow = map[string]rule{
	"actions pinned":          ruleActionsPinned,
	"minimal permissions":     ruleMinimalPermissions,
	"fork PRs offline":        ruleForkPRsOffline,
	"secrets in environments": ruleSecretsInEnvironments,
	"PR code never sees prod": rulePRCodeNeverSeesProd,
	"no secret echoed":        ruleNoSecretEcho,
	"prod needs approval":     ruleProdNeedsApproval,
	"one update per stack":    ruleOneUpdatePerStack,
	"throwaway always gone":   ruleThrowawayAlwaysDestroyed,
}

func TestWorkflows(t *testing.T) {
	wfs := repoWorkflows(t)
	for _, wf := range wfs {
		for name, r := range everyWorkflow {
			t.Run(wf.File+"/"+name, func(t *testing.T) {
				for _, p := range r(wf) {
					t.Error(p)
				}
			})
		}
	}
	// Each promise lives in a known workflow; these fail if it is removed or
	// moved without the test noticing.
	specific := []struct {
		file string
		name string
		rule rule
	}{
		{"pr.yml", "preview commented", rulePreviewCommented},
		{"drift.yml", "drift fails loudly", ruleDriftFailsLoudly},
	}
	for _, c := range specific {
		t.Run(c.file+"/"+c.name, func(t *testing.T) {
			wf, ok := wfs[c.file]
			if !ok {
				t.Fatalf("%s is missing", c.file)
			}
			for _, p := range c.rule(wf) {
				t.Error(p)
			}
		})
	}
	t.Run("pr.yml runs on pull_request", func(t *testing.T) {
		if wf := wfs["pr.yml"]; wf == nil || !slices.Contains(wf.events(), "pull_request") {
			t.Error("pr.yml is not triggered by pull_request")
		}
	})
	t.Run("main.yml updates staging, previews prod, then updates it", func(t *testing.T) {
		ops := map[string]*job{}
		for _, j := range wfs["main.yml"].Jobs {
			for _, o := range j.pulumiOps() {
				ops[o.Cmd+" "+o.Stack] = j
			}
		}
		for _, want := range []string{"up staging", "preview prod", "up prod"} {
			if ops[want] == nil {
				t.Errorf("main.yml never runs pulumi %s", want)
			}
		}
		if up, pre := ops["up prod"], ops["preview prod"]; up != nil && pre != nil && !slices.Contains(up.needs(), pre.ID) {
			t.Errorf("main.yml's prod up (job %s) does not wait for the prod preview (job %s): the reviewer approves an unseen plan", up.ID, pre.ID)
		}
	})
	t.Run("throwaway.yml creates a throwaway stack", func(t *testing.T) {
		wf := wfs["throwaway.yml"]
		if wf == nil || !slices.Contains(wf.events(), "workflow_dispatch") {
			t.Fatal("throwaway.yml is missing or cannot be started by hand")
		}
		inits := 0
		for _, j := range wf.Jobs {
			for _, o := range j.pulumiOps() {
				if o.Cmd == "stack init" {
					inits++
				}
			}
		}
		if inits == 0 {
			t.Error("throwaway.yml never runs pulumi stack init, so the always-destroy rule checked nothing")
		}
	})
	t.Run("janitor.yml destroys only ci-<run id> stacks", func(t *testing.T) {
		wf := wfs["janitor.yml"]
		if wf == nil {
			t.Fatal("janitor.yml is missing: a throwaway run whose runner died would leave its cluster running")
		}
		filter := regexp.MustCompile(`test\("([^"]+)"\)`)
		found := false
		for _, j := range wf.Jobs {
			for _, s := range j.Steps {
				if !strings.Contains(s.Run, "pulumi destroy") {
					continue
				}
				m := filter.FindStringSubmatch(s.Run)
				if m == nil {
					t.Fatalf("job %s destroys stacks without a name filter", j.ID)
				}
				found = true
				re := regexp.MustCompile(m[1])
				for name, want := range map[string]bool{
					"ci-123": true, "org/platform/ci-987654": true,
					"prod": false, "staging": false, "org/platform/prod": false, "ci-prod": false, "ci-123-keep": false, "staging-ci-1": false,
				} {
					if re.MatchString(name) != want {
						t.Errorf("janitor filter %q on stack %q: selected=%v, want %v", m[1], name, !want, want)
					}
				}
			}
		}
		if !found {
			t.Error("janitor.yml destroys nothing")
		}
	})
	t.Run("the checks run the README test command and the topology check", func(t *testing.T) {
		raw := ""
		for _, j := range wfs["checks.yml"].sortedJobs() {
			raw += j.Raw
			// pr.yml runs these for fork PRs too.
			if j.touchesCredentials() {
				t.Errorf("checks.yml job %s touches credentials, but fork PRs run it", j.ID)
			}
		}
		for _, want := range []string{"./scripts/test", "go run ./cmd/topology -check"} {
			if !strings.Contains(raw, want) {
				t.Errorf("checks.yml does not run %s", want)
			}
		}
	})
}

// A renamed test would make `go test -run X` pass with "no tests to run":
// every smoke run in a workflow must select a test that exists, and the
// stacks the workflows name must have their stack files.
func TestWorkflowsRunRealTestsOnRealStacks(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var tests []string
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				tests = append(tests, fn.Name.Name)
			}
		}
	}
	runFlag := regexp.MustCompile(`go test \./smoke\b.*-run[= ]+'?"?([^'"\s]+)`)
	runs := 0
	for _, wf := range repoWorkflows(t) {
		for _, j := range wf.sortedJobs() {
			for _, s := range j.Steps {
				for _, m := range runFlag.FindAllStringSubmatch(s.Run, -1) {
					runs++
					re, err := regexp.Compile(m[1])
					if err != nil {
						t.Errorf("%s job %s: -run %q: %v", wf.File, j.ID, m[1], err)
						continue
					}
					if !slices.ContainsFunc(tests, re.MatchString) {
						t.Errorf("%s job %s: go test -run %q selects no test in ./smoke (it would pass doing nothing)", wf.File, j.ID, m[1])
					}
				}
			}
			for _, o := range j.pulumiOps() {
				if o.Stack == "prod" || o.Stack == "staging" {
					if _, err := os.Stat(filepath.Join("..", "Pulumi."+o.Stack+".yaml")); err != nil {
						t.Errorf("%s job %s runs pulumi %s on %s, which has no stack file: %v", wf.File, j.ID, o.Cmd, o.Stack, err)
					}
				}
			}
		}
	}
	if runs < 3 {
		t.Errorf("found %d smoke runs in the workflows, want at least 3 (staging, prod, throwaway)", runs)
	}
}

// Every rule catches the mistake it exists for.
func TestWorkflowRulesCatchMistakes(t *testing.T) {
	cases := []struct {
		fixture string
		rule    rule
		want    string
	}{
		{"unguarded-preview.yml", ruleForkPRsOffline, "job preview touches credentials but is not guarded"},
		{"pull-request-target.yml", ruleForkPRsOffline, "pull_request_target"},
		{"secrets-to-checks.yml", ruleForkPRsOffline, "job checks passes secrets"},
		{"guarded-checks.yml", ruleForkPRsOffline, "fork PRs get none"},
		{"unpinned.yml", ruleActionsPinned, `action "actions/checkout@main" is not pinned`},
		{"write-all.yml", ruleMinimalPermissions, "top-level permissions must be an explicit map"},
		{"idtoken-no-login.yml", ruleMinimalPermissions, "job build: id-token: write without an OIDC login step"},
		{"echo-secret.yml", ruleNoSecretEcho, "prints secret variable CLOUDFLARE_API_TOKEN"},
		{"echo-secret.yml", ruleNoSecretEcho, "interpolates a secret into the script"},
		{"echo-secret.yml", ruleNoSecretEcho, "set -x would trace secret values"},
		{"echo-secret.yml", ruleNoSecretEcho, "--show-secrets output is not redirected"},
		{"prod-no-environment.yml", ruleProdNeedsApproval, "job prod runs `pulumi up` on prod without `environment: production`"},
		{"prod-before-staging.yml", ruleProdNeedsApproval, "job prod updates prod without needing the staging up"},
		{"prod-cancel-in-progress.yml", ruleOneUpdatePerStack, "cancel-in-progress would kill a running `pulumi up` on prod"},
		{"prod-no-concurrency.yml", ruleOneUpdatePerStack, "runs `pulumi up` on prod outside a concurrency group"},
		{"throwaway-no-always.yml", ruleThrowawayAlwaysDestroyed, "destroy/stack rm must run `if: always()`"},
		{"throwaway-force-rm.yml", ruleThrowawayAlwaysDestroyed, "`stack rm --force` would hide leftover resources"},
		{"throwaway-no-smoke.yml", ruleThrowawayAlwaysDestroyed, "no smoke test after `pulumi up`"},
		{"drift-no-expect.yml", ruleDriftFailsLoudly, "no --expect-no-changes"},
		{"drift-swallowed.yml", ruleDriftFailsLoudly, "continue-on-error swallows drift"},
		{"drift-swallowed.yml", ruleDriftFailsLoudly, "pipe without pipefail"},
		{"drift-no-expect.yml", ruleDriftFailsLoudly, "no `if: failure()` step opens an issue"},
		{"preview-no-comment.yml", rulePreviewCommented, "preview without comment-on-pr: true"},
		{"preview-no-comment.yml", rulePreviewCommented, "no pulumi/actions preview of staging"},
		{"prod-secret-in-pr.yml", rulePRCodeNeverSeesProd, "job preview: PR code runs in environment production"},
		{"prod-secret-in-pr.yml", rulePRCodeNeverSeesProd, "job preview: PR code runs pulumi preview on prod"},
		{"prod-secret-in-pr.yml", rulePRCodeNeverSeesProd, "job preview: PR code logs in as GCP_DEPLOY_SERVICE_ACCOUNT"},
		{"repo-secret-in-pr.yml", ruleSecretsInEnvironments, "job preview reads secret PULUMI_CONFIG_PASSPHRASE outside an environment"},
		{"repo-secret-in-pr.yml", rulePRCodeNeverSeesProd, "job preview: PR code gets credentials outside the pr-preview environment"},
	}
	for _, c := range cases {
		t.Run(c.fixture+"/"+c.want, func(t *testing.T) {
			wf, err := loadWorkflow(filepath.Join("testdata", "workflows", c.fixture))
			if err != nil {
				t.Fatal(err)
			}
			problems := c.rule(wf)
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got %q", c.want, problems)
		})
	}
}
