package train

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// progress draws a one-line progress bar (loss, examples/s, ETA) or, when quiet, log lines.
type progress struct {
	w           io.Writer
	total, from int64
	quiet       bool
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
	return &progress{w: w, total: total, from: from, quiet: quiet, every: every, perStep: examplesPerStep, start: now}
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
	if p.quiet {
		if step%p.every == 0 || step == p.total {
			fmt.Fprintf(p.w, "step %d/%d loss %.4f %s eta %s\n", step, p.total, loss, speed, eta.Round(time.Second))
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
