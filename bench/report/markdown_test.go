package report

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const doc = "# Benchmarks\r\n\nIntro, with trailing spaces   \n\n" +
	"<!-- bench:scale -->\nold table\n<!-- /bench:scale -->\n\n" +
	"Between the sections.\n\n" +
	"<!-- bench:gossip -->\n\n| old |\n\n<!-- /bench:gossip -->\nno newline at the end"

func writeDoc(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUpdateMarkdown(t *testing.T) {
	table := "| N |\n| --: |\n| 10 |\n"
	tests := []struct {
		name, section, content, want string
	}{
		{
			name: "first section", section: "scale", content: table,
			want: strings.Replace(doc, "<!-- bench:scale -->\nold table\n<!-- /bench:scale -->",
				"<!-- bench:scale -->\n\n| N |\n| --: |\n| 10 |\n\n<!-- /bench:scale -->", 1),
		},
		{
			name: "last section", section: "gossip", content: "new\n",
			want: strings.Replace(doc, "<!-- bench:gossip -->\n\n| old |\n\n<!-- /bench:gossip -->",
				"<!-- bench:gossip -->\n\nnew\n\n<!-- /bench:gossip -->", 1),
		},
		{
			name: "empty content", section: "scale", content: "",
			want: strings.Replace(doc, "<!-- bench:scale -->\nold table\n<!-- /bench:scale -->",
				"<!-- bench:scale -->\n<!-- /bench:scale -->", 1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeDoc(t, doc)
			if err := UpdateMarkdown(path, tt.section, tt.content); err != nil {
				t.Fatal(err)
			}
			if got := readDoc(t, path); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want the file's own 0640", fi.Mode().Perm())
			}

			// Idempotent: a second run with the same content changes nothing.
			if err := UpdateMarkdown(path, tt.section, tt.content); err != nil {
				t.Fatal(err)
			}
			if got := readDoc(t, path); got != tt.want {
				t.Errorf("second run changed the file:\n%q", got)
			}
		})
	}
}

func TestUpdateMarkdownErrors(t *testing.T) {
	tests := []struct {
		name, doc, section string
		marker             bool     // errors.Is(err, ErrMarker)
		mention            []string // what the message must name
	}{
		{"no markers", "# Benchmarks\n", "scale", true,
			[]string{"<!-- bench:scale -->", "<!-- /bench:scale -->"}},
		{"no end marker", "<!-- bench:scale -->\n", "scale", true, []string{"missing <!-- /bench:scale -->"}},
		{"no begin marker", "x\n<!-- /bench:scale -->\n", "scale", true, []string{"missing <!-- bench:scale -->"}},
		{"other section only", doc, "cdf", true, []string{"<!-- bench:cdf -->"}},
		{"reversed", "<!-- /bench:scale -->\n<!-- bench:scale -->\n", "scale", true, []string{"comes before"}},
		{"twice", "<!-- bench:scale -->\n<!-- /bench:scale -->\n<!-- bench:scale -->\n", "scale", true,
			[]string{"<!-- bench:scale --> appears 2 times"}},
		{"bad name", doc, "two words", false, []string{`"two words"`}},
		{"empty name", doc, "", false, []string{"section name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeDoc(t, tt.doc)
			err := UpdateMarkdown(path, tt.section, "new")
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrMarker) != tt.marker {
				t.Errorf("errors.Is(%v, ErrMarker) = %v, want %v", err, !tt.marker, tt.marker)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if got := readDoc(t, path); got != tt.doc {
				t.Errorf("a failed update changed the file:\n%q", got)
			}
		})
	}
}

func TestUpdateMarkdownMissingFile(t *testing.T) {
	err := UpdateMarkdown(filepath.Join(t.TempDir(), "nope.md"), "scale", "x")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want os.ErrNotExist", err)
	}
}
