package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/demo"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/peft"
)

func init() {
	register(&command{
		Name:    "demo",
		Summary: "fetch USE-Lite + sentiment data, fine-tune frozen/LoRA/SingLoRA, print the comparison",
		Usage:   "singlora demo --run runs/demo",
		Run:     runDemo,
	})
}

func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	run := fs.String("run", filepath.Join("runs", "demo-"+time.Now().Format("20060102-150405")), "run folder (results.json and one sub-folder per method)")
	cache := fs.String("cache", fetch.CacheDir(), "cache folder for the fetched model and data")
	epochs := fs.Int("epochs", 3, "training epochs per method")
	batch := fs.Int("batch", 32, "batch size")
	rank := fs.Int("rank", 8, "adapter rank r (α = r)")
	headLR := fs.Float64("head-lr", 1e-2, "learning rate of the classification head")
	seed := fs.Uint64("seed", 1, "seed for the split, initialisation and data order")
	methods := fs.String("methods", "frozen,lora,singlora", "comma-separated methods to run, of "+peft.MethodList())
	quiet := fs.Bool("quiet", false, "log lines instead of a progress bar")
	maxTrain := fs.Int("max-train", 0, "use at most this many training sentences (0: all; for quick checks)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	be, err := backend.Get()
	if err != nil {
		return err
	}
	specs, err := demo.ParseMethods(*methods)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := demo.Run(ctx, demo.Options{RunDir: *run, CacheDir: *cache, Methods: specs, Epochs: *epochs, BatchSize: *batch,
		Rank: *rank, HeadLR: *headLR, Seed: *seed, Quiet: *quiet, Backend: be, MaxTrain: *maxTrain})
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(res.Table())
	fmt.Printf("\nresults: %s\n", filepath.Join(*run, "results.json"))
	fmt.Printf("run folders (config, metrics, checkpoints, adapter): %s\n", filepath.Join(*run, "<method>"))
	fmt.Printf("classify with one: singlora classify --run %s \"some text\"\n", filepath.Join(*run, specs[len(specs)-1].Name))
	return nil
}
