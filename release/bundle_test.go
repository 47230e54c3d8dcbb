package release

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/klauspost/compress/zstd"
)

// entry is one node of a test tree.
type entry struct {
	name string
	dir  bool
	link string      // symlink target, when set
	body string      // file content
	mode fs.FileMode // permission bits; 0 means 0644 for files, 0755 for dirs
}

// sampleTree is a small release: nested dirs, an executable, an empty file,
// symlinks to a file, to a dir and up from a subdir, and a name long enough
// to need a PAX record.
func sampleTree() []entry {
	return []entry{
		{name: "bin", dir: true},
		{name: "bin/server", body: "#!/bin/sh\necho serving\n", mode: 0o755},
		{name: "bin/run", link: "server"},
		{name: "conf", dir: true},
		{name: "conf/app.toml", body: "port = 8080\n"},
		{name: "conf/empty", body: ""},
		{name: "conf/nested", dir: true},
		{name: "conf/nested/up", link: "../app.toml"},
		{name: "current-conf", link: "conf"},
		{name: "data", dir: true},
		{name: "data/" + strings.Repeat("long-name-", 12) + "end", body: strings.Repeat("abc\n", 1000)},
		{name: "README", body: "hello\n"},
	}
}

// makeTree creates entries under dir in the given order, creating missing
// parents on the way.
func makeTree(t testing.TB, dir string, entries []entry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case e.dir:
			mode := e.mode
			if mode == 0 {
				mode = 0o755
			}
			if err := os.MkdirAll(p, mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		case e.link != "":
			if err := os.Symlink(e.link, p); err != nil {
				t.Fatal(err)
			}
		default:
			mode := e.mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.WriteFile(p, []byte(e.body), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// snapshot describes the tree under dir, one line per entry: type, mode and
// content hash or link target.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			got[rel] = "dir " + info.Mode().Perm().String()
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got[rel] = "link -> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			got[rel] = "file " + info.Mode().Perm().String() + " " + hex.EncodeToString(sum[:8])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func pack(t testing.TB, fsys fs.FS, opts PackOptions) ([]byte, PackResult) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Pack(&buf, fsys, opts)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	if res.BundleSize != int64(buf.Len()) {
		t.Errorf("BundleSize = %d, wrote %d bytes", res.BundleSize, buf.Len())
	}
	if res.ID != IDOf(buf.Bytes()) {
		t.Errorf("ID = %s, bytes hash to %s", res.ID, IDOf(buf.Bytes()))
	}
	return buf.Bytes(), res
}

// listBundle decodes a bundle's tar headers.
func listBundle(t testing.TB, b []byte) []*tar.Header {
	t.Helper()
	dec, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	var hdrs []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs
		}
		if err != nil {
			t.Fatalf("read bundle: %v", err)
		}
		hdrs = append(hdrs, h)
	}
}

func names(hdrs []*tar.Header) []string {
	var out []string
	for _, h := range hdrs {
		out = append(out, h.Name)
	}
	return out
}

func TestPackDeterministic(t *testing.T) {
	base := t.TempDir()
	makeTree(t, base, sampleTree())
	want, wantRes := pack(t, os.DirFS(base), PackOptions{})

	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	tests := []struct {
		name string
		make func(t *testing.T, dir string)
	}{
		{"same tree again", func(t *testing.T, dir string) { makeTree(t, dir, sampleTree()) }},
		{"reverse creation order", func(t *testing.T, dir string) {
			tree := sampleTree()
			slices.Reverse(tree)
			makeTree(t, dir, tree)
		}},
		{"other mtimes", func(t *testing.T, dir string) {
			makeTree(t, dir, sampleTree())
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.Type()&fs.ModeSymlink != 0 {
					return err
				}
				return os.Chtimes(p, old, old)
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"other modes", func(t *testing.T, dir string) {
			tree := sampleTree()
			for i, e := range tree {
				switch {
				case e.dir:
					tree[i].mode = 0o700
				case e.link != "":
				case e.mode&0o111 != 0:
					tree[i].mode = 0o700 // still executable, by the owner only
				default:
					tree[i].mode = 0o600
				}
			}
			makeTree(t, dir, tree)
		}},
		{"in-memory fs", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fsys fs.FS
			if tt.make == nil {
				fsys = mapFS(sampleTree())
			} else {
				dir := t.TempDir()
				tt.make(t, dir)
				fsys = os.DirFS(dir)
			}
			got, res := pack(t, fsys, PackOptions{})
			if !bytes.Equal(got, want) {
				t.Errorf("bundle differs from the first pack (%d vs %d bytes)", len(got), len(want))
			}
			if res != wantRes {
				t.Errorf("result = %+v, want %+v", res, wantRes)
			}
		})
	}

	t.Run("headers", func(t *testing.T) {
		hdrs := listBundle(t, want)
		if !slices.IsSorted(names(hdrs)) {
			t.Errorf("entries not in lexical order: %q", names(hdrs))
		}
		wantMode := map[string]int64{
			"bin/": 0o755, "bin/server": 0o755, "bin/run": 0o777, "conf/app.toml": 0o644,
			"conf/empty": 0o644, "README": 0o644, "current-conf": 0o777,
		}
		for _, h := range hdrs {
			if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
				t.Errorf("%s: mtime %v uid %d gid %d uname %q gname %q; want all zero", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
			}
			if m, ok := wantMode[h.Name]; ok && h.Mode != m {
				t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, m)
			}
		}
	})
}

// mapFS builds the in-memory twin of a tree.
func mapFS(entries []entry) fstest.MapFS {
	m := fstest.MapFS{}
	for _, e := range entries {
		switch {
		case e.dir:
			m[e.name] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
		case e.link != "":
			m[e.name] = &fstest.MapFile{Mode: fs.ModeSymlink, Data: []byte(e.link)}
		default:
			mode := e.mode
			if mode == 0 {
				mode = 0o644
			}
			m[e.name] = &fstest.MapFile{Mode: mode, Data: []byte(e.body)}
		}
	}
	return m
}

func TestPackOnly(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, []entry{
		{name: "app.bin", body: "binary", mode: 0o755},
		{name: "other", body: "not me"},
		{name: "sub/x", body: "x"},
		{name: "sub/y", body: "yy"},
	})
	tests := []struct {
		only      string
		wantNames []string
		wantFiles int
		wantSize  int64
		wantErr   error // nil: success; errAny: any error
	}{
		{only: "app.bin", wantNames: []string{"app.bin"}, wantFiles: 1, wantSize: 6},
		{only: "sub", wantNames: []string{"sub/", "sub/x", "sub/y"}, wantFiles: 2, wantSize: 3},
		{only: "missing", wantErr: fs.ErrNotExist},
		{only: "sub/x", wantErr: errAny},
		{only: "../other", wantErr: errAny},
		{only: "/etc/passwd", wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.only, func(t *testing.T) {
			var buf bytes.Buffer
			res, err := Pack(&buf, os.DirFS(dir), PackOptions{Only: tt.only})
			if tt.wantErr != nil {
				checkErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(listBundle(t, buf.Bytes())); !slices.Equal(got, tt.wantNames) {
				t.Errorf("entries = %q, want %q", got, tt.wantNames)
			}
			if res.Files != tt.wantFiles || res.UnpackedSize != tt.wantSize {
				t.Errorf("files %d size %d, want %d and %d", res.Files, res.UnpackedSize, tt.wantFiles, tt.wantSize)
			}
			hdr := listBundle(t, buf.Bytes())[0]
			if tt.only == "app.bin" && hdr.Mode != 0o755 {
				t.Errorf("mode %o, want 0755", hdr.Mode)
			}
		})
	}
}

// errAny stands for "some error, no sentinel" in tables.
var errAny = errors.New("any error")

func checkErr(t testing.TB, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("no error, want %v", want)
	case want != nil && want != errAny && !errors.Is(err, want):
		t.Fatalf("error %q does not match %q", err, want)
	}
}

func TestPackEmpty(t *testing.T) {
	tests := []struct {
		name string
		tree []entry
	}{
		{"empty dir", nil},
		{"only empty dirs", []entry{{name: "a", dir: true}, {name: "a/b", dir: true}, {name: "c/d/e", dir: true}}},
		{"only a symlink", []entry{{name: "l", link: "nowhere"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			makeTree(t, dir, tt.tree)
			_, err := Pack(io.Discard, os.DirFS(dir), PackOptions{})
			checkErr(t, err, ErrEmpty)
		})
	}
	t.Run("one empty file is not empty", func(t *testing.T) {
		dir := t.TempDir()
		makeTree(t, dir, []entry{{name: "f"}})
		_, res := pack(t, os.DirFS(dir), PackOptions{})
		if res.Files != 1 || res.UnpackedSize != 0 {
			t.Errorf("result %+v, want 1 file of 0 bytes", res)
		}
	})
}

func TestPackRefusesUnsafe(t *testing.T) {
	tests := []struct {
		name string
		tree []entry
	}{
		{"link to parent", []entry{{name: "l", link: "../x"}}},
		{"link to absolute", []entry{{name: "l", link: "/etc/passwd"}}},
		{"link climbing from subdir", []entry{{name: "sub/l", link: "../../x"}}},
		{"link through dotdot inside target", []entry{{name: "l", link: "a/../../x"}}},
		// Each link looks inside on its own; a/c goes through a/b to the
		// tree's parent.
		{"link chain leaving the tree", []entry{
			{name: "a/b", link: ".."},
			{name: "a/c", link: "b/.."},
		}},
		{"link chain through a sibling link", []entry{
			{name: "x", link: "a/b"},
			{name: "a/b", link: "../.."},
		}},
		{"link loop", []entry{{name: "l1", link: "l2"}, {name: "l2", link: "l1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tree := append([]entry{{name: "ok", body: "fine"}}, tt.tree...)
			makeTree(t, dir, tree)
			_, err := Pack(io.Discard, os.DirFS(dir), PackOptions{})
			checkErr(t, err, ErrUnsafeEntry)
		})
	}
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		makeTree(t, dir, []entry{{name: "ok", body: "fine"}})
		if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		_, err := Pack(io.Discard, os.DirFS(dir), PackOptions{})
		checkErr(t, err, ErrUnsafeEntry)
	})
}

func TestPackUnpackRoundTrip(t *testing.T) {
	src := t.TempDir()
	tree := sampleTree()
	big := make([]byte, 1<<20+17)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(big)
	tree = append(tree, entry{name: "data/big.bin", body: string(big)})
	makeTree(t, src, tree)

	b, res := pack(t, os.DirFS(src), PackOptions{})
	var wantSize int64
	wantFiles := 0
	for _, e := range tree {
		if !e.dir && e.link == "" {
			wantSize += int64(len(e.body))
			wantFiles++
		}
	}
	if res.UnpackedSize != wantSize || res.Files != wantFiles {
		t.Errorf("UnpackedSize %d Files %d, want %d and %d", res.UnpackedSize, res.Files, wantSize, wantFiles)
	}

	dst := t.TempDir()
	if err := Unpack(t.Context(), bytes.NewReader(b), dst, UnpackOptions{MaxBytes: res.UnpackedSize, ExpectID: res.ID}); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	want, got := snapshot(t, src), snapshot(t, dst)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: got %q, want %q", name, got[name], w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected entry %q", name, got[name])
		}
	}

	// The unpacked tree is itself a source: packing it gives the same bundle.
	again, _ := pack(t, os.DirFS(dst), PackOptions{})
	if !bytes.Equal(again, b) {
		t.Error("packing the unpacked tree gives a different bundle")
	}
}

func TestPackProgress(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, []entry{
		{name: "a", body: strings.Repeat("a", 100_000)},
		{name: "b/c", body: strings.Repeat("c", 70_000)},
		{name: "d", body: ""},
	})
	var calls []int64
	_, res := pack(t, os.DirFS(dir), PackOptions{Progress: func(n int64) { calls = append(calls, n) }})
	if len(calls) == 0 {
		t.Fatal("progress never called")
	}
	if !slices.IsSorted(calls) {
		t.Errorf("progress went backwards: %v", calls)
	}
	if last := calls[len(calls)-1]; last != res.UnpackedSize || last != 170_000 {
		t.Errorf("progress ended at %d, want %d", last, res.UnpackedSize)
	}
}

// tarEntry is a hand-made tar entry; body is the file content for TypeReg.
type tarEntry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func dirEnt(name string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func symlink(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

// rawTar writes entries as a tar stream, with no checks of its own.
func rawTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("tar header %q: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("tar body %q: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// craft builds a bundle from hand-made entries.
func craft(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	return zstdBytes(t, rawTar(t, entries...))
}

// unpackBox is a parent dir holding the unpack target "out" and an empty
// sibling "sibling": after any unpack, the parent must hold exactly those two
// and the sibling must still be empty.
type unpackBox struct{ parent, out, sibling string }

func newUnpackBox(t testing.TB) unpackBox {
	t.Helper()
	return newUnpackBoxIn(t, t.TempDir())
}

// newUnpackBoxIn makes the box in parent, which must exist and be empty.
func newUnpackBoxIn(t testing.TB, parent string) unpackBox {
	t.Helper()
	b := unpackBox{parent: parent, out: filepath.Join(parent, "out"), sibling: filepath.Join(parent, "sibling")}
	for _, d := range []string{b.out, b.sibling} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (b unpackBox) checkContained(t testing.TB) {
	t.Helper()
	ents, err := os.ReadDir(b.parent)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, []string{"out", "sibling"}) {
		t.Errorf("parent dir holds %q; something was written outside the target", got)
	}
	if ents, err := os.ReadDir(b.sibling); err != nil || len(ents) != 0 {
		t.Errorf("sibling dir holds %d entries (err %v); something was written outside the target", len(ents), err)
	}
}

func TestUnpackRefuses(t *testing.T) {
	good := craft(t, dirEnt("d/"), reg("d/f", "hello"))
	_, goodRes := pack(t, mapFS([]entry{{name: "f", body: "hello"}}), PackOptions{})
	valid, _ := pack(t, mapFS([]entry{{name: "f", body: strings.Repeat("hello ", 1000)}}), PackOptions{})

	tests := []struct {
		name   string
		bundle func(b unpackBox) []byte
		opts   UnpackOptions
		want   error
	}{
		{name: "absolute path", bundle: func(b unpackBox) []byte {
			return craft(t, reg(filepath.Join(b.sibling, "evil"), "x"))
		}, want: ErrUnsafeEntry},
		{name: "dotdot", bundle: func(unpackBox) []byte { return craft(t, reg("../evil", "x")) }, want: ErrUnsafeEntry},
		{name: "dotdot into sibling", bundle: func(unpackBox) []byte { return craft(t, reg("../sibling/evil", "x")) }, want: ErrUnsafeEntry},
		{name: "dotdot inside path", bundle: func(unpackBox) []byte {
			return craft(t, dirEnt("a/"), reg("a/../../sibling/evil", "x"))
		}, want: ErrUnsafeEntry},
		{name: "dot path", bundle: func(unpackBox) []byte { return craft(t, reg("./f", "x")) }, want: ErrUnsafeEntry},
		{name: "backslash", bundle: func(unpackBox) []byte { return craft(t, reg(`..\evil`, "x")) }, want: ErrUnsafeEntry},
		{name: "hard link outside", bundle: func(unpackBox) []byte {
			return craft(t, tarEntry{hdr: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}})
		}, want: ErrUnsafeEntry},
		{name: "hard link inside", bundle: func(unpackBox) []byte {
			return craft(t, reg("f", "x"), tarEntry{hdr: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "f"}})
		}, want: ErrUnsafeEntry},
		{name: "char device", bundle: func(unpackBox) []byte {
			return craft(t, tarEntry{hdr: tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}})
		}, want: ErrUnsafeEntry},
		{name: "block device", bundle: func(unpackBox) []byte {
			return craft(t, tarEntry{hdr: tar.Header{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8, Mode: 0o660}})
		}, want: ErrUnsafeEntry},
		{name: "fifo", bundle: func(unpackBox) []byte {
			return craft(t, tarEntry{hdr: tar.Header{Name: "p", Typeflag: tar.TypeFifo, Mode: 0o644}})
		}, want: ErrUnsafeEntry},
		{name: "symlink escaping then a file through it", bundle: func(unpackBox) []byte {
			return craft(t, symlink("l", "../sibling"), reg("l/evil", "x"))
		}, want: ErrUnsafeEntry},
		{name: "absolute symlink then a file through it", bundle: func(b unpackBox) []byte {
			return craft(t, symlink("l", b.sibling), reg("l/evil", "x"))
		}, want: ErrUnsafeEntry},
		{name: "symlink chain then a file through it", bundle: func(unpackBox) []byte {
			// a/b is the root; a/b/c lands at c, pointing at the parent.
			return craft(t, dirEnt("a/"), symlink("a/b", ".."), symlink("a/b/c", "../sibling"), reg("a/b/c/evil", "x"))
		}, want: ErrUnsafeEntry},
		{name: "file through an inside symlink", bundle: func(unpackBox) []byte {
			return craft(t, dirEnt("d/"), symlink("l", "d"), reg("l/f", "x"))
		}, want: ErrUnsafeEntry},
		{name: "symlink chain leaving the tree", bundle: func(unpackBox) []byte {
			return craft(t, reg("f", "x"), dirEnt("a/"), symlink("a/b", ".."), symlink("a/c", "b/../sibling"))
		}, want: ErrUnsafeEntry},
		{name: "symlink chain leaving the tree, later link last", bundle: func(unpackBox) []byte {
			return craft(t, reg("f", "x"), dirEnt("a/"), symlink("a/c", "b/../sibling"), symlink("a/b", ".."))
		}, want: ErrUnsafeEntry},
		{name: "symlink loop", bundle: func(unpackBox) []byte {
			return craft(t, reg("f", "x"), symlink("l1", "l2"), symlink("l2", "l1"))
		}, want: ErrUnsafeEntry},
		{name: "duplicate file", bundle: func(unpackBox) []byte {
			return craft(t, reg("f", "first"), reg("f", "second"))
		}, want: ErrUnsafeEntry},
		{name: "duplicate dir", bundle: func(unpackBox) []byte {
			return craft(t, dirEnt("d/"), dirEnt("d/"), reg("d/f", "x"))
		}, want: ErrUnsafeEntry},
		{name: "file replaced by symlink", bundle: func(unpackBox) []byte {
			return craft(t, reg("f", "x"), symlink("f", "../sibling"))
		}, want: ErrUnsafeEntry},
		{name: "more bytes than MaxBytes", bundle: func(unpackBox) []byte {
			return craft(t, reg("a", strings.Repeat("a", 600)), reg("b", strings.Repeat("b", 600)))
		}, opts: UnpackOptions{MaxBytes: 1000}, want: ErrTooLarge},
		{name: "zero MaxBytes", bundle: func(unpackBox) []byte { return good }, want: ErrTooLarge},
		{name: "id mismatch", bundle: func(unpackBox) []byte { return good },
			opts: UnpackOptions{MaxBytes: 100, ExpectID: goodRes.ID}, want: ErrIDMismatch},
		{name: "empty stream", bundle: func(unpackBox) []byte { return nil }, opts: UnpackOptions{MaxBytes: 100}, want: ErrEmpty},
		{name: "only dirs", bundle: func(unpackBox) []byte { return craft(t, dirEnt("d/")) },
			opts: UnpackOptions{MaxBytes: 100}, want: ErrEmpty},
		{name: "truncated stream", bundle: func(unpackBox) []byte { return valid[:len(valid)*2/3] },
			opts: UnpackOptions{MaxBytes: 1 << 20}, want: errAny},
		{name: "truncated checksum", bundle: func(unpackBox) []byte { return valid[:len(valid)-1] },
			opts: UnpackOptions{MaxBytes: 1 << 20}, want: errAny},
		{name: "trailing garbage", bundle: func(unpackBox) []byte { return append(slices.Clip(valid), "junk"...) },
			opts: UnpackOptions{MaxBytes: 1 << 20}, want: errAny},
		{name: "garbage", bundle: func(unpackBox) []byte { return []byte("this is not zstd at all, just text") },
			opts: UnpackOptions{MaxBytes: 1 << 20}, want: errAny},
		{name: "plain tar", bundle: func(unpackBox) []byte { return rawTar(t, reg("f", "x")) },
			opts: UnpackOptions{MaxBytes: 1 << 20}, want: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := newUnpackBox(t)
			opts := tt.opts
			if opts.MaxBytes == 0 && tt.name != "zero MaxBytes" {
				opts.MaxBytes = 1 << 20
			}
			err := Unpack(t.Context(), bytes.NewReader(tt.bundle(box)), box.out, opts)
			checkErr(t, err, tt.want)
			box.checkContained(t)
		})
	}
}

func TestUnpackTruncatedEverywhere(t *testing.T) {
	b, res := pack(t, mapFS(sampleTree()), PackOptions{})
	for n := 0; n < len(b); n += 1 + n/8 {
		box := newUnpackBox(t)
		if err := Unpack(t.Context(), bytes.NewReader(b[:n]), box.out, UnpackOptions{MaxBytes: res.UnpackedSize}); err == nil {
			t.Errorf("bundle truncated to %d of %d bytes unpacked without error", n, len(b))
		}
		box.checkContained(t)
	}
}

func TestUnpackLimits(t *testing.T) {
	b, res := pack(t, mapFS(sampleTree()), PackOptions{})
	tests := []struct {
		name string
		opts UnpackOptions
		want error
	}{
		{"exact size and id", UnpackOptions{MaxBytes: res.UnpackedSize, ExpectID: res.ID}, nil},
		{"one byte short", UnpackOptions{MaxBytes: res.UnpackedSize - 1, ExpectID: res.ID}, ErrTooLarge},
		{"no id check", UnpackOptions{MaxBytes: res.UnpackedSize}, nil},
		{"other id", UnpackOptions{MaxBytes: res.UnpackedSize, ExpectID: IDOf([]byte("other"))}, ErrIDMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := newUnpackBox(t)
			checkErr(t, Unpack(t.Context(), bytes.NewReader(b), box.out, tt.opts), tt.want)
			box.checkContained(t)
		})
	}
}

func TestUnpackIgnoresUmaskAndModeBits(t *testing.T) {
	// Odd modes in a hand-made bundle come out normalised, as Pack would write them.
	b := craft(t,
		tarEntry{hdr: tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o700}},
		tarEntry{hdr: tar.Header{Name: "d/x", Typeflag: tar.TypeReg, Mode: 0o4711, Size: 1}, body: "x"},
		tarEntry{hdr: tar.Header{Name: "d/y", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1}, body: "y"},
	)
	box := newUnpackBox(t)
	if err := Unpack(t.Context(), bytes.NewReader(b), box.out, UnpackOptions{MaxBytes: 2}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"d":   "dir -rwxr-xr-x",
		"d/x": "file -rwxr-xr-x 2d711642b726b044",
		"d/y": "file -rw-r--r-- a1fce4363854ff88",
	}
	got := snapshot(t, box.out)
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %q, want %q", name, got[name], w)
		}
	}
}

func TestUnpackNeedsDir(t *testing.T) {
	b, res := pack(t, mapFS(sampleTree()), PackOptions{})
	err := Unpack(t.Context(), bytes.NewReader(b), filepath.Join(t.TempDir(), "missing"), UnpackOptions{MaxBytes: res.UnpackedSize})
	checkErr(t, err, fs.ErrNotExist)
}

func TestLinkSet(t *testing.T) {
	tests := []struct {
		name  string
		links linkSet
		ok    bool
	}{
		{"empty", linkSet{}, true},
		{"sibling", linkSet{"a": "b"}, true},
		{"to root from subdir", linkSet{"a/b": ".."}, true},
		{"dot", linkSet{"a": "."}, true},
		{"dangling inside", linkSet{"a": "x/y/z"}, true},
		{"chain staying inside", linkSet{"a/b": "../c", "c": "d/e", "x": "a/b/f"}, true},
		{"link to link to root", linkSet{"a/b": "..", "a/c": "b"}, true},
		{"parent", linkSet{"a": ".."}, false},
		{"absolute", linkSet{"a": "/etc"}, false},
		{"chain up", linkSet{"a/b": "..", "a/c": "b/.."}, false},
		{"chain up through dir link", linkSet{"d": "x/y", "a": "d/../../.."}, false},
		{"through absolute link", linkSet{"a": "/", "b": "a/etc"}, false},
		{"loop", linkSet{"a": "b", "b": "a"}, false},
		{"self loop", linkSet{"a": "a/x"}, false},
		{"missing then up", linkSet{"a": "nope/../.."}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.links.check()
			if tt.ok && err != nil {
				t.Errorf("check: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrUnsafeEntry) {
				t.Errorf("check = %v, want ErrUnsafeEntry", err)
			}
		})
	}
}

// rawFrame wraps data in one zstd frame by hand, as raw blocks, followed in
// the same frame by zeros zero bytes as RLE blocks (four bytes per 128 KiB):
// a gigabyte of zeros costs 32 KiB and no encoding time.
func rawFrame(data []byte, zeros int64) []byte {
	const maxBlock = 128 << 10
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 13 << 3} // magic; no size, no checksum; 8 MiB window
	block := func(typ byte, size int, last bool) {
		h := uint32(size)<<3 | uint32(typ)<<1
		if last {
			h |= 1
		}
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
	}
	for len(data) > 0 {
		n := min(len(data), maxBlock)
		block(0, n, n == len(data) && zeros == 0)
		out = append(out, data[:n]...)
		data = data[n:]
	}
	for zeros > 0 {
		n := min(zeros, maxBlock)
		zeros -= n
		block(1, int(n), zeros == 0)
		out = append(out, 0)
	}
	return out
}

// untar decompresses a bundle to its tar stream.
func untar(t testing.TB, b []byte) []byte {
	t.Helper()
	dec, err := zstd.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	raw, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestUnpackRefusesTrailingData: Pack's tar ends with the end-of-archive
// marker and nothing after it; any tail, in the same zstd frame or in
// another, is refused without being decoded, a gigabyte of zeros included.
func TestUnpackRefusesTrailingData(t *testing.T) {
	b, res := pack(t, mapFS(sampleTree()), PackOptions{})
	raw := untar(t, b)
	if !bytes.Equal(raw[len(raw)-1024:], make([]byte, 1024)) {
		t.Fatal("Pack's tar does not end with two zero blocks")
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	tests := []struct {
		name   string
		bundle []byte
		want   error
	}{
		{"as packed, in a frame of raw blocks", rawFrame(raw, 0), nil},
		{"1 GiB of zeros in the same frame", rawFrame(raw, 1<<30), ErrTrailingData},
		{"one more zero block", rawFrame(raw, 512), ErrTrailingData},
		{"GNU tar's record padding", rawFrame(raw, int64(10240-len(raw)%10240)), ErrTrailingData},
		{"one zero byte", rawFrame(raw, 1), ErrTrailingData},
		{"zeros compressed by zstd", enc.EncodeAll(append(slices.Clip(raw), make([]byte, 16<<20)...), nil), ErrTrailingData},
		{"zeros in a second frame", append(slices.Clip(b), rawFrame(nil, 1<<30)...), ErrTrailingData},
		{"another tar in a second frame", append(slices.Clip(b), zstdBytes(t, rawTar(t, reg("evil", "x")))...), ErrTrailingData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := newUnpackBox(t)
			err := Unpack(t.Context(), bytes.NewReader(tt.bundle), box.out, UnpackOptions{Name: "web 1.0.0", MaxBytes: res.UnpackedSize})
			checkErr(t, err, tt.want)
			if err != nil && !strings.Contains(err.Error(), "web 1.0.0") {
				t.Errorf("error %q does not name the release", err)
			}
			box.checkContained(t)
		})
	}
}

// tarWithBody writes hdr, then body padded to a block, by hand: tar.Writer
// refuses to write a body for a directory or symlink.
func tarWithBody(t testing.TB, hdr tar.Header, body string, rest ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr.Size = int64(len(body))
	if err := tw.WriteHeader(&hdr); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	buf.WriteString(body)
	buf.Write(make([]byte, (512-len(body)%512)%512))
	for _, e := range rest {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackRefusesBodyOnNonRegular(t *testing.T) {
	// A body that is itself a tar header: a reader that skips the body
	// unread sees a file there that no listing shows.
	hidden := rawTar(t, reg("hidden", "x"))
	hidden = hidden[:len(hidden)-1024]
	tests := []struct {
		name string
		tar  []byte
	}{
		{"dir", tarWithBody(t, tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, "hello", reg("f", "x"))},
		{"symlink", tarWithBody(t, tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "f", Mode: 0o777}, "hello", reg("f", "x"))},
		{"dir hiding an entry", tarWithBody(t, tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, string(hidden), reg("f", "x"))},
		{"dir declaring a body it lacks", tarWithBody(t, tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, "", reg("f", "x"))},
	}
	tests[3].tar = rawTar(t, tarEntry{hdr: tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, Size: 1 << 40}}, reg("f", "x"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := newUnpackBox(t)
			err := Unpack(t.Context(), bytes.NewReader(zstdBytes(t, tt.tar)), box.out, UnpackOptions{MaxBytes: 1 << 20})
			checkErr(t, err, ErrEntryBody)
			box.checkContained(t)
			if _, err := os.Lstat(filepath.Join(box.out, "hidden")); err == nil {
				t.Error("the hidden entry was unpacked")
			}
		})
	}
}

func TestUnpackEntryLimit(t *testing.T) {
	entries := func(n int) []tarEntry {
		out := []tarEntry{dirEnt("d/")}
		for i := range n - 1 {
			out = append(out, reg(fmt.Sprintf("d/f%06d", i), ""))
		}
		return out
	}
	tests := []struct {
		name    string
		entries int
		max     int
		want    error
	}{
		{"at the limit", 10, 10, nil},
		{"one over the limit", 11, 10, ErrTooManyEntries},
		{"100 000 empty files, default limit", 100_000, 0, ErrTooManyEntries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := newUnpackBox(t)
			b := zstdBytes(t, rawTar(t, entries(tt.entries)...))
			err := Unpack(t.Context(), bytes.NewReader(b), box.out, UnpackOptions{MaxBytes: 1, MaxEntries: tt.max})
			checkErr(t, err, tt.want)
			box.checkContained(t)
		})
	}
}

func TestPackRefusesTooManyEntries(t *testing.T) {
	fsys := fstest.MapFS{}
	for i := range DefaultMaxEntries + 1 {
		fsys[fmt.Sprintf("f%06d", i)] = &fstest.MapFile{Mode: 0o644}
	}
	_, err := Pack(io.Discard, fsys, PackOptions{})
	checkErr(t, err, ErrTooManyEntries)
	delete(fsys, "f000000")
	if _, err := Pack(io.Discard, fsys, PackOptions{}); err != nil {
		t.Fatalf("exactly DefaultMaxEntries entries: %v", err)
	}
}

func TestUnpackBounds(t *testing.T) {
	b, res := pack(t, mapFS(sampleTree()), PackOptions{})
	bigPAX := zstdBytes(t, rawTar(t, tarEntry{hdr: tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"comment": strings.Repeat("x", maxHeaderBytes)}}, body: "x"}))
	tests := []struct {
		name   string
		bundle func() io.Reader
		opts   UnpackOptions
		want   error
	}{
		{"bundle of exactly its size", bytesOf(b), UnpackOptions{MaxBytes: res.UnpackedSize, MaxBundleBytes: res.BundleSize, ExpectID: res.ID}, nil},
		{"bundle one byte longer than its manifest says", bytesOf(b), UnpackOptions{MaxBytes: res.UnpackedSize, MaxBundleBytes: res.BundleSize - 1}, ErrTooLarge},
		{"file bytes one short", bytesOf(b), UnpackOptions{MaxBytes: res.UnpackedSize - 1, MaxBundleBytes: res.BundleSize}, ErrTooLarge},
		{"header larger than a header's budget", bytesOf(bigPAX), UnpackOptions{MaxBytes: 1}, ErrTooLarge},
		{"1 GiB tail, bounded by the bundle size", withSkippable(b, 1<<30, nil),
			UnpackOptions{MaxBytes: res.UnpackedSize, MaxBundleBytes: res.BundleSize}, ErrTooLarge},
		{"1 GiB tail, caught by the id", withSkippable(b, 1<<30, nil),
			UnpackOptions{MaxBytes: res.UnpackedSize, ExpectID: res.ID}, ErrIDMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := newUnpackBox(t)
			checkErr(t, Unpack(t.Context(), tt.bundle(), box.out, tt.opts), tt.want)
			box.checkContained(t)
		})
	}
}

func bytesOf(b []byte) func() io.Reader { return func() io.Reader { return bytes.NewReader(b) } }

// withSkippable is b followed by a zstd skippable frame of n zero bytes,
// which a decoder reads and drops: it decodes to nothing. The zeros are
// made as they are read; progress, when set, is called with their count.
func withSkippable(b []byte, n uint32, progress func(int64)) func() io.Reader {
	return func() io.Reader {
		hdr := []byte{0x50, 0x2a, 0x4d, 0x18, byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)}
		return io.MultiReader(bytes.NewReader(b), bytes.NewReader(hdr), &zeroReader{left: int64(n), progress: progress})
	}
}

// zeroReader reads left zero bytes.
type zeroReader struct {
	left, read int64
	progress   func(int64)
}

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.left))
	clear(p[:n])
	z.left -= int64(n)
	z.read += int64(n)
	if z.progress != nil {
		z.progress(z.read)
	}
	return n, nil
}

// TestUnpackCancel: however much is left of a bundle, Unpack returns within
// a second of its context ending (the bound issue 13 sets), with nothing
// outside its target: cancelled while it writes a gigabyte of zeros to one
// file, and while the zstd decoder skips a gigabyte of trailing frame.
func TestUnpackCancel(t *testing.T) {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	// WriteHeader writes the header block at once; the body is ours.
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	// The body's zeros and then the end-of-archive marker's.
	fileBomb := rawFrame(hdr.Bytes(), 1<<30+1024)
	b, res := pack(t, mapFS(sampleTree()), PackOptions{})

	tests := []struct {
		name string
		run  func(ctx context.Context, cancel func(), box unpackBox) error
	}{
		{"writing a 1 GiB file", func(ctx context.Context, cancel func(), box unpackBox) error {
			go func() {
				for ctx.Err() == nil {
					if st, err := os.Stat(filepath.Join(box.out, "zeros")); err == nil && st.Size() >= 32<<20 {
						cancel()
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			return Unpack(ctx, bytes.NewReader(fileBomb), box.out, UnpackOptions{MaxBytes: 1 << 30})
		}},
		{"skipping a 1 GiB tail", func(ctx context.Context, cancel func(), box unpackBox) error {
			r := withSkippable(b, 1<<30, func(n int64) {
				if n >= 64<<20 {
					cancel()
				}
			})
			return Unpack(ctx, r(), box.out, UnpackOptions{MaxBytes: res.UnpackedSize})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			box := newUnpackBox(t)
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			var once sync.Once
			var cancelled time.Time
			cancel := func() {
				once.Do(func() {
					cancelled = time.Now()
					stop()
				})
			}
			err := tt.run(ctx, cancel, box)
			returned := time.Now()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Unpack = %v, want context.Canceled", err)
			}
			if took := returned.Sub(cancelled); took > time.Second {
				t.Errorf("Unpack returned %v after cancel; want within 1s", took)
			} else {
				t.Logf("returned %v after cancel", took)
			}
			box.checkContained(t)
		})
	}
	t.Run("cancelled before it starts", func(t *testing.T) {
		box := newUnpackBox(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := Unpack(ctx, bytes.NewReader(b), box.out, UnpackOptions{MaxBytes: res.UnpackedSize})
		checkErr(t, err, context.Canceled)
		if ents, _ := os.ReadDir(box.out); len(ents) != 0 {
			t.Errorf("a cancelled unpack created %d entries", len(ents))
		}
	})
}
