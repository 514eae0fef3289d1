package train

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// progress draws a one-line progress bar (loss, examples/s, ETA) on a terminal; written to a
// file or a pipe (a CI log, "make demo > log"), where carriage-return redraws would pile up, it
// prints a plain line every LineEvery instead. Quiet prints a line every `every` steps.
type progress struct {
	w           io.Writer
	total, from int64
	quiet       bool
	tty         bool
	every       int64
	perStep     int64
	start       time.Time
	last        time.Time
	lastEval    string
	drawn       bool
	tokens      int64 // tokens seen since the start of this process (0: not counted)
}

func newProgress(w io.Writer, total, from int64, quiet bool, every, examplesPerStep int64) *progress {
	if every <= 0 {
		every = 10
	}
	now := time.Now()
	return &progress{w: w, total: total, from: from, quiet: quiet, tty: isTerminal(w), every: every, perStep: examplesPerStep, start: now, last: now}
}

// LineEvery is how often the progress display prints a line when its output is not a terminal.
var LineEvery = 10 * time.Second

// isTerminal reports whether w is a character device (a terminal), where redrawing one line works.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) note(ev map[string]float64) {
	keys := make([]string, 0, len(ev))
	for k := range ev {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.4f", k, ev[k]))
	}
	p.lastEval = strings.Join(parts, " ")
	if p.quiet {
		fmt.Fprintf(p.w, "eval: %s\n", p.lastEval)
	}
}

func (p *progress) update(step int64, loss float64) {
	done := step - p.from
	el := time.Since(p.start).Seconds()
	rate := float64(done) / el
	eta := time.Duration(float64(p.total-step)/rate) * time.Second
	exs := rate * float64(p.perStep)
	speed := fmt.Sprintf("%.1f ex/s", exs)
	if p.tokens > 0 {
		speed += fmt.Sprintf(" %.0f tok/s", float64(p.tokens)/el)
	}
	if p.quiet || !p.tty {
		due := step%p.every == 0
		if !p.quiet {
			due = time.Since(p.last) >= LineEvery
		}
		if due || step == p.total {
			p.last = time.Now()
			line := fmt.Sprintf("step %d/%d loss %.4f %s eta %s", step, p.total, loss, speed, eta.Round(time.Second))
			if !p.quiet && p.lastEval != "" {
				line += " | " + p.lastEval
			}
			fmt.Fprintln(p.w, line)
		}
		return
	}
	if time.Since(p.last) < 100*time.Millisecond && step != p.total {
		return
	}
	p.last = time.Now()
	const width = 24
	fill := int(float64(width) * float64(step) / float64(p.total))
	bar := strings.Repeat("█", fill) + strings.Repeat("░", width-fill)
	line := fmt.Sprintf("\r%s %d/%d loss %.4f %s ETA %s", bar, step, p.total, loss, speed, eta.Round(time.Second))
	if p.lastEval != "" {
		line += " | " + p.lastEval
	}
	fmt.Fprintf(p.w, "%s\033[K", line)
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn && !p.quiet {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
