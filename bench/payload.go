package bench

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
)

// WriteRandomFile writes size bytes of seeded pseudo-random (incompressible)
// data to path: the payload of a benchmark release. The same seed gives the
// same bytes, so runs can be repeated exactly.
func WriteRandomFile(path string, size int64, seed uint64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.NewChaCha8(seedBytes(seed))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		_, _ = rng.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			f.Close()
			return fmt.Errorf("payload: %w", err)
		}
		left -= n
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("payload: %w", err)
	}
	return f.Close()
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}
