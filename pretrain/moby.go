package pretrain

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/singlora/singlora/adapterio/adapterconfig"
	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/tokenizer/bpe"
)

// MobyDickChunkBytes is the longest piece of a chapter one fine-tuning example holds (about 180
// tokens of the small preset's BPE); a piece whose tokens with <s> and </s> would not fit the
// base's positions is cut again.
const MobyDickChunkBytes = 700

// FinetuneData names the files WriteMobyDick or WriteFortunes wrote.
type FinetuneData struct {
	Train, Val, Test string   // JSONL files: {"prompt": "", "completion": piece} (Moby-Dick), {"text", "label"} (fortunes)
	Config           string   // sweep.json: the base config of the sweep (finetune.Config)
	Examples         [3]int   // train, val, test
	Labels           []string // the classes of classification data (nil: causal-LM data)
}

// WriteMobyDick writes Moby-Dick as causal-LM fine-tuning data for the pretrained folder base:
// each chapter of corpora.MobyDickSplit cut at paragraph or sentence ends into pieces of at most
// MobyDickChunkBytes bytes (corpora.Chunks) whose tokens, with <s> and </s>, fit the base's
// positions (max_length; pieces of whitespace alone are dropped), one JSONL line {"prompt": "", "completion": piece}
// per piece (the prompt is <s> alone, so the loss covers the whole piece and its </s>):
// train.jsonl (108 chapters), val.jsonl (chapters 5, 15, …, 135) and test.jsonl (chapters 10,
// 20, …, 130). sweep.json is the sweep's base config: the base model, task causal-lm, train.jsonl,
// test.jsonl as the test set (scored once, with the final weights: no validation set is
// given, so no checkpoint is chosen on held-out text), max_length the base's positions,
// SingLoRA/LoRA r = α = 8 on all linear layers, batch 8, steps, 10% warm-up and linear decay.
// The files are named by absolute paths; every file is written atomically.
func WriteMobyDick(pkgDir, base, out string, steps int64) (*FinetuneData, error) {
	if steps < 1 {
		return nil, fmt.Errorf("fine-tuning steps %d must be ≥ 1", steps)
	}
	sum, err := ReadSummary(base)
	if err != nil {
		return nil, fmt.Errorf("%s is not a folder singlora pretrain wrote: %w", base, err)
	}
	tj, err := os.ReadFile(filepath.Join(base, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	tok, err := bpe.FromJSON(tj)
	if err != nil {
		return nil, err
	}
	maxLen := sum.Config.Seq
	var fit func(piece string) []string
	fit = func(piece string) []string {
		if len(tok.Encode(piece))+2 <= maxLen || len(piece) < 2 {
			return []string{piece}
		}
		var out []string
		for _, p := range corpora.Chunks(piece, (len(piece)+1)/2) {
			out = append(out, fit(p)...)
		}
		return out
	}
	chapters, err := corpora.MobyDick(pkgDir)
	if err != nil {
		return nil, err
	}
	train, val, test := corpora.MobyDickSplit(chapters)
	if out, err = filepath.Abs(out); err != nil { // sweep.json names the files wherever a run starts
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	d := &FinetuneData{Train: filepath.Join(out, "train.jsonl"), Val: filepath.Join(out, "val.jsonl"),
		Test: filepath.Join(out, "test.jsonl"), Config: filepath.Join(out, "sweep.json")}
	for i, part := range []struct {
		path     string
		chapters []corpora.Chapter
	}{{d.Train, train}, {d.Val, val}, {d.Test, test}} {
		var b []byte
		for _, c := range part.chapters {
			var pieces []string
			for _, p := range corpora.Chunks(c.Text, MobyDickChunkBytes) {
				for _, q := range fit(p) {
					if strings.TrimSpace(q) != "" { // whitespace alone is no example
						pieces = append(pieces, q)
					}
				}
			}
			for _, piece := range pieces {
				line, err := json.Marshal(map[string]string{"prompt": "", "completion": piece})
				if err != nil {
					return nil, err
				}
				b = append(append(b, line...), '\n')
				d.Examples[i]++
			}
		}
		if err := atomicfile.WriteFile(part.path, b, 0o644); err != nil {
			return nil, err
		}
	}
	err = writeSweepConfig(d.Config, base, func(c *finetune.Config) {
		c.Task, c.Train, c.Test = "causal-lm", d.Train, d.Test
		c.Batch, c.Steps, c.EvalEvery, c.MaxLength, c.EarlyMetric = 8, steps, steps, maxLen, "loss"
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// writeSweepConfig writes path, the base config of a fine-tuning sweep of the pretrained folder
// base: finetune.Default with the model base (absolute), no validation split taken from the
// training data, SingLoRA r = α = 8 on all linear layers, then set as the data writer needs
// (task, files, batch, steps, evaluation).
func writeSweepConfig(path, base string, set func(*finetune.Config)) error {
	abs, err := filepath.Abs(base)
	if err != nil {
		return err
	}
	c := finetune.Default()
	c.Model, c.ValFraction = abs, 0
	c.Method, c.Settings = "singlora", adapterconfig.Settings{R: 8, LoraAlpha: 8, TargetModules: []string{peft.AllLinear}}
	set(&c)
	cb, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(cb, '\n'), 0o644)
}
