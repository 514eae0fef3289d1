package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/demo"
	"github.com/singlora/singlora/peft"
)

func init() {
	register(&command{
		Name:    "demo",
		Summary: "fetch USE-Lite + sentiment data, fine-tune frozen/LoRA/SingLoRA, print the comparison",
		Usage: `singlora demo --run runs/demo
singlora demo --run runs/demo-r16 --method lora,singlora,dora --rank 16 --alpha 32 --epochs 1.5
singlora demo --run runs/quick --method singlora --max-train 200 --max-eval 100 --epochs 0.5 --json`,
		Run: runDemo,
	})
}

// demoArgs are demo's settings from the command line.
type demoArgs struct {
	opts    demo.Options // without Backend
	jsonOut bool
}

func parseDemo(args []string) (*demoArgs, error) {
	fs := newFlags("demo")
	run := fs.String("run", "", "the run folder to write: results.json, the split in data/, one run folder per method (default runs/demo-<time>)")
	cache := cacheFlag(fs)
	epochs := fs.Float64("epochs", 3, "training epochs per method (fractions train part of one: ⌈epochs·⌈n/batch⌉⌉ steps)")
	batch := fs.Int("batch", 32, "batch size")
	rank := fs.Int("rank", 8, "adapter rank r")
	alpha := fs.Float64("alpha", 0, "adapter α (scale α/r; default: the rank, α = r)")
	headLR := fs.Float64("head-lr", 1e-2, "learning rate of the classification head")
	seed := fs.Uint64("seed", 1, "the `seed` of the split, initialisation and data order")
	single(fs, "seed", "seed", "to compare seeds, run singlora experiment NAME --seed 1,2,3 (or singlora sweep)")
	methods := newListFlag("frozen", "lora", "singlora")
	fs.Var(methods, "method", "the `methods` to run, in order, comma-separated or repeated, of "+peft.MethodList())
	alias(fs, "methods", "method")
	quiet := fs.Bool("quiet", false, "log lines instead of a progress bar")
	maxTrain := fs.Int("max-train", 0, "use at most this many training sentences (0: all; for quick checks)")
	maxEval := fs.Int("max-eval", 0, "use at most this many validation and this many test sentences (0: all; for quick checks)")
	jsonOut := fs.Bool("json", false, "print the results (the object results.json holds) as JSON on stdout instead of the table")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return nil, err
	}
	if err := useCache(fs, *cache); err != nil {
		return nil, err
	}
	if *run == "" {
		*run = filepath.Join("runs", "demo-"+time.Now().Format("20060102-150405"))
	}
	specs, err := demo.ParseMethods(methods.String())
	if err != nil {
		return nil, fmt.Errorf("--method: %w", err)
	}
	if *maxTrain < 0 || *maxEval < 0 {
		return nil, fmt.Errorf("--max-train %d and --max-eval %d must be ≥ 0 (0: all)", *maxTrain, *maxEval)
	}
	return &demoArgs{jsonOut: *jsonOut, opts: demo.Options{RunDir: *run, CacheDir: *cache, Methods: specs, Epochs: *epochs,
		BatchSize: *batch, Rank: *rank, Alpha: *alpha, HeadLR: *headLR, Seed: *seed, Quiet: *quiet,
		MaxTrain: *maxTrain, MaxEval: *maxEval}}, nil
}

func runDemo(args []string) error {
	a, err := parseDemo(args)
	if err != nil {
		return err
	}
	if a.opts.Backend, err = backend.Get(); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := demo.Run(ctx, a.opts)
	if err != nil {
		return err
	}
	if a.jsonOut {
		return printJSON(os.Stdout, res)
	}
	run, specs := a.opts.RunDir, a.opts.Methods
	fmt.Println()
	fmt.Print(res.Table())
	fmt.Printf("\nresults: %s\n", filepath.Join(run, "results.json"))
	fmt.Printf("run folders (config, metrics, checkpoints, adapter): %s\n", filepath.Join(run, "<method>"))
	fmt.Printf("classify with one: singlora classify --run %s \"some text\"\n", filepath.Join(run, specs[len(specs)-1].Name))
	return nil
}
