package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/sweep"
)

func init() {
	register(&command{
		Name:    "sweep",
		Summary: "run a method × learning-rate × seed grid of train runs (resumable), with a summary table and plot",
		Usage: `singlora sweep --data train.jsonl --test test.jsonl --method singlora,lora --lr 1e-4,1e-3 --seed 1,2,3 --out runs/sweep
singlora sweep --config base.yaml --method dora --method loraplus --lr 5e-4 --out runs/sweep --parallel 2`,
		Run: runSweep,
	})
	var details strings.Builder
	details.WriteString("Experiments (EXPERIMENTS.md):\n")
	for _, n := range sweep.ExperimentNames() {
		fmt.Fprintf(&details, "  %-18s %s\n", n, sweep.Experiments[n].Description)
	}
	register(&command{
		Name:    "experiment",
		Summary: "run one of EXPERIMENTS.md's experiments (its data, then its sweep): " + strings.Join(sweep.ExperimentNames(), ", "),
		Details: details.String(),
		Usage: `singlora experiment lr-robustness --out runs/exp-lr --parallel 2
singlora experiment equal-budget --seed 1,2,3,4,5 --epochs 2
singlora experiment decoder-lr --out runs/exp-decoder-lr`,
		Run: runExperiment,
	})
}

// parseLRs parses --lr's values: finite numbers > 0.
func parseLRs(vals []string) ([]float64, error) {
	var out []float64
	for _, v := range vals {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsInf(f, 0) || !(f > 0) {
			return nil, fmt.Errorf("--lr %q: want a learning rate, a finite number > 0 (like 1e-3)", v)
		}
		out = append(out, f)
	}
	return out, nil
}

// parseSeeds parses --seed's values: whole numbers ≥ 0, at least one.
func parseSeeds(vals []string) ([]uint64, error) {
	var out []uint64
	for _, v := range vals {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--seed %q: want a whole number ≥ 0", v)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--seed: no seeds given (want one or more, like 1,2,3)")
	}
	return out, nil
}

// parseMethods checks --method's values against the registered methods and returns them.
func parseMethods(vals []string) ([]string, error) {
	for _, v := range vals {
		if _, err := peft.ParseMethod(v); err != nil {
			return nil, fmt.Errorf("--method: %w", err)
		}
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("--method: no methods given (want one or more of %s)", peft.MethodList())
	}
	return vals, nil
}

// sweepRunFlags are the flags shared by sweep and experiment.
type sweepRunFlags struct {
	out               *string
	parallel, threads *int
	epochs            *float64
	batch             *int
	steps             *int64
	seeds, lrs        *listFlag
	cache             *string
	summaryOnly       *bool
}

const sweepOutUsage = "the sweep folder: a run folder per cell, the summary and plots; rerun with the same folder to resume\n" +
	"(sweep: required; experiment: default runs/exp-NAME)"

// addSweepFlags defines the flags sweep and experiment share; lrs are --lr's defaults.
func addSweepFlags(fs *flag.FlagSet, lrUsage string, lrs ...string) *sweepRunFlags {
	f := &sweepRunFlags{
		out:         fs.String("out", "", sweepOutUsage),
		parallel:    fs.Int("parallel", 1, "runs at once"),
		threads:     fs.Int("threads", 0, "threads per run (default: cores / parallel)"),
		epochs:      fs.Float64("epochs", 0, "epochs per run (default: the config's)"),
		batch:       fs.Int("batch", 0, "batch size (default: the config's)"),
		steps:       fs.Int64("steps", 0, "optimizer steps per run (overrides epochs)"),
		seeds:       newListFlag("1", "2", "3"),
		lrs:         newListFlag(lrs...),
		cache:       cacheFlag(fs),
		summaryOnly: fs.Bool("summary-only", false, "only summarise the finished runs"),
	}
	fs.Var(f.seeds, "seed", "the `seeds`, comma-separated or repeated")
	alias(fs, "seeds", "seed")
	fs.Var(f.lrs, "lr", lrUsage)
	alias(fs, "lrs", "lr")
	return f
}

func (f *sweepRunFlags) apply(c *finetune.Config) {
	if *f.epochs > 0 {
		c.Epochs = *f.epochs
	}
	if *f.batch > 0 {
		c.Batch = *f.batch
	}
	if *f.steps > 0 {
		c.Steps = *f.steps
	}
}

func (f *sweepRunFlags) run(cells []sweep.Cell) error {
	if !*f.summaryOnly {
		ctx, stop := signalContext()
		defer stop()
		if err := sweep.Run(ctx, cells, sweep.Options{Dir: *f.out, Parallel: *f.parallel, Threads: *f.threads}); err != nil {
			fmt.Fprintln(os.Stderr, "warning:", err)
		}
	}
	res, err := sweep.Collect(*f.out, cells)
	if err != nil {
		return err
	}
	if len(res) == 0 {
		return fmt.Errorf("no finished runs in %s", *f.out)
	}
	s := sweep.Summarize(res)
	if err := s.Write(*f.out); err != nil {
		return err
	}
	fmt.Print(s.Markdown())
	fmt.Printf("\n%d of %d runs finished; summary in %s\n", len(res), len(cells), filepath.Join(*f.out, "sweep.md"))
	if len(res) < len(cells) {
		return fmt.Errorf("%d runs did not finish: run the same command again to resume them", len(cells)-len(res))
	}
	return nil
}

// parseSweep reads sweep's command line into the grid's cells (nothing is run or written).
func parseSweep(args []string) ([]sweep.Cell, *sweepRunFlags, error) {
	fs := newFlags("sweep")
	sf := addSweepFlags(fs, "the learning `rates`, comma-separated or repeated", "1e-4", "3e-4", "1e-3", "3e-3")
	config := fs.String("config", "", "base train config (JSON/YAML)")
	dataPath := fs.String("data", "", "training data")
	val := fs.String("val", "", "validation data")
	test := fs.String("test", "", "test data")
	methods := newListFlag("singlora", "lora")
	fs.Var(methods, "method", "the `methods`, comma-separated or repeated, of "+peft.MethodList())
	alias(fs, "methods", "method")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return nil, nil, err
	}
	if *sf.out == "" {
		return nil, nil, fmt.Errorf("--out is required: the sweep folder (rerun with the same folder to resume)")
	}
	if err := useCache(fs, *sf.cache); err != nil {
		return nil, nil, err
	}
	ms, err := parseMethods(methods.values)
	if err != nil {
		return nil, nil, err
	}
	lrList, err := parseLRs(sf.lrs.values)
	if err != nil {
		return nil, nil, err
	}
	seeds, err := parseSeeds(sf.seeds.values)
	if err != nil {
		return nil, nil, err
	}
	base := finetune.Default()
	if *config != "" {
		if err := base.LoadFile(*config); err != nil {
			return nil, nil, err
		}
	}
	if *dataPath != "" {
		base.Train = *dataPath
	}
	if *val != "" {
		base.Val = *val
	}
	if *test != "" {
		base.Test = *test
	}
	sf.apply(&base)
	if err := base.Validate(); err != nil {
		return nil, nil, err
	}
	return sweep.Grid(base, sweep.MethodVariants(ms), lrList, seeds), sf, nil
}

func runSweep(args []string) error {
	cells, sf, err := parseSweep(args)
	if err != nil {
		return err
	}
	return sf.run(cells)
}

// experimentArgs are experiment's settings from the command line.
type experimentArgs struct {
	exp   sweep.Experiment
	sf    *sweepRunFlags
	seeds []uint64
	lrs   []float64 // nil: the experiment's own
}

func parseExperiment(args []string) (*experimentArgs, error) {
	fs := newFlags("experiment")
	sf := addSweepFlags(fs, "learning `rates`, comma-separated or repeated (default: the experiment's; the encoder's equal-budget and init-ramp ignore it)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if err := wantArgs(pos, 1, 1, "one experiment name ("+strings.Join(sweep.ExperimentNames(), ", ")+")"); err != nil {
		return nil, err
	}
	exp, err := sweep.Lookup(pos[0])
	if err != nil {
		return nil, err
	}
	if err := useCache(fs, *sf.cache); err != nil {
		return nil, err
	}
	a := &experimentArgs{exp: exp, sf: sf}
	if a.seeds, err = parseSeeds(sf.seeds.values); err != nil {
		return nil, err
	}
	if len(sf.lrs.values) > 0 {
		if a.lrs, err = parseLRs(sf.lrs.values); err != nil {
			return nil, err
		}
	}
	if *sf.out == "" {
		*sf.out = filepath.Join("runs", "exp-"+exp.Name)
	}
	return a, nil
}

func runExperiment(args []string) error {
	a, err := parseExperiment(args)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "experiment %s: %s\n", a.exp.Name, a.exp.Description)
	ctx, stop := signalContext()
	base, err := a.exp.Prepare(sweep.Env{Ctx: ctx, Cache: *a.sf.cache, Dir: *a.sf.out, Backend: backend.Get, Out: os.Stderr})
	stop()
	if err != nil {
		return err
	}
	a.sf.apply(&base)
	return a.sf.run(a.exp.Cells(base, a.seeds, a.lrs))
}
