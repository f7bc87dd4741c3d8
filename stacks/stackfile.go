package stacks

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jbcalling/platform/infra"
)

// ReadStackConfig reads <root>/Pulumi.yaml's config defaults and
// <root>/Pulumi.<stack>.yaml into the map the Pulumi CLI would hand the
// program: fully qualified keys, scalars as strings, objects as JSON.
// `secure:` values are not decrypted (nothing the view shows needs them).
func ReadStackConfig(root, stack string) (map[string]string, error) {
	var proj struct {
		Name   string         `yaml:"name"`
		Config map[string]any `yaml:"config"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "Pulumi.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(raw, &proj); err != nil {
		return nil, fmt.Errorf("reading Pulumi.yaml: %w", err)
	}
	out := map[string]string{}
	put := func(file, k string, v any) error {
		if m, ok := v.(map[string]any); ok {
			if d, ok := m["default"]; ok && file == "Pulumi.yaml" {
				v = d
			} else if _, ok := m["secure"]; ok {
				return nil
			}
		}
		if !strings.Contains(k, ":") {
			k = proj.Name + ":" + k
		}
		switch x := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = x
		case bool:
			out[k] = strconv.FormatBool(x)
		case int:
			out[k] = strconv.Itoa(x)
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", file, k, err)
			}
			out[k] = string(b)
		}
		return nil
	}
	for k, v := range proj.Config {
		if err := put("Pulumi.yaml", k, v); err != nil {
			return nil, err
		}
	}
	file := "Pulumi." + stack + ".yaml"
	raw, err = os.ReadFile(filepath.Join(root, file))
	if errors.Is(err, os.ErrNotExist) {
		return out, nil // a throwaway stack: project defaults only
	} else if err != nil {
		return nil, err
	}
	var sf struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &sf); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for k, v := range sf.Config {
		if err := put(file, k, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// FromConfig runs the program's pure path over a config lookup: cluster
// config, topology plan, stack config and catalog (not Validate).
func FromConfig(stack string, get func(string) (string, bool)) (infra.Topology, *Stack, error) {
	cl, err := infra.ParseConfig(stack, get)
	if err != nil {
		return infra.Topology{}, nil, err
	}
	top := infra.Plan(cl)
	cfg, err := ConfigFromMap(cl, get)
	if err != nil {
		return top, nil, err
	}
	st, err := Catalog(top, cfg)
	return top, st, err
}
