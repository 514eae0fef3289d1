package train

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressOffTerminal: written to a file or pipe, the progress display prints plain lines
// (no carriage-return redraws), one per LineEvery and one at the end.
func TestProgressOffTerminal(t *testing.T) {
	defer func(d time.Duration) { LineEvery = d }(LineEvery)
	for _, tc := range []struct {
		every time.Duration
		lines int
	}{{time.Hour, 1}, {0, 50}} {
		LineEvery = tc.every
		var buf bytes.Buffer
		p := newProgress(&buf, 50, 0, false, 0, 8)
		for s := int64(1); s <= 50; s++ {
			p.update(s, 0.5)
		}
		p.done()
		out := buf.String()
		if strings.Contains(out, "\r") || strings.Contains(out, "\033[") {
			t.Fatalf("LineEvery %v: terminal redraws in a non-terminal output: %q", tc.every, out)
		}
		if n := strings.Count(out, "\n"); n != tc.lines || !strings.Contains(out, "step 50/50") {
			t.Fatalf("LineEvery %v: %d lines, want %d ending at step 50:\n%s", tc.every, n, tc.lines, out)
		}
	}
}
