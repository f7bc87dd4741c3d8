// Package flagenv lets a command's environment set its flags: each flag
// reads <PREFIX><FLAG NAME IN CAPITALS, - as _>, and flags given on the
// command line win, as the SFU and the agent document.
package flagenv

import (
	"flag"
	"fmt"
	"strings"
)

// Name is the variable that sets flagName.
func Name(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets every flag of fs whose variable getenv gives a value; call it
// before fs.Parse so the command line overrides it. The first bad value
// is the error, naming its variable.
func Apply(fs *flag.FlagSet, prefix string, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := Name(prefix, f.Name)
		if v := getenv(name); v != "" && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
			}
		}
	})
	return err
}
