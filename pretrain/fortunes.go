package pretrain

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/finetune"
	"github.com/singlora/singlora/internal/atomicfile"
)

// FortunesBatch is the batch size of the fortunes sweep config.
const FortunesBatch = 16

// FortunesOptions selects the fortunes WriteFortunes writes.
type FortunesOptions struct {
	Categories []string // the classes; nil: corpora.FortuneCategories
	PerClass   int      // at most this many entries per class (0: the smallest category's count)
	Seed       uint64   // the seed of the split (corpora.SplitFortunes)
	// Unverified reads the category files without checking them against corpora.FortuneSHA256
	// (another version of the package, test files).
	Unverified bool
}

// WriteFortunes writes Debian's fortunes (the category files in fortuneDir) as classification
// data for the pretrained folder base: corpora.ReadFortunes' entries (one label per text) in
// corpora.SplitFortunes' balanced 70/10/20 split, one JSONL line {"text": entry, "label":
// category} per entry, in train.jsonl, val.jsonl and test.jsonl (named by absolute paths in
// FinetuneData and sweep.json). sweep.json is the sweep's base
// config: the base model (its classification head is created fresh, from the seed), task
// classify, the three files as training, validation and test sets, max_length the base's
// positions (longer entries are clipped to their first tokens), SingLoRA r = α = 8 on all linear
// layers, batch FortunesBatch, steps, one evaluation at the end (so the final weights are scored
// on the test set), 10% warm-up and linear decay. Every file is written atomically.
func WriteFortunes(fortuneDir, base, out string, steps int64, o FortunesOptions) (*FinetuneData, error) {
	if steps < 1 {
		return nil, fmt.Errorf("fine-tuning steps %d must be ≥ 1", steps)
	}
	sum, err := ReadSummary(base)
	if err != nil {
		return nil, fmt.Errorf("%s is not a folder singlora pretrain wrote: %w", base, err)
	}
	cats := o.Categories
	if cats == nil {
		cats = corpora.FortuneCategories
	}
	all, err := corpora.ReadFortunes(fortuneDir, cats, !o.Unverified)
	if err != nil {
		return nil, err
	}
	train, val, test, err := corpora.SplitFortunes(all, o.PerClass, o.Seed)
	if err != nil {
		return nil, err
	}
	if out, err = filepath.Abs(out); err != nil { // sweep.json names the files wherever a run starts
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	d := &FinetuneData{Train: filepath.Join(out, "train.jsonl"), Val: filepath.Join(out, "val.jsonl"),
		Test: filepath.Join(out, "test.jsonl"), Config: filepath.Join(out, "sweep.json"), Labels: cats}
	for i, part := range []struct {
		path string
		fs   []corpora.Fortune
	}{{d.Train, train}, {d.Val, val}, {d.Test, test}} {
		var b []byte
		for _, f := range part.fs {
			line, err := json.Marshal(struct {
				Text  string `json:"text"`
				Label string `json:"label"`
			}{f.Text, f.Category})
			if err != nil {
				return nil, err
			}
			b = append(append(b, line...), '\n')
		}
		d.Examples[i] = len(part.fs)
		if err := atomicfile.WriteFile(part.path, b, 0o644); err != nil {
			return nil, err
		}
	}
	err = writeSweepConfig(d.Config, base, func(c *finetune.Config) {
		c.Task, c.Train, c.Val, c.Test = "classify", d.Train, d.Val, d.Test
		c.Batch, c.Steps, c.EvalEvery, c.MaxLength, c.EarlyMetric = FortunesBatch, steps, steps, sum.Config.Seq, "accuracy"
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}
