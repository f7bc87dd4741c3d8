// Command topology renders a stack's topology (nodes, services, placement,
// routes, ports with the firewall rules admitting them, DNS) from the same
// code the Pulumi program deploys, reading the real Pulumi.<stack>.yaml.
//
//	go run ./cmd/topology -stack prod          # print
//	go run ./cmd/topology -write               # update docs/topology/{prod,staging}.md
//	go run ./cmd/topology -check               # exit 1 if a committed rendering is stale
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jbcalling/platform/stacks"
)

// committed are the stacks whose renderings live in docs/topology.
var committed = []string{"prod", "staging"}

func main() {
	stack := flag.String("stack", "", "stack to render (default: "+strings.Join(committed, ", ")+")")
	write := flag.Bool("write", false, "write docs/topology/<stack>.md")
	check := flag.Bool("check", false, "fail when docs/topology/<stack>.md is stale")
	root := flag.String("root", "", "repository root (default: the directory holding go.mod above the working directory)")
	flag.Parse()
	if err := run(*root, *stack, *write, *check); err != nil {
		fmt.Fprintln(os.Stderr, "topology:", err)
		os.Exit(1)
	}
}

func run(root, stack string, write, check bool) error {
	if root == "" {
		var err error
		if root, err = repoRoot(); err != nil {
			return err
		}
	}
	names := committed
	if stack != "" {
		names = []string{stack}
	}
	var stale []string
	for _, name := range names {
		view, err := render(root, name)
		if err != nil {
			return err
		}
		path := filepath.Join(root, "docs", "topology", name+".md")
		switch {
		case check:
			old, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(old, []byte(view)) {
				stale = append(stale, filepath.Join("docs", "topology", name+".md"))
			}
		case write:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, []byte(view), 0o644); err != nil {
				return err
			}
			fmt.Println("wrote", path)
		default:
			fmt.Print(view)
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("stale rendering(s): %s; run `go run ./cmd/topology -write` and commit the result",
			strings.Join(stale, ", "))
	}
	return nil
}

// render loads the stack exactly as the program does and renders it; an
// invalid stack is an error (the program would refuse to deploy it).
func render(root, stack string) (string, error) {
	cfg, err := stacks.ReadStackConfig(root, stack)
	if err != nil {
		return "", err
	}
	top, st, err := stacks.FromConfig(stack, func(k string) (string, bool) { v, ok := cfg[k]; return v, ok })
	if err != nil {
		return "", fmt.Errorf("stack %s: %w", stack, err)
	}
	if err := stacks.Validate(top, st); err != nil {
		return "", fmt.Errorf("stack %s: %w", stack, err)
	}
	return stacks.Render(top, st), nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; pass -root")
		}
		dir = parent
	}
}
