// Package secretfile reads files that hold secrets (signing keys, gossip
// keys, API tokens) the one way every daemon and command does: a file that
// group or others can read or write is refused, as ssh refuses a private
// key, and every error names the file and what to do, never its content.
package secretfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Read returns the content of the secret file at path. A missing file is an
// error wrapping fs.ErrNotExist that ends with create, the command that
// makes one; a file whose mode gives group or others any access is refused
// with the chmod that fixes it.
func Read(path, create string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, missingError(fmt.Sprintf("%s does not exist; %s", path, create))
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o; group and others must have no access: chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// missingError says what to do about a missing file; it is fs.ErrNotExist.
type missingError string

func (e missingError) Error() string { return string(e) }
func (e missingError) Unwrap() error { return fs.ErrNotExist }
