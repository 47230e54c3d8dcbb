package release

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchFile is one file of the benchmark release.
type benchFile struct {
	name string
	data []byte
}

// benchRelease is ~64 MiB shaped like a real release, the same on every run:
// half incompressible (four 8 MiB "binaries" of random bytes), half text that
// compresses the way source, config and logs do (512 files of 64 KiB drawn
// from a 4096-word vocabulary, in 16 directories).
func benchRelease() []benchFile {
	const (
		binFiles, binSize   = 4, 8 << 20
		textFiles, textSize = 512, 64 << 10
	)
	var files []benchFile
	chacha := rand.NewChaCha8([32]byte{'s', 'w', 'a', 'r', 'm'})
	for i := range binFiles {
		b := make([]byte, binSize)
		_, _ = chacha.Read(b)
		files = append(files, benchFile{fmt.Sprintf("bin/blob-%d.bin", i), b})
	}

	rng := rand.New(rand.NewPCG(1, 2))
	vocab := make([]string, 4096)
	for i := range vocab {
		var w strings.Builder
		for range 2 + rng.IntN(9) {
			w.WriteByte(byte('a' + rng.IntN(26)))
		}
		vocab[i] = w.String()
	}
	punct := []string{" ", " ", " ", " ", ", ", ". ", " = ", "(", ") ", ": ", "_", "."}
	for i := range textFiles {
		var buf bytes.Buffer
		for buf.Len() < textSize {
			buf.WriteString(strings.Repeat("\t", rng.IntN(4)))
			for range 3 + rng.IntN(10) {
				// Zipf-ish: a few words are very common, as in real text.
				buf.WriteString(vocab[int(float64(len(vocab))*rng.Float64()*rng.Float64()*rng.Float64())])
				buf.WriteString(punct[rng.IntN(len(punct))])
			}
			if rng.IntN(4) == 0 {
				buf.WriteString(strconv.Itoa(rng.IntN(100000)))
			}
			buf.WriteByte('\n')
		}
		files = append(files, benchFile{fmt.Sprintf("src/pkg%02d/file%03d.txt", i%16, i), buf.Bytes()[:textSize]})
	}
	return files
}

func benchTotal(files []benchFile) int64 {
	var n int64
	for _, f := range files {
		n += int64(len(f.data))
	}
	return n
}

// writeBenchRelease writes the benchmark release under a temp dir.
func writeBenchRelease(b *testing.B) (dir string, total int64) {
	b.Helper()
	files := benchRelease()
	dir = b.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir, benchTotal(files)
}

// BenchmarkPack measures packing a release from disk (page cache) to a
// discarded stream: walk, tar, zstd and sha256 together, as publish does.
func BenchmarkPack(b *testing.B) {
	dir, total := writeBenchRelease(b)
	fsys := os.DirFS(dir)
	b.SetBytes(total)
	b.ReportAllocs()
	var res PackResult
	for b.Loop() {
		var err error
		if res, err = Pack(io.Discard, fsys, PackOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(res.BundleSize)/float64(total), "ratio")
}

// BenchmarkSHA256 is the yardstick for BenchmarkPack: hashing the same bytes
// in memory is the least any content-addressed publish has to do.
func BenchmarkSHA256(b *testing.B) {
	files := benchRelease()
	b.SetBytes(benchTotal(files))
	b.ReportAllocs()
	for b.Loop() {
		h := sha256.New()
		for _, f := range files {
			h.Write(f.data)
		}
		_ = h.Sum(nil)
	}
}

// BenchmarkUnpack measures unpacking the packed release into a fresh
// directory, with the size and id checks a node makes.
func BenchmarkUnpack(b *testing.B) {
	src, total := writeBenchRelease(b)
	var bundle bytes.Buffer
	res, err := Pack(&bundle, os.DirFS(src), PackOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(src); err != nil {
		b.Fatal(err)
	}
	base := b.TempDir()
	opts := UnpackOptions{MaxBytes: res.UnpackedSize, ExpectID: res.ID}
	b.SetBytes(total)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dst := filepath.Join(base, strconv.Itoa(i))
		i++
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := Unpack(b.Context(), bytes.NewReader(bundle.Bytes()), dst, opts); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
