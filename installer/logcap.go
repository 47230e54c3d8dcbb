package installer

import (
	"fmt"
	"io"
)

// capWriter writes to w until limit bytes have been written in all, counts
// the rest as dropped, and says so once at the end (note). A hook's output
// reaches the log through one, so that a chatty hook cannot fill the disk.
type capWriter struct {
	w       io.Writer
	limit   int64
	written int64
	dropped int64
	last    byte // the last byte written, to start the note on a line of its own
	failed  bool // the log refused a write: count everything from then on
}

// put writes p as far as the cap allows. It never fails: output past the
// cap, or that the log could not take, is counted as dropped, so that the
// hook is never blocked on a full pipe.
func (c *capWriter) put(p []byte) {
	keep := min(int64(len(p)), max(c.limit-c.written, 0))
	if c.failed {
		keep = 0
	}
	if keep > 0 {
		n, err := c.w.Write(p[:keep])
		c.written += int64(n)
		if n > 0 {
			c.last = p[n-1]
		}
		if err != nil {
			c.failed = true
			keep = int64(n)
		}
	}
	c.dropped += int64(len(p)) - keep
}

// copyFrom copies r into c until r fails; io.EOF is the normal end.
func (c *capWriter) copyFrom(r io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		c.put(buf[:n])
		if err != nil {
			return err
		}
	}
}

// note writes the line that says how much output was dropped, if any.
func (c *capWriter) note() {
	if c.dropped == 0 {
		return
	}
	nl := ""
	if c.written > 0 && c.last != '\n' {
		nl = "\n"
	}
	fmt.Fprintf(c.w, "%s==== output over the log cap of %d bytes: %d bytes dropped\n", nl, c.limit, c.dropped)
}
