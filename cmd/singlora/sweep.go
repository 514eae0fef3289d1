package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/sweep"
)

func init() {
	register(&command{
		Name:    "sweep",
		Summary: "run a method × learning-rate × seed grid of train runs (resumable), with a summary table and plot",
		Usage:   "singlora sweep --data train.jsonl --test test.jsonl --methods singlora,lora --lrs 1e-4,1e-3 --seeds 1,2,3 --out runs/sweep",
		Run:     runSweep,
	})
	register(&command{
		Name:    "experiment",
		Summary: "run one of EXPERIMENTS.md's experiments on the demo data: " + strings.Join(sweep.ExperimentNames(), ", "),
		Usage:   "singlora experiment lr-robustness --out runs/exp-lr --parallel 2",
		Run:     runExperiment,
	})
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || !(f > 0) {
			return nil, fmt.Errorf("bad number %q", p)
		}
		out = append(out, f)
	}
	return out, nil
}

func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad seed %q", p)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no seeds")
	}
	return out, nil
}

// sweepRunFlags are the flags shared by sweep and experiment.
type sweepRunFlags struct {
	out               *string
	parallel, threads *int
	epochs            *float64
	batch             *int
	steps             *int64
	seeds             *string
	summaryOnly       *bool
}

func addSweepFlags(fs *flag.FlagSet) *sweepRunFlags {
	return &sweepRunFlags{
		out:         fs.String("out", "", "sweep folder (required; rerun with the same folder to resume)"),
		parallel:    fs.Int("parallel", 1, "runs at once"),
		threads:     fs.Int("threads", 0, "threads per run (default: cores / parallel)"),
		epochs:      fs.Float64("epochs", 0, "epochs per run (default: the config's)"),
		batch:       fs.Int("batch", 0, "batch size (default: the config's)"),
		steps:       fs.Int64("steps", 0, "optimizer steps per run (overrides epochs)"),
		seeds:       fs.String("seeds", "1,2,3", "seeds"),
		summaryOnly: fs.Bool("summary-only", false, "only summarise the finished runs"),
	}
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

func runSweep(args []string) error {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	sf := addSweepFlags(fs)
	config := fs.String("config", "", "base train config (JSON/YAML)")
	dataPath := fs.String("data", "", "training data")
	val := fs.String("val", "", "validation data")
	test := fs.String("test", "", "test data")
	methods := fs.String("methods", "singlora,lora", "methods")
	lrs := fs.String("lrs", "1e-4,3e-4,1e-3,3e-3", "learning rates")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sf.out == "" {
		return fmt.Errorf("--out is required")
	}
	base := finetune.Default()
	if *config != "" {
		if err := base.LoadFile(*config); err != nil {
			return err
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
		return err
	}
	lrList, err := parseFloats(*lrs)
	if err != nil {
		return err
	}
	seeds, err := parseSeeds(*sf.seeds)
	if err != nil {
		return err
	}
	return sf.run(sweep.Grid(base, sweep.MethodVariants(strings.Split(*methods, ",")), lrList, seeds))
}

func runExperiment(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(os.Stderr, "usage: singlora experiment NAME [--out DIR] [--seeds 1,2,3] [--lrs …] [--epochs E] [--parallel N] [--threads T] [--summary-only]\n")
		for _, n := range sweep.ExperimentNames() {
			fmt.Fprintf(os.Stderr, "  %-14s %s\n", n, sweep.Experiments[n].Description)
		}
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return flag.ErrHelp
		}
		return fmt.Errorf("name an experiment: %s", strings.Join(sweep.ExperimentNames(), ", "))
	}
	exp, err := sweep.Lookup(args[0])
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("experiment", flag.ContinueOnError)
	sf := addSweepFlags(fs)
	cache := fs.String("cache", fetch.CacheDir(), "cache with the fetched demo data")
	lrs := fs.String("lrs", "", "learning rates, for experiments that sweep them (default: the experiment's)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *sf.out == "" {
		*sf.out = filepath.Join("runs", "exp-"+exp.Name)
	}
	base, err := sweep.DemoData(*cache, filepath.Join(*sf.out, "data"), 1)
	if err != nil {
		return err
	}
	base.Model = "use"
	sf.apply(&base)
	seeds, err := parseSeeds(*sf.seeds)
	if err != nil {
		return err
	}
	var lrList []float64
	if *lrs != "" {
		if lrList, err = parseFloats(*lrs); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "experiment %s: %s\n", exp.Name, exp.Description)
	return sf.run(exp.Cells(base, seeds, lrList))
}
