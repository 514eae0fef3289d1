package bench

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/fetch"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/peft"
)

// LlamaPreset is a full-size Llama benchmark read from a checkpoint on disk, as "singlora train"
// reads one: the decoder shape and the step's batch and sequence (LlamaShape), the rest of the
// model's config.json, and the preset's default numbers of untimed and timed steps (a step of
// these models takes tens of seconds to minutes on two cores).
type LlamaPreset struct {
	LlamaShape
	Tied                  bool
	MaxPositions          int
	RMSNormEps, RopeTheta float64
	BOS, EOS              int
	Warmup, Steps         int
}

// Llama1B is Llama-3.2-1B's shape: hidden 2048, 16 layers, 32 query / 8 key-value heads (head dim
// 64), SwiGLU FFN 8192, vocabulary 128256 with the LM head tied to the embeddings (1.24 B
// parameters, 2.47 GB in bf16), RoPE θ 500000 (without the model's "llama3" rope_scaling, which
// models/llama does not read; at 256 positions it changes nothing in the cost), RMSNorm ε 1e-5;
// a step is batch 1 × 256 tokens.
var Llama1B = LlamaPreset{
	LlamaShape: LlamaShape{Name: "llama-1b", Vocab: 128256, Hidden: 2048, Heads: 32, KVHeads: 8, FFN: 8192, Layers: 16,
		Seq: 256, Batch: 1, Rank: 8, Alpha: 8},
	Tied: true, MaxPositions: 131072, RMSNormEps: 1e-5, RopeTheta: 500000, BOS: 128000, EOS: 128001,
	Warmup: 1, Steps: 3,
}

// Llama7B is LLaMA-7B's shape: hidden 4096, 32 layers, 32 heads (no grouping, head dim 128),
// SwiGLU FFN 11008, vocabulary 32000 with an untied LM head (6.74 B parameters, 13.5 GB in bf16),
// RoPE θ 10000, RMSNorm ε 1e-6 (LLaMA's released config); a step is batch 1 × 128 tokens.
var Llama7B = LlamaPreset{
	LlamaShape: LlamaShape{Name: "llama-7b", Vocab: 32000, Hidden: 4096, Heads: 32, KVHeads: 32, FFN: 11008, Layers: 32,
		Seq: 128, Batch: 1, Rank: 8, Alpha: 8},
	MaxPositions: 2048, RMSNormEps: 1e-6, RopeTheta: 10000, BOS: 1, EOS: 2,
	Warmup: 1, Steps: 2,
}

// LlamaPresets are the checkpoint presets by name.
var LlamaPresets = map[string]LlamaPreset{Llama1B.Name: Llama1B, Llama7B.Name: Llama7B}

// Config is the preset's config.json.
func (p LlamaPreset) Config() LlamaConfig {
	return LlamaConfig{VocabSize: p.Vocab, Hidden: p.Hidden, Intermediate: p.FFN, Layers: p.Layers, Heads: p.Heads,
		KVHeads: p.KVHeads, MaxPositions: p.MaxPositions, RMSNormEps: p.RMSNormEps, RopeTheta: p.RopeTheta,
		Tied: p.Tied, BOS: p.BOS, EOS: p.EOS}
}

// CheckpointRoot is the folder LlamaCheckpointWorkload keeps its checkpoints in: "bench" in the
// cache (fetch.CacheDir; the bench command's --cache).
func CheckpointRoot() string { return filepath.Join(fetch.CacheDir(), "bench") }

// Progress receives the checkpoint presets' progress (writing, loading, each step's time); by
// default it prints a line to stderr.
var Progress = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// LlamaCheckpointWorkload is one training step of preset p with the method's adapters (rank and
// α from p) on every linear (q, k, v, o, gate, up, down), through "singlora train"'s causal-LM
// path (newCausalRun): the checkpoint — random weights in CheckpointDType(BaseDType), written
// once into CheckpointRoot by Prepare (LlamaCheckpoint) and reused — is loaded by Setup, so
// load_s and setup_s include reading it; the loss covers every position of batch × seq random
// tokens. Progress goes to stderr.
func LlamaCheckpointWorkload(p LlamaPreset, method string) (Workload, error) {
	m, err := parseMethod(method)
	if err != nil {
		return Workload{}, err
	}
	var dir string
	var store *model.Store
	var loadSec float64
	w := Workload{Name: p.Name + "/" + string(m), Method: string(m), GFLOP: p.gflop(m), Shape: p.shape(),
		Warmup: p.Warmup, Steps: p.Steps, Log: Progress}
	prefix := func(format string, args ...any) { Progress(w.Name+": "+format, args...) }
	w.Prepare = func() error {
		d, wrote, err := LlamaCheckpoint(CheckpointRoot(), p.Name, p.Config(), CheckpointDType(BaseDType), prefix)
		if err != nil {
			return err
		}
		if !wrote {
			prefix("reusing the checkpoint %s", d)
		}
		dir = d
		return nil
	}
	w.Setup = func() (func() error, error) {
		arch, err := models.Resolve(dir)
		if err != nil {
			return nil, err
		}
		store = model.NewStore()
		cfg := peft.DefaultConfig(m)
		cfg.Rank, cfg.Alpha = p.Rank, p.Alpha
		run, err := newCausalRun(arch, dir, store, cfg, p.Batch, p.Seq, prefix)
		if err != nil {
			return nil, err
		}
		loadSec = run.loadSec
		return run.step, nil
	}
	w.Annotate = func(r *Result) {
		annotate(r, store, p.Batch*p.Seq, loadSec)
		r.Shape += " base=" + r.BaseDType + " " + dir
		if RecomputeBlocks {
			r.Shape += " recompute-blocks"
		}
	}
	return w, nil
}

// gflop is the nominal matmul GFLOP of one step of s (see nominalGFLOP): the linears, the LM head
// (tied or not, the same product) and the attention scores and values.
func (s LlamaShape) gflop(m peft.Method) float64 {
	hd := s.Hidden / s.Heads
	n := float64(s.Batch * s.Seq)
	h, f, kv := float64(s.Hidden), float64(s.FFN), float64(s.KVHeads*hd)
	linear := 2 * n * (2*h*h + 2*h*kv + 3*h*f) * float64(s.Layers)
	head := 2 * n * h * float64(s.Vocab)
	attn := 4 * float64(s.Batch) * float64(s.Seq*s.Seq) * h * float64(s.Layers)
	trainable := 0.0
	if peft.TrainsBase(m) {
		trainable = linear + head
	}
	return nominalGFLOP(linear+head+attn, trainable)
}

// shape describes s for Result.Shape.
func (s LlamaShape) shape() string {
	return fmt.Sprintf("B=%d L=%d hidden=%d heads=%d/%d ffn=%d layers=%d vocab=%d r=%d", s.Batch, s.Seq, s.Hidden, s.Heads, s.KVHeads, s.FFN, s.Layers, s.Vocab, s.Rank)
}

// shape adds the LM head's tying to the decoder shape.
func (p LlamaPreset) shape() string {
	if p.Tied {
		return p.LlamaShape.shape() + " tied"
	}
	return p.LlamaShape.shape()
}
