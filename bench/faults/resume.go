package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The exact form of "no verified piece fetched twice" for an agent killed
// mid-download: every piece whole on its disk when it died is kept by the
// next life (its "resumed download: N of M pieces" line), and that life
// fetches no more than the rest (its "fetch done" line's fetched_bytes,
// payload it needed, which excludes duplicates). The kernel's counters bound
// the same thing over every agent, less precisely (judge).

// intactPieces counts the pieces of the part file under dataDir/bundles
// that are byte for byte the bundle's, comparing with the bundle at
// bundlePath.
func intactPieces(dataDir, bundlePath string, pieceLen int64) (int, error) {
	var part string
	err := filepath.WalkDir(filepath.Join(dataDir, "bundles"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".part") {
			part = p
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("intact pieces: %w", err)
	}
	if part == "" {
		return 0, nil
	}
	pf, err := os.Open(part)
	if err != nil {
		return 0, fmt.Errorf("intact pieces: %w", err)
	}
	defer pf.Close()
	bf, err := os.Open(bundlePath)
	if err != nil {
		return 0, fmt.Errorf("intact pieces: %w", err)
	}
	defer bf.Close()
	a, b := make([]byte, pieceLen), make([]byte, pieceLen)
	n := 0
	for off := int64(0); ; off += pieceLen {
		nb, err := bf.ReadAt(b, off)
		if nb == 0 {
			if err == io.EOF {
				return n, nil
			}
			return n, fmt.Errorf("intact pieces: %w", err)
		}
		na, _ := pf.ReadAt(a[:nb], off)
		if na == nb && bytes.Equal(a[:nb], b[:nb]) {
			n++
		}
	}
}

var (
	resumedRE = regexp.MustCompile(`resumed download: (\d+) of (\d+) pieces`)
	fetchedRE = regexp.MustCompile(`fetch done.*"fetched_bytes": ?(\d+)`)
)

// lastResume reads an agent's log from offset on: the pieces its last
// "resumed download" line kept (-1 without one) and the fetched_bytes of
// its last "fetch done" line (-1 without one).
func lastResume(logPath string, offset int64) (resumed int, fetched int64, err error) {
	f, err := os.Open(logPath)
	if err != nil {
		return -1, -1, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return -1, -1, err
	}
	resumed, fetched = -1, -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := resumedRE.FindStringSubmatch(line); m != nil {
			resumed, _ = strconv.Atoi(m[1])
		}
		if m := fetchedRE.FindStringSubmatch(line); m != nil {
			fetched, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
	return resumed, fetched, sc.Err()
}

// checkResume is the exact check for agent a restarted after a kill with
// intact pieces whole on its disk; logFrom is the size of its log when the
// new life began.
func (s *scenarioRun) checkResume(a *agentProc, intact int, logFrom int64) {
	m := s.f.bundle.Manifest
	resumed, fetched, err := lastResume(a.log, logFrom)
	switch {
	case err != nil:
		s.problems = append(s.problems, fmt.Sprintf("%s: read its log: %v", a.node.Name, err))
		return
	case intact > 0 && resumed < intact:
		s.problems = append(s.problems, fmt.Sprintf("%s had %d whole pieces on disk when killed but its next life kept %d: verified pieces fetched again", a.node.Name, intact, max(resumed, 0)))
		return
	case fetched < 0:
		s.problems = append(s.problems, fmt.Sprintf("%s: no 'fetch done' line after its restart", a.node.Name))
		return
	}
	kept := int64(max(resumed, 0)) * m.PieceLength
	if need := m.BundleSize - kept; fetched > need+m.PieceLength {
		s.problems = append(s.problems, fmt.Sprintf("%s fetched %d bytes after its restart, more than the %d it lacked: pieces fetched twice", a.node.Name, fetched, need))
		return
	}
	s.note("%s kept %d of %d whole pieces, fetched %.1f MiB", a.node.Name, max(resumed, 0), intact, mib(fetched))
}

// logSize is the size of a log file now (0 if it does not exist).
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
