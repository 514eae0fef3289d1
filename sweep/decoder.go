package sweep

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/gomlx/compute"
	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/pretrain"
)

// Env is what an experiment's data step may use.
type Env struct {
	Ctx     context.Context
	Cache   string // the fetch cache (models, data, pretrained bases)
	Dir     string // the experiment's folder: its data goes in Dir/data
	Backend func() (compute.Backend, error)
	Out     io.Writer // progress
	Quiet   bool      // log lines instead of progress bars
	// Pretrain is the decoder base's configuration; nil: pretrain.Small, the base of
	// EXPERIMENTS.md (tests give a smaller one).
	Pretrain *pretrain.Config
	// Fortunes is the folder of Debian's fortunes files (corpora.FortunesDir when empty).
	Fortunes string
}

// DecoderSteps is the number of optimizer steps of a decoder fine-tuning run (60 batches of 8
// pieces of about 180 tokens: 0.33 epochs of the 108 training chapters).
const DecoderSteps = 60

// decoderBase returns the small SOTU Llama (pretrain.Small, or env.Pretrain), pretraining it
// first when the cache does not hold it (7 to 25 minutes on 2 cores; resumable).
func decoderBase(env Env) (string, error) {
	be, err := env.Backend()
	if err != nil {
		return "", err
	}
	cfg := pretrain.Small()
	if env.Pretrain != nil {
		cfg = *env.Pretrain
	}
	if env.Ctx == nil {
		env.Ctx = context.Background()
	}
	res, err := pretrain.Run(env.Ctx, cfg, pretrain.Options{Cache: env.Cache, Resume: true, Backend: be, Out: env.Out, Quiet: env.Quiet})
	if err != nil {
		return "", fmt.Errorf("pretraining the decoder base: %w", err)
	}
	return res.Dir, nil
}

// MobyDickData is the decoder experiments' data step: the pretrained SOTU base
// (decoderBase) and Moby-Dick's chapters as causal-LM data for it (pretrain.WriteMobyDick:
// 108 training chapters, every tenth chapter as the test set, scored once with the final
// weights), r = α = 8 on every linear layer, batch 8, DecoderSteps steps.
func MobyDickData(env Env) (finetune.Config, error) {
	base, err := decoderBase(env)
	if err != nil {
		return finetune.Config{}, err
	}
	d, err := pretrain.WriteMobyDick(fetch.StdlibDatasets.Dir(env.Cache), base, filepath.Join(env.Dir, "data"), DecoderSteps)
	if err != nil {
		return finetune.Config{}, err
	}
	var c finetune.Config
	if err := c.LoadFile(d.Config); err != nil {
		return c, err
	}
	return c, nil
}

// FortunesSteps, FortunesPerClass and FortunesMaxLength size a fortunes classification run: 400
// entries of each of the 6 categories (1,680 training texts), 105 steps of 16 = one epoch, texts
// clipped to their first 128 tokens (17.5% of them are longer; at 256 a step costs about twice
// as much, as most batches hold one long text).
const (
	FortunesSteps     = 105
	FortunesPerClass  = 400
	FortunesMaxLength = 128
)

// FortunesData is the decoder classification experiment's data step: the pretrained SOTU base
// (decoderBase) with a fresh classification head, and Debian's fortunes (env.Fortunes, else
// corpora.FortunesDir; sha256-checked) as a 6-way task, category from text
// (pretrain.WriteFortunes: FortunesPerClass per class, a balanced 70/10/20 split), scored once
// at the end on the test set; max_length FortunesMaxLength.
func FortunesData(env Env) (finetune.Config, error) {
	base, err := decoderBase(env)
	if err != nil {
		return finetune.Config{}, err
	}
	dir := env.Fortunes
	if dir == "" {
		dir = corpora.FortunesDir
	}
	d, err := pretrain.WriteFortunes(dir, base, filepath.Join(env.Dir, "data"), FortunesSteps, pretrain.FortunesOptions{PerClass: FortunesPerClass})
	if err != nil {
		return finetune.Config{}, err
	}
	var c finetune.Config
	if err := c.LoadFile(d.Config); err != nil {
		return c, err
	}
	c.MaxLength = FortunesMaxLength
	return c, nil
}

// decoderExperiments are EXPERIMENTS.md's decoder experiments: the paper's claims on a Llama
// pretrained here on real text and fine-tuned on another text.
var decoderExperiments = []Experiment{
	{
		Name:        "decoder-lr",
		Description: "Moby-Dick on the SOTU Llama: SingLoRA, LoRA, LoRA+, DoRA over learning rates 1e-3 … 1e-1 (100×), test perplexity",
		Data:        MobyDickData,
		Cells: func(base finetune.Config, seeds []uint64, lrs []float64) []Cell {
			if lrs == nil {
				lrs = []float64{1e-3, 3e-3, 1e-2, 3e-2, 1e-1}
			}
			return Grid(base, MethodVariants([]string{"singlora", "lora", "loraplus", "dora"}), lrs, seeds)
		},
	},
	{
		Name:        "decoder-classify",
		Description: "Debian fortunes' category (6 classes) with the SOTU Llama's classification head: SingLoRA, LoRA, LoRA+, DoRA over learning rates 1e-3 … 3e-2 (30×), test accuracy",
		Data:        FortunesData,
		Cells: func(base finetune.Config, seeds []uint64, lrs []float64) []Cell {
			if lrs == nil {
				lrs = []float64{1e-3, 3e-3, 1e-2, 3e-2}
			}
			return Grid(base, MethodVariants([]string{"singlora", "lora", "loraplus", "dora"}), lrs, seeds)
		},
	},
	{
		Name:        "decoder-budget",
		Description: "Moby-Dick on the SOTU Llama: LoRA r=8 vs SingLoRA r=8, 12 (≈ LoRA r=8's parameters) and 16, at lr 1e-2 (--lr: others)",
		Data:        MobyDickData,
		Cells: func(base finetune.Config, seeds []uint64, lrs []float64) []Cell {
			if lrs == nil {
				lrs = []float64{1e-2}
			}
			rank := func(m string, r int) Variant {
				return Variant{Name: fmt.Sprintf("%s-r%d", m, r), Apply: func(c *finetune.Config) { c.Method, c.R, c.LoraAlpha = m, r, float64(r) }}
			}
			return Grid(base, []Variant{rank("lora", 8), rank("singlora", 8), rank("singlora", 12), rank("singlora", 16)}, lrs, seeds)
		},
	},
	{
		Name:        "decoder-init-ramp",
		Description: "Moby-Dick on the SOTU Llama: SingLoRA initialisation (theory vs kaiming-dr) and ramp T ∈ {0, 1%, 8%, 30%}, at lr 1e-2 (--lr: others)",
		Data:        MobyDickData,
		Cells: func(base finetune.Config, seeds []uint64, lrs []float64) []Cell {
			if lrs == nil {
				lrs = []float64{1e-2}
			}
			// init-theory is the default (ramp 1%), so it is also the ramp-1pct cell.
			vs := []Variant{
				{Name: "init-theory", Apply: func(c *finetune.Config) { c.Method, c.Init = "singlora", "theory" }},
				{Name: "init-kaiming-dr", Apply: func(c *finetune.Config) { c.Method, c.Init = "singlora", "kaiming-dr" }},
			}
			for _, t := range []string{"0", "8%", "30%"} {
				t := t
				vs = append(vs, Variant{Name: "ramp-" + strings.TrimSuffix(t, "%") + "pct", Apply: func(c *finetune.Config) { c.Method, c.Init, c.Ramp = "singlora", "theory", t }})
			}
			return Grid(base, vs, lrs, seeds)
		},
	},
}
