// Package sweep runs grids of fine-tuning runs (methods × learning rates × seeds, or named
// variants) as "singlora train" subprocesses, resumably, and summarises them: mean ± std of the
// final metrics per cell, the spread across learning rates per method, and a plot.
package sweep

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/plot"
	"github.com/singlora/singlora/train"
)

// Cell is one run of a sweep.
type Cell struct {
	Name    string          // folder name under the sweep folder
	Variant string          // the row it belongs to (method, or an experiment's variant name)
	Cfg     finetune.Config // full config of the run
}

// Grid expands base over variants × learning rates × seeds. A variant is a name and a function
// that modifies the config (e.g. sets the method); lrs may be nil (keep each variant's lr).
type Variant struct {
	Name  string
	Apply func(*finetune.Config)
}

// Grid returns the cells in a stable order.
func Grid(base finetune.Config, variants []Variant, lrs []float64, seeds []uint64) []Cell {
	var cells []Cell
	for _, v := range variants {
		lrList := lrs
		if len(lrList) == 0 {
			lrList = []float64{0}
		}
		for _, lr := range lrList {
			for _, s := range seeds {
				c := base
				c.TargetModules = append([]string(nil), base.TargetModules...)
				if v.Apply != nil {
					v.Apply(&c)
				}
				if lr > 0 {
					c.LR = lr
				}
				c.Seed = s
				name := fmt.Sprintf("%s-lr%s-s%d", v.Name, strconv.FormatFloat(c.LR, 'g', -1, 64), s)
				c.Name = fmt.Sprintf("%s lr=%g seed=%d", v.Name, c.LR, s)
				cells = append(cells, Cell{Name: name, Variant: v.Name, Cfg: c})
			}
		}
	}
	return cells
}

// MethodVariants returns one variant per method name (the method's config left as base has it).
func MethodVariants(methods []string) []Variant {
	var out []Variant
	for _, m := range methods {
		m := m
		out = append(out, Variant{Name: m, Apply: func(c *finetune.Config) { c.Method = m }})
	}
	return out
}

// Options controls how cells run.
type Options struct {
	Dir      string // sweep folder
	Parallel int    // runs at once (each a subprocess)
	Threads  int    // GOMAXPROCS per run (0: cores/parallel)
	Binary   string // the singlora binary (default: this executable)
	Out      io.Writer
}

// Status of a cell's run folder: done (summary.json), partial (a run was recorded —
// config.json — and is resumed; train --resume starts one that stopped before its first
// checkpoint again from step 0), stale (a folder without a run: removed and started over) or new.
func status(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, finetune.SummaryFile)); err == nil {
		return "done"
	}
	if _, err := os.Stat(filepath.Join(dir, finetune.ConfigFile)); err == nil {
		return "partial"
	}
	if _, err := os.Stat(dir); err == nil {
		return "stale"
	}
	return "new"
}

// Run runs every cell not yet done (resuming partial ones), Parallel at a time, and returns the
// first error after all runs have ended. ctx cancellation interrupts the running subprocesses
// (they checkpoint and can be resumed by running the sweep again).
func Run(ctx context.Context, cells []Cell, o Options) error {
	if o.Out == nil {
		o.Out = os.Stderr
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Binary = exe
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	threads := o.Threads
	if threads <= 0 {
		threads = max(1, numCPU()/o.Parallel)
	}
	var todo []Cell
	for _, c := range cells {
		if status(filepath.Join(o.Dir, c.Name)) != "done" {
			todo = append(todo, c)
		}
	}
	fmt.Fprintf(o.Out, "sweep %s: %d runs, %d done, %d to run (%d at a time, %d threads each)\n",
		o.Dir, len(cells), len(cells)-len(todo), len(todo), o.Parallel, threads)
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		wg       sync.WaitGroup
	)
	start := time.Now()
	sem := make(chan struct{}, o.Parallel)
	for _, c := range todo {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(c Cell) {
			defer wg.Done()
			defer func() { <-sem }()
			err := runCell(ctx, c, o, threads)
			mu.Lock()
			defer mu.Unlock()
			done++
			el := time.Since(start)
			eta := time.Duration(float64(el) / float64(done) * float64(len(todo)-done))
			if err != nil {
				fmt.Fprintf(o.Out, "[%d/%d] %s: FAILED: %v\n", done, len(todo), c.Name, err)
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", c.Name, err)
				}
				return
			}
			fmt.Fprintf(o.Out, "[%d/%d] %s done (elapsed %s, ETA %s)\n", done, len(todo), c.Name, el.Round(time.Second), eta.Round(time.Second))
		}(c)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("sweep interrupted: run it again to resume")
	}
	return firstErr
}

func runCell(ctx context.Context, c Cell, o Options, threads int) error {
	dir := filepath.Join(o.Dir, c.Name)
	// A trainer left running by an earlier, killed sweep still holds the folder: say so rather
	// than start a second trainer (which would refuse) or remove its folder.
	if _, err := os.Stat(dir); err == nil {
		l, err := train.LockFolder(dir)
		if err != nil {
			return err
		}
		l.Unlock()
	}
	var args []string
	switch status(dir) {
	case "partial":
		args = []string{"train", "--resume", dir, "--quiet"}
	case "stale": // started but never checkpointed: start over
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		fallthrough
	default:
		cfgPath := filepath.Join(o.Dir, c.Name+".config.json")
		js, _ := json.MarshalIndent(c.Cfg, "", "  ")
		if err := atomicfile.WriteFile(cfgPath, js, 0o644); err != nil {
			return err
		}
		args = []string{"train", "--config", cfgPath, "--run", dir, "--quiet"}
	}
	cmd := exec.Command(o.Binary, args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", threads))
	stopWithParent(cmd) // a killed sweep must not leave its trainers running
	logf, err := os.Create(filepath.Join(o.Dir, c.Name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	select {
	case err := <-waitDone:
		if err != nil {
			return fmt.Errorf("%w (log: %s)", err, logf.Name())
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Signal(os.Interrupt)
		<-waitDone
		return ctx.Err()
	}
}

// Result is one finished cell's summary.
type Result struct {
	Cell    Cell
	Summary finetune.Summary
}

// Collect reads the summaries of the finished cells.
func Collect(dir string, cells []Cell) ([]Result, error) {
	var out []Result
	for _, c := range cells {
		b, err := os.ReadFile(filepath.Join(dir, c.Name, finetune.SummaryFile))
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			return nil, err
		}
		var s finetune.Summary
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		out = append(out, Result{Cell: c, Summary: s})
	}
	return out, nil
}

// Row is one (variant, lr) cell of the summary, over seeds: Mean ± Std of the summary's Metric,
// and for classification runs the test and validation accuracy (the test fields absent when the
// runs had no test set).
type Row struct {
	Variant  string   `json:"variant"`
	LR       float64  `json:"lr"`
	N        int      `json:"n"`
	Mean     float64  `json:"mean"`
	Std      float64  `json:"std"`
	TestMean *float64 `json:"test_accuracy_mean,omitempty"`
	TestStd  *float64 `json:"test_accuracy_std,omitempty"`
	ValMean  *float64 `json:"val_accuracy_mean,omitempty"`
	ValStd   *float64 `json:"val_accuracy_std,omitempty"`
	Params   int      `json:"trainable_params"`
	Seconds  float64  `json:"train_seconds_mean"`
}

// Spread is a variant's range of the mean of Summary.Metric across learning rates: Best and
// Worst are the best and worst of those means (the highest accuracy, the lowest perplexity),
// Spread = |Best − Worst|, and for a lower-is-better metric Ratio = Worst / Best.
type Spread struct {
	Variant string  `json:"variant"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	Spread  float64 `json:"spread"`
	Ratio   float64 `json:"worst_over_best,omitempty"`
	BestLR  float64 `json:"best_lr"`
	WorstLR float64 `json:"worst_lr"`
}

// Summary is sweep.json.
type Summary struct {
	// Metric is what the rows' Mean, the spreads and the best learning rate are measured by: the
	// first of "test accuracy", "test perplexity", "validation accuracy", "validation perplexity"
	// that every finished run reports (classification runs report accuracy, causal-LM runs
	// perplexity).
	Metric string `json:"metric"`
	// Lower is true when a lower Metric is better (perplexity).
	Lower   bool     `json:"lower_is_better,omitempty"`
	Rows    []Row    `json:"rows"`
	Spreads []Spread `json:"spreads"`
}

func meanStd(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	if len(xs) < 2 {
		return m, 0
	}
	var v float64
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)-1))
}

// ranking is a metric a summary can rank runs by.
type ranking struct {
	split, key string // split: "test" or "validation"; key in finetune.Summary's map
	lower      bool
}

func (r ranking) name() string { return r.split + " " + r.key }

func (r ranking) value(s finetune.Summary) (float64, bool) {
	m := s.Val
	if r.split == "test" {
		m = s.Test
	}
	v, ok := m[r.key]
	return v, ok
}

// rankings are tried in order; the first every run reports is the summary's metric.
var rankings = []ranking{{"test", "accuracy", false}, {"test", "perplexity", true},
	{"validation", "accuracy", false}, {"validation", "perplexity", true}}

func chooseRanking(results []Result) ranking {
	for _, r := range rankings {
		all := len(results) > 0
		for _, res := range results {
			if _, ok := r.value(res.Summary); !ok {
				all = false
				break
			}
		}
		if all {
			return r
		}
	}
	return ranking{"validation", "accuracy", false} // nothing common: reported as NaN
}

// Summarize groups results by (variant, lr) and ranks learning rates by the first metric every
// run reports (see Summary.Metric): runs without a test set are not scored on one.
func Summarize(results []Result) Summary {
	type key struct {
		v  string
		lr float64
	}
	groups := map[key][]Result{}
	var order []key
	for _, r := range results {
		k := key{r.Cell.Variant, r.Cell.Cfg.LR}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	rk := chooseRanking(results)
	s := Summary{Metric: rk.name(), Lower: rk.lower}
	accuracy := rk.key == "accuracy"
	best := map[string]*Spread{}
	var variants []string
	for _, k := range order {
		rs := groups[k]
		var score, test, val, secs []float64
		for _, r := range rs {
			v, ok := rk.value(r.Summary)
			if !ok {
				v = math.NaN()
			}
			score = append(score, v)
			test = append(test, r.Summary.Test["accuracy"])
			val = append(val, r.Summary.Val["accuracy"])
			secs = append(secs, r.Summary.TrainSeconds)
		}
		row := Row{Variant: k.v, LR: k.lr, N: len(rs), Params: rs[0].Summary.TrainableParams}
		row.Mean, row.Std = meanStd(score)
		if accuracy {
			m, sd := meanStd(val)
			row.ValMean, row.ValStd = &m, &sd
			if rk.split == "test" {
				m, sd := meanStd(test)
				row.TestMean, row.TestStd = &m, &sd
			}
		}
		row.Seconds, _ = meanStd(secs)
		s.Rows = append(s.Rows, row)
		sp, ok := best[k.v]
		if !ok {
			sp = &Spread{Variant: k.v, Min: row.Mean, Max: row.Mean, BestLR: k.lr, WorstLR: k.lr}
			best[k.v] = sp
			variants = append(variants, k.v)
		}
		if row.Mean < sp.Min {
			sp.Min = row.Mean
			if rk.lower {
				sp.BestLR = k.lr
			} else {
				sp.WorstLR = k.lr
			}
		}
		if row.Mean > sp.Max {
			sp.Max = row.Mean
			if rk.lower {
				sp.WorstLR = k.lr
			} else {
				sp.BestLR = k.lr
			}
		}
	}
	for _, v := range variants {
		sp := best[v]
		sp.Spread = sp.Max - sp.Min
		if rk.lower && sp.Min > 0 {
			sp.Ratio = sp.Max / sp.Min
		}
		s.Spreads = append(s.Spreads, *sp)
	}
	sort.SliceStable(s.Rows, func(i, j int) bool {
		if s.Rows[i].Variant != s.Rows[j].Variant {
			return false
		}
		return s.Rows[i].LR < s.Rows[j].LR
	})
	return s
}

// digits is how a metric's values are printed: accuracy to 4 decimals, perplexity to 1.
func (s Summary) digits() int {
	if s.Lower {
		return 1
	}
	return 4
}

// Markdown renders the summary as Markdown tables: one row per (variant, lr); with several
// learning rates, the variants × learning rates grid of the metric's mean ± std; and the spreads.
func (s Summary) Markdown() string {
	var sb strings.Builder
	d := s.digits()
	if s.Lower {
		fmt.Fprintf(&sb, "| variant | lr | runs | trainable params | %s | train s |\n|---|---|---|---|---|---|\n", s.metric())
		for _, r := range s.Rows {
			fmt.Fprintf(&sb, "| %s | %g | %d | %d | %.*f ± %.*f | %.0f |\n", r.Variant, r.LR, r.N, r.Params, d, r.Mean, d, r.Std, r.Seconds)
		}
	} else {
		sb.WriteString("| variant | lr | runs | trainable params | test accuracy | validation accuracy | train s |\n|---|---|---|---|---|---|---|\n")
		for _, r := range s.Rows {
			test := "— (no test set)"
			if r.TestMean != nil {
				test = fmt.Sprintf("%.4f ± %.4f", *r.TestMean, *r.TestStd)
			}
			val := "—"
			if r.ValMean != nil {
				val = fmt.Sprintf("%.4f ± %.4f", *r.ValMean, *r.ValStd)
			}
			fmt.Fprintf(&sb, "| %s | %g | %d | %d | %s | %s | %.0f |\n", r.Variant, r.LR, r.N, r.Params, test, val, r.Seconds)
		}
	}
	sb.WriteString(s.gridMarkdown())
	if len(s.Spreads) > 0 {
		if s.Lower {
			fmt.Fprintf(&sb, "\n| variant | best mean %[1]s | worst mean %[1]s | spread | worst / best | best lr | worst lr |\n|---|---|---|---|---|---|---|\n", s.metric())
			for _, sp := range s.Spreads {
				fmt.Fprintf(&sb, "| %s | %.*f | %.*f | %.*f | %.2f× | %g | %g |\n", sp.Variant, d, sp.Min, d, sp.Max, d, sp.Spread, sp.Ratio, sp.BestLR, sp.WorstLR)
			}
		} else {
			fmt.Fprintf(&sb, "\n| variant | min mean %[1]s | max mean %[1]s | spread | best lr |\n|---|---|---|---|---|\n", s.metric())
			for _, sp := range s.Spreads {
				fmt.Fprintf(&sb, "| %s | %.4f | %.4f | %.4f | %g |\n", sp.Variant, sp.Min, sp.Max, sp.Spread, sp.BestLR)
			}
		}
	}
	return sb.String()
}

// gridMarkdown is the variants × learning rates table of the metric (empty with one learning
// rate): "mean ± std (n)" per cell, "–" where no run finished.
func (s Summary) gridMarkdown() string {
	var lrs []float64
	seen := map[float64]bool{}
	var variants []string
	cells := map[string]map[float64]Row{}
	for _, r := range s.Rows {
		if !seen[r.LR] {
			seen[r.LR] = true
			lrs = append(lrs, r.LR)
		}
		if cells[r.Variant] == nil {
			cells[r.Variant] = map[float64]Row{}
			variants = append(variants, r.Variant)
		}
		cells[r.Variant][r.LR] = r
	}
	if len(lrs) < 2 {
		return ""
	}
	sort.Float64s(lrs)
	var sb strings.Builder
	d := s.digits()
	fmt.Fprintf(&sb, "\n%s, mean ± std over seeds (runs):\n\n| variant | trainable params |", s.metric())
	for _, lr := range lrs {
		fmt.Fprintf(&sb, " lr %g |", lr)
	}
	sb.WriteString("\n|---|---|" + strings.Repeat("---|", len(lrs)) + "\n")
	for _, v := range variants {
		params := 0
		for _, r := range cells[v] {
			params = r.Params
		}
		fmt.Fprintf(&sb, "| %s | %d |", v, params)
		for _, lr := range lrs {
			r, ok := cells[v][lr]
			if !ok {
				sb.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&sb, " %.*f ± %.*f (%d) |", d, r.Mean, d, r.Std, r.N)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func (s Summary) metric() string {
	if s.Metric == "" {
		return "test accuracy"
	}
	return s.Metric
}

// Write writes sweep.json, sweep.md and, when there are several learning rates, the sweep plot.
func (s Summary) Write(dir string) error {
	js, _ := json.MarshalIndent(s, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, "sweep.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "sweep.md"), []byte(s.Markdown()), 0o644); err != nil {
		return err
	}
	lrs := map[float64]bool{}
	var pts []plot.SweepPoint
	for _, r := range s.Rows {
		lrs[r.LR] = true
		pts = append(pts, plot.SweepPoint{Method: r.Variant, LR: r.LR, Value: r.Mean, Err: r.Std})
	}
	if len(lrs) < 2 {
		return nil
	}
	ch, err := plot.Sweep(pts, s.metric())
	if err != nil {
		return err
	}
	ch.LogY = s.Lower // perplexities span decades where a learning rate diverges
	name := "sweep-" + strings.ReplaceAll(s.metric(), " ", "-")
	if err := ch.WriteSVG(filepath.Join(dir, name+".svg")); err != nil {
		return err
	}
	return ch.WritePNG(filepath.Join(dir, name+".png"))
}
