package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/peft"
)

func init() {
	register(&command{
		Name:    "train",
		Summary: "fine-tune on a data file (JSONL/CSV) with " + peft.MethodList(),
		Usage: `singlora train --data train.jsonl --method singlora --lr 1e-3 --run runs/s1
singlora train --config run.yaml --lr 5e-4
singlora train --model ./tiny-llama --data pairs.jsonl --run runs/lm --json
singlora train --resume runs/s1`,
		Run: runTrain,
	})
}

// modelUsage is --model's help: the model types the models registry knows, per task.
func modelUsage() string {
	return fmt.Sprintf("model: a built-in model's name (use: Universal Sentence Encoder Lite, fetched by singlora fetch) or a Hugging Face\n"+
		"folder whose config.json model_type is one the registry knows — classify: %s; causal-lm: %s",
		strings.Join(models.ModelTypes(models.Classify), ", "), strings.Join(models.ModelTypes(models.CausalLM), ", "))
}

func runTrain(args []string) error {
	fs := newFlags("train")
	d := finetune.Default()
	var (
		configPath = fs.String("config", "", "config file (JSON, or YAML by .yaml/.yml); flags given explicitly win")
		resume     = fs.String("resume", "", "resume the run in this folder with its own config.json (only --quiet, --show-params, --dry-run, --cache and --json may be added)")
		run        = fs.String("run", "", "the run folder to write (default runs/<method>-<time>)")
		quiet      = fs.Bool("quiet", false, "log lines instead of a progress bar")
		showParams = fs.Bool("show-params", false, "print the adapted layers with their parameter counts, and trainable vs total, before training")
		dryRun     = fs.Bool("dry-run", false, "load everything, print the parameter report, and stop before training")
		jsonOut    = fs.Bool("json", false, "print the final summary (and --dry-run's parameter report) as one JSON object on stdout; the parameter\n"+
			"report of --show-params goes to stderr")
		cache   = cacheFlag(fs)
		targets = newListFlag()
		exclude = newListFlag()
		layers  = newListFlag()
		lpat    = newListFlag()
		rankPat = fs.String("rank-pattern", "", "per-module ranks overriding --rank, `KEY=R,...` (PEFT's rank_pattern: a key matches the end of a module path\n"+
			"on a dot boundary as a regular expression, e.g. q_proj=16 or layers\\.0\\..*=4; the first matching key wins)")
		alphaPat = fs.String("alpha-pattern", "", "per-module α overriding --alpha, `KEY=ALPHA,...` (PEFT's alpha_pattern; keys as --rank-pattern)")
	)
	var c finetune.Config
	fs.StringVar(&c.Name, "name", "", "run name (for plots and tables)")
	fs.StringVar(&c.Model, "model", d.Model, modelUsage())
	fs.StringVar(&c.Task, "task", d.Task, "task: classify (text/label) or causal-lm (prompt/completion); default: what the model is for (causal-lm for *ForCausalLM and GPT-2 folders, classify otherwise)")
	fs.StringVar(&c.PromptColumn, "prompt-column", "", "prompt column (default prompt)")
	fs.StringVar(&c.CompletionColumn, "completion-column", "", "completion column (default completion)")
	fs.IntVar(&c.MaxLength, "max-length", 0, "causal LM: tokens per example at most (default 256)")
	fs.StringVar(&c.BaseDType, "base-dtype", "auto", "how the frozen base matrices are held: auto (the checkpoint's bf16/f16, else f32), bf16, f16 or f32; adapters and optimizer state are f32")
	fs.StringVar(&c.Train, "data", "", "training data: .jsonl, .csv, .tsv or a JSON array")
	fs.StringVar(&c.Val, "val", "", "validation data (default: --val-fraction of --data, stratified)")
	fs.StringVar(&c.Test, "test", "", "test data (optional)")
	fs.Float64Var(&c.ValFraction, "val-fraction", d.ValFraction, "fraction of --data held out for validation when --val is not given")
	fs.StringVar(&c.TextColumn, "text-column", "", "text column (default text)")
	fs.StringVar(&c.LabelColumn, "label-column", "", "label column (default label)")
	fs.StringVar(&c.Method, "method", d.Method, "the adapter `method`: "+peft.MethodList())
	single(fs, "method", "method", "to compare methods, run singlora sweep --method A,B (a train run per method × lr × seed)")
	fs.IntVar(&c.R, "rank", d.R, "adapter rank r")
	fs.Float64Var(&c.LoraAlpha, "alpha", d.LoraAlpha, "adapter α (scale α/r)")
	fs.BoolVar(&c.UseRSLoRA, "rslora", false, "scale by α/√r")
	fs.StringVar(&c.Bias, "bias", "", "which biases train and are saved with the adapter: none (default), lora_only (the adapted layers') or all (PEFT's bias)")
	fs.BoolVar(&c.RecomputeBlocks, "recompute-blocks", false, "Llama/GPT-2: recompute each block in the backward (gradient checkpointing): less activation memory, about one more forward per step")
	fs.Var(targets, "targets", "the target `modules`: \"all-linear\", names, dotted suffixes or re:REGEX (comma-separated or repeated)")
	fs.Var(exclude, "exclude-modules", "`modules` not to adapt although --targets match them (names, dotted suffixes or re:REGEX; PEFT's exclude_modules)")
	fs.Var(layers, "layers-to-transform", "adapt only the targets in these `layers` (numbers, comma-separated; PEFT's layers_to_transform)")
	fs.Var(lpat, "layers-pattern", "the `name` of the layer list whose number --layers-to-transform reads (\"layers\", \"h\"; default: the first name.number in a path)")
	fs.StringVar(&c.Init, "init", "", "init: SingLoRA theory (default) or kaiming-dr (public implementations' scale); LoRA/DoRA kaiming (default) or gaussian (PEFT's init_lora_weights)")
	fs.Float64Var(&c.LoraDropout, "dropout", 0, "adapter input dropout")
	fs.Float64Var(&c.LoraPlusRatio, "loraplus-ratio", 0, "LoRA+ λ (default 16)")
	fs.StringVar(&c.Ramp, "ramp", d.Ramp, "SingLoRA ramp T: steps (200) or a fraction of the total (1%)")
	fs.Float64Var(&c.LR, "lr", d.LR, "learning rate")
	fs.Float64Var(&c.HeadLR, "head-lr", d.HeadLR, "learning rate of the classification head")
	fs.Float64Var(&c.WeightDecay, "weight-decay", d.WeightDecay, "AdamW weight decay")
	fs.StringVar(&c.Warmup, "warmup", d.Warmup, "warm-up: steps or a fraction (10%)")
	fs.StringVar(&c.Schedule, "schedule", d.Schedule, "learning-rate decay: linear, cosine or constant")
	fs.Float64Var(&c.ClipNorm, "clip", d.ClipNorm, "clip the global gradient norm (0: off)")
	fs.IntVar(&c.Batch, "batch", d.Batch, "batch size")
	fs.IntVar(&c.Accum, "accum", d.Accum, "gradient accumulation steps")
	fs.IntVar(&c.Streams, "streams", 0, fmt.Sprintf("split each batch into this many independent chains (same math, better use of the cores; default %d)", finetune.DefaultStreams))
	fs.Float64Var(&c.Epochs, "epochs", d.Epochs, "epochs")
	fs.Int64Var(&c.Steps, "steps", 0, "optimizer steps (overrides --epochs)")
	fs.Uint64Var(&c.Seed, "seed", d.Seed, "the `seed` of the split, init, data order and dropout")
	single(fs, "seed", "seed", "to train several seeds, run singlora sweep --seed 1,2,3")
	fs.Int64Var(&c.EvalEvery, "eval-every", 0, "evaluate every N steps (default: every epoch)")
	fs.Int64Var(&c.CheckpointEvery, "checkpoint-every", 0, "checkpoint every N steps (default: at evaluations and the end)")
	fs.StringVar(&c.EarlyMetric, "early-metric", d.EarlyMetric, "metric that selects the best checkpoint (accuracy or loss)")
	fs.IntVar(&c.Patience, "patience", 0, "stop after N evaluations without improvement (0: never)")
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
	c.TargetModules = targets.values
	c.ExcludeModules, c.LayersPattern = exclude.values, lpat.values
	if c.RankPattern, err = peft.ParsePattern[int](*rankPat); err != nil {
		return fmt.Errorf("--rank-pattern: %w", err)
	}
	if c.AlphaPattern, err = peft.ParsePattern[float64](*alphaPat); err != nil {
		return fmt.Errorf("--alpha-pattern: %w", err)
	}
	for _, v := range layers.values {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fmt.Errorf("--layers-to-transform %q: want layer numbers ≥ 0", v)
		}
		c.LayersToTransform = append(c.LayersToTransform, n)
	}
	var cfg finetune.Config
	var dir string
	if *resume != "" {
		var ignored []string
		fs.Visit(func(f *flag.Flag) {
			if !resumeFlags[f.Name] {
				ignored = append(ignored, "--"+f.Name)
			}
		})
		if len(ignored) > 0 {
			return fmt.Errorf("--resume continues the run with its own config.json; %s cannot change it (start a new run with --config %s and the new flags instead)",
				strings.Join(ignored, ", "), filepath.Join(*resume, finetune.ConfigFile))
		}
		var err error
		if cfg, err = finetune.LoadRunConfig(*resume); err != nil {
			return err
		}
		dir = *resume
	} else {
		cfg = finetune.Default()
		if *configPath != "" {
			if err := cfg.LoadFile(*configPath); err != nil {
				return err
			}
		}
		// Flags given explicitly override the config file.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		apply(&cfg, c, set)
		if err := cfg.AbsPaths(); err != nil {
			return err
		}
		dir = *run
		if dir == "" {
			var err error
			if dir, err = newRunName(filepath.Join("runs", cfg.Method+"-"+time.Now().Format("20060102-150405"))); err != nil {
				return err
			}
		}
	}
	be, err := backend.Get()
	if err != nil {
		return err
	}
	job, err := finetune.New(cfg, dir, be, nil)
	if err != nil {
		return err
	}
	job.SetQuiet(*quiet)
	var report io.Writer = os.Stdout
	if *jsonOut {
		report = os.Stderr // stdout holds the JSON alone
	}
	if *dryRun && *jsonOut {
		return printJSON(os.Stdout, paramsJSON(dir, job.Params()))
	}
	if *showParams || *dryRun {
		fmt.Fprint(report, job.Params().String())
	}
	if *dryRun {
		return nil
	}
	ctx, stop := signalContext()
	defer stop()
	s, err := job.Run(ctx, *resume != "")
	if err != nil {
		return err
	}
	if *jsonOut {
		return printJSON(os.Stdout, trainJSON{Run: dir, Summary: s})
	}
	if val := fmtMetrics(s.Val); val != "" {
		fmt.Printf("run %s: %d steps (best at %d), validation %s", dir, s.Steps, s.BestStep, val)
	} else {
		fmt.Printf("run %s: %d steps, no validation set (the final weights are kept)", dir, s.Steps)
	}
	if s.Test != nil {
		fmt.Printf(", test %v", fmtMetrics(s.Test))
	}
	fmt.Printf(", %.1fs\n", s.TrainSeconds)
	return nil
}

// resumeFlags are the flags --resume may be combined with (they do not change the run).
var resumeFlags = map[string]bool{"resume": true, "quiet": true, "show-params": true, "dry-run": true, "cache": true, "json": true}

// trainJSON is train --json's line: the run folder and the run's summary (finetune.Summary's
// fields, as in the run's summary.json).
type trainJSON struct {
	Run string `json:"run"`
	*finetune.Summary
}

// layerJSON is one adapted layer of a parameter report in JSON.
type layerJSON struct {
	Path      string `json:"path"`
	In        int    `json:"in"`
	Out       int    `json:"out"`
	Base      int    `json:"base_params"`
	Trainable int    `json:"trainable_params"`
}

// paramsJSON is train --dry-run --json's object: the run folder and the parameter report.
func paramsJSON(dir string, r peft.Report) any {
	layers := make([]layerJSON, len(r.Layers))
	for i, l := range r.Layers {
		layers[i] = layerJSON{l.Path, l.In, l.Out, l.Base, l.Trainable}
	}
	return struct {
		Run       string      `json:"run"`
		DryRun    bool        `json:"dry_run"`
		Trainable int         `json:"trainable_params"`
		Total     int         `json:"total_params"`
		Layers    []layerJSON `json:"layers"`
	}{dir, true, r.Trainable, r.Total, layers}
}

// printJSON writes v as one line of JSON to w.
func printJSON(w io.Writer, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", js)
	return err
}

// newRunName returns base, or base-2, base-3… : the first that does not exist yet, created
// (os.Mkdir is atomic), so two runs started in the same second get different folders.
func newRunName(base string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return "", err
	}
	for i := 1; ; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		err := os.Mkdir(name, 0o755)
		if err == nil {
			return name, nil
		}
		if !os.IsExist(err) || i > 1000 {
			return "", fmt.Errorf("run folder %s: %w", name, err)
		}
	}
}

func fmtMetrics(m map[string]float64) string {
	var parts []string
	for _, k := range []string{"accuracy", "loss", "perplexity"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.4f", k, v))
		}
	}
	return strings.Join(parts, " ")
}

// apply copies the explicitly set flags from f into cfg.
func apply(cfg *finetune.Config, f finetune.Config, set map[string]bool) {
	s := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	fl := func(name string, dst *float64, v float64) {
		if set[name] {
			*dst = v
		}
	}
	i := func(name string, dst *int, v int) {
		if set[name] {
			*dst = v
		}
	}
	i64 := func(name string, dst *int64, v int64) {
		if set[name] {
			*dst = v
		}
	}
	s("name", &cfg.Name, f.Name)
	s("model", &cfg.Model, f.Model)
	s("task", &cfg.Task, f.Task)
	s("data", &cfg.Train, f.Train)
	s("val", &cfg.Val, f.Val)
	s("test", &cfg.Test, f.Test)
	fl("val-fraction", &cfg.ValFraction, f.ValFraction)
	s("text-column", &cfg.TextColumn, f.TextColumn)
	s("label-column", &cfg.LabelColumn, f.LabelColumn)
	s("prompt-column", &cfg.PromptColumn, f.PromptColumn)
	s("completion-column", &cfg.CompletionColumn, f.CompletionColumn)
	i("max-length", &cfg.MaxLength, f.MaxLength)
	s("base-dtype", &cfg.BaseDType, f.BaseDType)
	s("method", &cfg.Method, f.Method)
	i("rank", &cfg.R, f.R)
	fl("alpha", &cfg.LoraAlpha, f.LoraAlpha)
	if set["recompute-blocks"] {
		cfg.RecomputeBlocks = f.RecomputeBlocks
	}
	if set["rslora"] {
		cfg.UseRSLoRA = f.UseRSLoRA
	}
	if set["exclude-modules"] {
		cfg.ExcludeModules = f.ExcludeModules
	}
	if set["layers-to-transform"] {
		cfg.LayersToTransform = f.LayersToTransform
	}
	if set["layers-pattern"] {
		cfg.LayersPattern = f.LayersPattern
	}
	if set["rank-pattern"] {
		cfg.RankPattern = f.RankPattern
	}
	if set["alpha-pattern"] {
		cfg.AlphaPattern = f.AlphaPattern
	}
	s("bias", &cfg.Bias, f.Bias)
	if set["targets"] {
		cfg.TargetModules = f.TargetModules
	}
	s("init", &cfg.Init, f.Init)
	fl("dropout", &cfg.LoraDropout, f.LoraDropout)
	fl("loraplus-ratio", &cfg.LoraPlusRatio, f.LoraPlusRatio)
	s("ramp", &cfg.Ramp, f.Ramp)
	fl("lr", &cfg.LR, f.LR)
	fl("head-lr", &cfg.HeadLR, f.HeadLR)
	fl("weight-decay", &cfg.WeightDecay, f.WeightDecay)
	s("warmup", &cfg.Warmup, f.Warmup)
	s("schedule", &cfg.Schedule, f.Schedule)
	fl("clip", &cfg.ClipNorm, f.ClipNorm)
	i("batch", &cfg.Batch, f.Batch)
	i("accum", &cfg.Accum, f.Accum)
	i("streams", &cfg.Streams, f.Streams)
	fl("epochs", &cfg.Epochs, f.Epochs)
	i64("steps", &cfg.Steps, f.Steps)
	if set["seed"] {
		cfg.Seed = f.Seed
	}
	i64("eval-every", &cfg.EvalEvery, f.EvalEvery)
	i64("checkpoint-every", &cfg.CheckpointEvery, f.CheckpointEvery)
	s("early-metric", &cfg.EarlyMetric, f.EarlyMetric)
	i("patience", &cfg.Patience, f.Patience)
}
