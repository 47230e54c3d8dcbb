package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		mode os.FileMode
		want string // in the error; "" for none
	}{
		"owner only":   {0o600, ""},
		"owner read":   {0o400, ""},
		"group read":   {0o640, "has mode 0640; group and others must have no access: chmod 600 "},
		"others write": {0o602, "chmod 600"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte("s3cret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		b, err := Read(p, "make one")
		switch {
		case tc.want == "" && (err != nil || string(b) != "s3cret"):
			t.Errorf("%s: %q, %v", name, b, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p)):
			t.Errorf("%s: %v, want the path and %q", name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%s: the error carries the secret: %v", name, err)
		}
	}
	missing := filepath.Join(dir, "none")
	_, err := Read(missing, "create one with 'swarm x generate'")
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != missing+" does not exist; create one with 'swarm x generate'" {
		t.Errorf("missing file: %v", err)
	}
}
