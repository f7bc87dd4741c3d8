// Package secretfile reads secrets the way Docker and Swarm hand them to a
// service: one file each, whose trailing newline is not part of the secret.
package secretfile

import (
	"fmt"
	"os"
	"strings"
)

// Read returns the secret in path; an empty one is an error.
func Read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}
