// Package fuzzcorpus keeps the seed corpora of swarm's fuzz targets in
// testdata/fuzz/<Target>/, in the file format of `go test -fuzz` ("go test
// fuzz v1"), generated from code: each package lists its seeds (a few valid
// inputs and the malformed shapes worth starting from) and a test checks the
// committed files against that list, the way golden files are checked. Set
// SWARM_UPDATE_FUZZ_CORPUS=1 to rewrite them.
package fuzzcorpus

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// UpdateEnv is the environment variable that, set to 1, makes Check write
// the corpus files instead of comparing them.
const UpdateEnv = "SWARM_UPDATE_FUZZ_CORPUS"

// Seed is one corpus entry: its file name and the fuzz function's arguments
// after the *testing.T, in order.
type Seed struct {
	Name string
	Args []any
}

// Encode renders args as a corpus file. It supports the argument types swarm's
// fuzz targets take: []byte, string, bool, byte, int, int64, uint64, float64.
func Encode(args ...any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		case bool, int, int64, uint64:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				fmt.Fprintf(&b, "math.Float64frombits(0x%x)\n", math.Float64bits(v))
			} else {
				fmt.Fprintf(&b, "float64(%v)\n", v)
			}
		default:
			return nil, fmt.Errorf("fuzz corpus: argument of type %T is not supported", a)
		}
	}
	return b.Bytes(), nil
}

// Check compares testdata/fuzz/<target>/<seed name> with seeds, relative to
// the test's working directory (its package). Files that seeds do not name
// are left alone: the fuzzer adds failing inputs there. With UpdateEnv=1 it
// writes the files instead.
func Check(t testing.TB, target string, seeds []Seed) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	update := os.Getenv(UpdateEnv) == "1"
	if update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, s := range seeds {
		if s.Name == "" || strings.ContainsAny(s.Name, `/\`) || seen[s.Name] {
			t.Fatalf("%s: seed name %q is empty, a path or used twice", target, s.Name)
		}
		seen[s.Name] = true
		want, err := Encode(s.Args...)
		if err != nil {
			t.Fatalf("%s/%s: %v", target, s.Name, err)
		}
		p := filepath.Join(dir, s.Name)
		if update {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or out of date (%v); rewrite the corpus with %s=1 go test -run TestFuzzCorpus .", p, err, UpdateEnv)
		}
	}
}

// TempDir is a directory for a fuzz target's files, removed when t ends: on
// /dev/shm when the machine has it, as code that fsyncs (atomicfile) takes
// milliseconds to seconds per input on a busy disk and next to nothing on
// tmpfs; elsewhere t.TempDir.
func TempDir(t testing.TB) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "swarm-fuzz-"); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}
