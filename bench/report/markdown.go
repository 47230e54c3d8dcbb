package report

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/swarmdeploy/swarm/atomicfile"
)

// ErrMarker is returned by UpdateMarkdown when a file lacks the markers of
// a section, or has them twice or in the wrong order.
var ErrMarker = errors.New("bench markers")

// UpdateMarkdown replaces the text between "<!-- bench:NAME -->" and
// "<!-- /bench:NAME -->" in the file at path with content, keeping the
// markers and every other byte of the file, so that `make bench` can
// regenerate the tables of BENCHMARKS.md in place. The content goes on its
// own lines with a blank line after the opening marker and before the
// closing one, so Markdown renders it as a block of its own; running it
// twice with the same content changes nothing (the file is not rewritten).
func UpdateMarkdown(path, name, content string) error {
	if name == "" || strings.ContainsAny(name, " \t\r\n>") {
		return fmt.Errorf("update %s: section name %q: want a non-empty name without spaces or '>'", path, name)
	}
	begin, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"

	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	doc := string(b)

	var missing []string
	for _, m := range []string{begin, end} {
		switch strings.Count(doc, m) {
		case 0:
			missing = append(missing, m)
		case 1:
		default:
			return fmt.Errorf("update %s: %w: %s appears %d times", path, ErrMarker, m, strings.Count(doc, m))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("update %s: %w: missing %s", path, ErrMarker, strings.Join(missing, " and "))
	}
	i, j := strings.Index(doc, begin)+len(begin), strings.Index(doc, end)
	if j < i {
		return fmt.Errorf("update %s: %w: %s comes before %s", path, ErrMarker, end, begin)
	}

	body := "\n"
	if c := strings.Trim(content, "\r\n"); c != "" {
		body = "\n\n" + c + "\n\n"
	}
	out := doc[:i] + body + doc[j:]
	if out == doc {
		return nil
	}
	if err := atomicfile.WriteFile(path, []byte(out), fi.Mode().Perm()); err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	return nil
}
