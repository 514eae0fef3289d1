package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/singlora/singlora/bench"
	"github.com/singlora/singlora/models/hf"
)

func init() {
	register(&command{
		Name:    "bench",
		Summary: "benchmark training steps (layer, bert-base-4l, llama-tiny, demo, llama-1b, llama-7b), optionally against PyTorch",
		Usage: `singlora bench --preset bert-base-4l
singlora bench --preset layer --json
singlora bench --preset bert-base-4l --method singlora --compare-torch --reps 3
singlora bench --model ./tiny-llama --method singlora,lora
singlora bench --preset llama-1b --base-dtype bf16 --json --steps 1 --warmup 1`,
		Run: runBench,
	})
}

type benchFlags struct {
	recompute                                                            bool
	preset, workload, only, cpuProfile, python, torchScript, pair, model string
	baseDType                                                            string
	methods                                                              *listFlag
	steps, warmup, reps, streams                                         int
	jsonOut, inproc, compare                                             bool
	stepsSet, warmupSet                                                  bool // given on the command line
}

// stepsFor returns the timed and untimed steps for w: --steps and --warmup where given, else the
// workload's own defaults (llama-1b and llama-7b take few), else the flags' defaults.
func (f benchFlags) stepsFor(w bench.Workload) (steps, warmup int) {
	steps, warmup = f.steps, f.warmup
	if !f.stepsSet && w.Steps > 0 {
		steps = w.Steps
	}
	if !f.warmupSet && w.Warmup > 0 {
		warmup = w.Warmup
	}
	return steps, warmup
}

// goArgs are the arguments of "singlora bench" running workload w alone with f's settings.
func (f benchFlags) goArgs(w bench.Workload) []string {
	steps, warmup := f.stepsFor(w)
	args := []string{"bench", "--workload", w.Name, "--steps", strconv.Itoa(steps), "--warmup", strconv.Itoa(warmup),
		"--streams", strconv.Itoa(f.streams), "--base-dtype", f.baseDType}
	if f.recompute {
		args = append(args, "--recompute-blocks")
	}
	if f.model != "" {
		args = append(args, "--model", f.model)
	}
	return args
}

func runBench(args []string) error {
	fs := newFlags("bench")
	f := benchFlags{methods: newListFlag()}
	fs.StringVar(&f.preset, "preset", "bert-base-4l", "workload preset: "+strings.Join(bench.Presets, ", ")+", or all (all but llama-1b and llama-7b);\n"+
		"llama-1b and llama-7b write a random Hugging Face checkpoint once into <--cache>/bench and load it")
	fs.Var(f.methods, "method", "the `methods`, comma-separated or repeated (singlora, lora, full, ...; naive for the layer preset); default: the preset's")
	alias(fs, "methods", "method")
	cache := cacheFlag(fs)
	fs.IntVar(&f.steps, "steps", 10, "timed steps per workload (the median is reported); llama-1b and llama-7b default to 3 and 2")
	fs.IntVar(&f.warmup, "warmup", 3, "untimed steps before timing (the first compiles the graph); llama-1b and llama-7b default to 1")
	fs.StringVar(&f.baseDType, "base-dtype", "auto", "how presets model, llama-1b and llama-7b hold the frozen base matrices: auto (the checkpoint's bf16/f16,\n"+
		"else f32), bf16, f16 or f32; llama-1b/7b write their random checkpoint in that dtype (bf16 for auto)")
	fs.BoolVar(&f.recompute, "recompute-blocks", false, "presets model, llama-1b and llama-7b: recompute each block in the backward (gradient checkpointing; the PyTorch peer does not)")
	fs.StringVar(&f.pair, "pair", "", "compare two workloads in this process, step against step (\"bert-base-4l/lora,bert-base-4l/singlora\"): prints B/A per pair and the median; --steps pairs")
	fs.IntVar(&f.streams, "streams", bench.Streams, "bert-base-4l and demo: split the batch into this many independent chains (1: a single chain; same math)")
	fs.StringVar(&f.model, "model", "", "benchmark a training step of this model (a folder of a registered architecture, or a built-in name such as use): preset model")
	fs.BoolVar(&f.jsonOut, "json", false, "print one JSON object per workload instead of a table")
	fs.StringVar(&f.workload, "workload", "", "run only this workload (\"bert-base-4l/singlora\") in this process")
	fs.StringVar(&f.only, "only", "", "keep only workloads whose name contains this string (e.g. 4096x4096)")
	fs.BoolVar(&f.inproc, "inproc", false, "run all workloads in this process (default: one process per workload, so that peak RSS is per workload)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) of the timed steps; needs a single workload (--workload)")
	fs.BoolVar(&f.compare, "compare-torch", false, "run each workload in Go and in PyTorch (bench/torch_bench.py), interleaved, and print the Go/PyTorch ratio")
	fs.IntVar(&f.reps, "reps", 3, "with --compare-torch: Go/PyTorch repetitions per workload (alternating which runs first)")
	fs.StringVar(&f.python, "python", "/usr/bin/python3", "with --compare-torch: the Python with torch installed")
	fs.StringVar(&f.torchScript, "torch-script", "bench/torch_bench.py", "with --compare-torch: the PyTorch benchmark script")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	if err := useCache(fs, *cache); err != nil { // the demo preset reads it, here and in the child processes
		return err
	}
	if f.streams < 1 {
		return fmt.Errorf("--streams must be ≥ 1, got %d", f.streams)
	}
	bench.Streams = f.streams
	base, err := hf.ParseBaseDType(f.baseDType)
	if err != nil {
		return fmt.Errorf("--base-dtype: %w", err)
	}
	bench.BaseDType, f.baseDType = base, string(base)
	bench.RecomputeBlocks = f.recompute
	f.stepsSet, f.warmupSet = isSet(fs, "steps"), isSet(fs, "warmup")
	if f.model != "" {
		if isSet(fs, "preset") && f.preset != "model" {
			return fmt.Errorf("--model benchmarks preset model, not --preset %s", f.preset)
		}
		if f.compare {
			return fmt.Errorf("--compare-torch has no PyTorch peer for --model (its presets are %s)", strings.Join(bench.Presets, ", "))
		}
		f.preset, bench.Model = "model", f.model
	}
	if f.pair != "" {
		return runPair(f)
	}
	if f.workload != "" {
		w, err := bench.Find(f.workload)
		if err != nil {
			return err
		}
		r, err := runOne(w, f)
		if err != nil {
			return err
		}
		fmt.Println(r.JSON())
		return nil
	}
	if f.cpuProfile != "" {
		return fmt.Errorf("--cpuprofile needs --workload (one workload per profile)")
	}
	presets := []string{f.preset}
	if f.preset == "all" {
		presets = nil
		for _, p := range bench.Presets {
			if !bench.Heavy[p] { // multi-GB checkpoints: only when named
				presets = append(presets, p)
			}
		}
	}
	var ws []bench.Workload
	for _, p := range presets {
		pw, err := bench.Workloads(p, f.methods.values)
		if err != nil {
			return err
		}
		for _, w := range pw {
			if strings.Contains(w.Name, f.only) {
				ws = append(ws, w)
			}
		}
	}
	if f.compare {
		return compareTorch(ws, f)
	}
	var results []bench.Result
	for _, w := range ws {
		var r bench.Result
		var err error
		if f.inproc {
			r, err = runOne(w, f)
		} else {
			r, err = runChild(w, f)
		}
		if err != nil {
			return err
		}
		if f.jsonOut {
			fmt.Println(r.JSON())
		} else if r.Skipped != "" {
			fmt.Fprintf(os.Stderr, "%s: %s\n", r.Workload, r.Skipped)
		} else {
			fmt.Fprintf(os.Stderr, "%s: %.1f ms/step\n", r.Workload, r.MsMedian)
			if r.TokensPerS > 0 {
				fmt.Fprintf(os.Stderr, "%s: %.1f tokens/s, base %s, checkpoint loaded in %.1f s\n", r.Workload, r.TokensPerS, r.BaseDType, r.LoadSec)
			}
		}
		results = append(results, r)
	}
	if !f.jsonOut {
		printTable(os.Stdout, results)
	}
	return nil
}

// runOne runs a workload in this process; a skipped workload becomes a Result with Skipped set.
func runOne(w bench.Workload, f benchFlags) (bench.Result, error) {
	steps, warmup := f.stepsFor(w)
	r, err := bench.Run(w, steps, warmup, f.cpuProfile)
	var skip bench.ErrSkip
	if errors.As(err, &skip) {
		return bench.Result{Workload: w.Name, Method: w.Method, Impl: "go", Skipped: skip.Reason, Machine: bench.ThisMachine()}, nil
	}
	return r, err
}

// runChild runs one workload in a fresh process of this binary and parses its JSON line.
func runChild(w bench.Workload, f benchFlags) (bench.Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return bench.Result{}, err
	}
	return runJSON(exe, f.goArgs(w), nil)
}

// runJSON runs a command whose stdout's last non-empty line is a Result in JSON.
func runJSON(exe string, args []string, env []string) (bench.Result, error) {
	cmd := exec.Command(exe, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Run(); err != nil {
		return bench.Result{}, fmt.Errorf("%s %s: %w", exe, strings.Join(args, " "), err)
	}
	var last string
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); strings.HasPrefix(t, "{") {
			last = t
		}
	}
	if last == "" {
		return bench.Result{}, fmt.Errorf("%s %s: no JSON result in its output", exe, strings.Join(args, " "))
	}
	return bench.ParseResult(last)
}

func printTable(w io.Writer, rs []bench.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\timpl\tms/step (median)\tmin\tmax\tsteps\tGFLOP/step\tGFLOP/s\tpeak RSS MB\t")
	for _, r := range rs {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\tskipped: %s\t\t\t\t\t\t\t\n", r.Workload, r.Impl, r.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%.2f\t%.1f\t%.0f\t\n", r.Workload, r.Impl, r.MsMedian, r.MsMin, r.MsMax, r.Steps, r.GFLOPPerStep, r.GFLOPs, r.PeakRSSMB)
	}
	tw.Flush()
	ratios := methodRatios(rs)
	if len(ratios) > 0 {
		fmt.Fprintln(w)
		for _, l := range ratios {
			fmt.Fprintln(w, l)
		}
	}
	if len(rs) > 0 {
		m := rs[0].Machine
		fmt.Fprintf(w, "\nmachine: %s, %d cores, %s, backend %s, load average %s\n", m.CPU, m.Cores, m.Runtime, m.Backend, m.Load1)
	}
}

// methodRatios reports the SingLoRA/LoRA step-time ratio for every workload pair that differs
// only in the method.
func methodRatios(rs []bench.Result) []string {
	byName := map[string]bench.Result{}
	for _, r := range rs {
		if r.Skipped == "" {
			byName[r.Impl+" "+r.Workload] = r
		}
	}
	var out []string
	for _, r := range rs {
		base, ok := strings.CutSuffix(r.Workload, "/singlora")
		if !ok || r.Skipped != "" {
			continue
		}
		if l, ok := byName[r.Impl+" "+base+"/lora"]; ok && l.MsMedian > 0 {
			out = append(out, fmt.Sprintf("%s %s: SingLoRA/LoRA step time %.3f", r.Impl, base, r.MsMedian/l.MsMedian))
		}
	}
	return out
}

// compareTorch runs every workload f.reps times in Go and in PyTorch, alternating which goes
// first, and prints per workload the medians and the median of the per-repetition ratios.
func compareTorch(ws []bench.Workload, f benchFlags) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := os.Stat(f.torchScript); err != nil {
		return fmt.Errorf("PyTorch script: %w (run from the repository root or set --torch-script)", err)
	}
	type row struct {
		name          string
		goMs, torchMs []float64
		ratios        []float64
		goR, torchR   bench.Result
		skipped       string
	}
	var rows []row
	for _, w := range ws {
		rw := row{name: w.Name}
		demoSeq := 0 // the demo's padded length, from the first Go run (which always goes first)
		for rep := 0; rep < f.reps && rw.skipped == ""; rep++ {
			var g, t bench.Result
			runGo := func() error {
				var err error
				g, err = runJSON(exe, f.goArgs(w), nil)
				if n := demoSeqOf(g.Shape); n > 0 {
					demoSeq = n
				}
				return err
			}
			runTorch := func() error {
				steps, warmup := f.stepsFor(w)
				args := []string{f.torchScript, "--workload", w.Name, "--steps", strconv.Itoa(steps), "--warmup", strconv.Itoa(warmup), "--base-dtype", f.baseDType}
				if strings.HasPrefix(w.Name, "demo/") && demoSeq > 0 {
					args = append(args, "--demo-seq", strconv.Itoa(demoSeq))
				}
				var err error
				t, err = runJSON(f.python, args, nil)
				return err
			}
			order := []func() error{runGo, runTorch} // alternate which runs first
			if rep%2 == 1 {
				order = []func() error{runTorch, runGo}
			}
			for _, fn := range order {
				if err := fn(); err != nil {
					return err
				}
				if g.Skipped != "" {
					rw.skipped = g.Skipped
					break
				}
				if t.Skipped != "" {
					rw.skipped = "PyTorch: " + t.Skipped
					break
				}
			}
			if rw.skipped != "" {
				break
			}
			fmt.Fprintf(os.Stderr, "%s rep %d: go %.1f ms, torch %.1f ms, ratio %.2f\n", w.Name, rep+1, g.MsMedian, t.MsMedian, g.MsMedian/t.MsMedian)
			rw.goMs, rw.torchMs = append(rw.goMs, g.MsMedian), append(rw.torchMs, t.MsMedian)
			rw.ratios = append(rw.ratios, g.MsMedian/t.MsMedian)
			rw.goR, rw.torchR = g, t
			if f.jsonOut {
				fmt.Println(g.JSON())
				fmt.Println(t.JSON())
			}
		}
		rows = append(rows, rw)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tGo ms/step\tPyTorch ms/step\tGo/PyTorch (median of reps)\tratio range\tGo GFLOP/s\tPyTorch GFLOP/s\tGo RSS MB\tPyTorch RSS MB\t")
	for _, r := range rows {
		if r.skipped != "" {
			fmt.Fprintf(tw, "%s\tskipped: %s\t\t\t\t\t\t\t\t\n", r.name, r.skipped)
			continue
		}
		gm, tm := bench.Median(r.goMs), bench.Median(r.torchMs)
		lo, hi := r.ratios[0], r.ratios[0]
		for _, x := range r.ratios {
			lo, hi = min(lo, x), max(hi, x)
		}
		gf := r.goR.GFLOPPerStep
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.2f\t%.2f–%.2f\t%.1f\t%.1f\t%.0f\t%.0f\t\n", r.name, gm, tm, bench.Median(r.ratios), lo, hi,
			gf/(gm/1e3), gf/(tm/1e3), r.goR.PeakRSSMB, r.torchR.PeakRSSMB)
	}
	tw.Flush()
	for _, r := range rows {
		if r.skipped == "" {
			fmt.Printf("\nGo: %s, %d cores, %s, backend %s\nPyTorch: %s, %s (load average at the end %s)\n", r.goR.CPU, r.goR.Cores,
				r.goR.Runtime, r.goR.Backend, r.torchR.Runtime, r.torchR.Backend, bench.LoadAvg())
			break
		}
	}
	return nil
}

// demoSeqOf extracts L from a demo shape description "B=32 L=48 ...".
func demoSeqOf(shape string) int {
	for _, f := range strings.Fields(shape) {
		if v, ok := strings.CutPrefix(f, "L="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// runPair runs --pair A,B: both workloads in this process, timed step against step.
func runPair(f benchFlags) error {
	names := strings.Split(f.pair, ",")
	if len(names) != 2 {
		return fmt.Errorf("--pair wants two workloads separated by a comma, got %q", f.pair)
	}
	var ws [2]bench.Workload
	for i, n := range names {
		w, err := bench.Find(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		ws[i] = w
	}
	r, err := bench.Pair(ws[0], ws[1], f.steps, f.warmup)
	if err != nil {
		return err
	}
	m := bench.ThisMachine()
	fmt.Printf("%s / %s, %d pairs in one process (alternating order), after %d warm-up steps each\n", r.B, r.A, len(r.Ratios), f.warmup)
	fmt.Printf("median step: A %.1f ms, B %.1f ms; B/A per pair: median %.3f, range %.3f–%.3f\n", r.MsA, r.MsB, r.MedianRatio, r.Ratios[0], r.Ratios[len(r.Ratios)-1])
	fmt.Printf("pairs (sorted):")
	for _, x := range r.Ratios {
		fmt.Printf(" %.3f", x)
	}
	fmt.Printf("\n%s, %d cores, %s, backend %s, streams %d, load %s\n", m.CPU, m.Cores, m.Runtime, m.Backend, bench.Streams, bench.LoadAvg())
	return nil
}
