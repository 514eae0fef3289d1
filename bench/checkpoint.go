package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/safetensors"
)

// LlamaConfig is the config.json of a random Llama checkpoint written by LlamaCheckpoint: the
// fields models/llama reads. The file also says model_type llama, LlamaForCausalLM, hidden_act
// silu and torch_dtype; there are no biases and no rope_scaling.
type LlamaConfig struct {
	VocabSize    int     `json:"vocab_size"`
	Hidden       int     `json:"hidden_size"`
	Intermediate int     `json:"intermediate_size"`
	Layers       int     `json:"num_hidden_layers"`
	Heads        int     `json:"num_attention_heads"`
	KVHeads      int     `json:"num_key_value_heads"`
	MaxPositions int     `json:"max_position_embeddings"`
	RMSNormEps   float64 `json:"rms_norm_eps"`
	RopeTheta    float64 `json:"rope_theta"`
	Tied         bool    `json:"tie_word_embeddings"`
	BOS          int     `json:"bos_token_id"`
	EOS          int     `json:"eos_token_id"`
}

// checkpointRecipe names how LlamaCheckpoint draws the values; it is part of the cache key, so a
// change to the recipe must change it.
const checkpointRecipe = "singlora-bench-llama/v1: approxNormal·0.02 matrices from PCG(1, fnv64a(name)), norms 1"

// ShardBytes bounds the tensor bytes of one shard LlamaCheckpoint writes (a tensor larger than
// that gets a shard of its own); 2 GB, as Hugging Face's max_shard_size "2GB".
var ShardBytes int64 = 2_000_000_000

// ckTensor is one tensor of a random checkpoint: entries ~ N(0, std²) (approxNormal), or all 1 when std is 0
// (a norm's weight).
type ckTensor struct {
	name  string
	shape []int
	std   float64
}

func (t ckTensor) numel() int64 {
	n := int64(1)
	for _, d := range t.shape {
		n *= int64(d)
	}
	return n
}

// tensors lists the checkpoint's tensors in the order they are written: embed_tokens
// [vocab, hidden]; per layer q [heads·hd, hidden], k and v [kvHeads·hd, hidden], o [hidden,
// heads·hd], gate and up [ffn, hidden], down [hidden, ffn] and the two norms [hidden]; the final
// norm; lm_head [vocab, hidden] unless tied.
func (c LlamaConfig) tensors() []ckTensor {
	const std = 0.02
	hd := c.Hidden / c.Heads
	q, kv := c.Heads*hd, c.KVHeads*hd
	ts := []ckTensor{{"model.embed_tokens.weight", []int{c.VocabSize, c.Hidden}, std}}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts,
			ckTensor{p + "self_attn.q_proj.weight", []int{q, c.Hidden}, std},
			ckTensor{p + "self_attn.k_proj.weight", []int{kv, c.Hidden}, std},
			ckTensor{p + "self_attn.v_proj.weight", []int{kv, c.Hidden}, std},
			ckTensor{p + "self_attn.o_proj.weight", []int{c.Hidden, q}, std},
			ckTensor{p + "mlp.gate_proj.weight", []int{c.Intermediate, c.Hidden}, std},
			ckTensor{p + "mlp.up_proj.weight", []int{c.Intermediate, c.Hidden}, std},
			ckTensor{p + "mlp.down_proj.weight", []int{c.Hidden, c.Intermediate}, std},
			ckTensor{p + "input_layernorm.weight", []int{c.Hidden}, 0},
			ckTensor{p + "post_attention_layernorm.weight", []int{c.Hidden}, 0},
		)
	}
	ts = append(ts, ckTensor{"model.norm.weight", []int{c.Hidden}, 0})
	if !c.Tied {
		ts = append(ts, ckTensor{"lm_head.weight", []int{c.VocabSize, c.Hidden}, std})
	}
	return ts
}

// byteSize is the size of the checkpoint's tensors in dtype.
func (c LlamaConfig) byteSize(dtype string) int64 {
	var n int64
	for _, t := range c.tensors() {
		n += t.numel()
	}
	if dtype == safetensors.F32 {
		return 4 * n
	}
	return 2 * n
}

// configJSON is config.json for the checkpoint in dtype (F32, F16 or BF16).
func (c LlamaConfig) configJSON(dtype string) ([]byte, error) {
	torch := map[string]string{safetensors.F32: "float32", safetensors.F16: "float16", safetensors.BF16: "bfloat16"}[dtype]
	if torch == "" {
		return nil, fmt.Errorf("checkpoint dtype %q: want F32, F16 or BF16", dtype)
	}
	type file struct {
		ModelType     string   `json:"model_type"`
		Architectures []string `json:"architectures"`
		HiddenAct     string   `json:"hidden_act"`
		TorchDType    string   `json:"torch_dtype"`
		LlamaConfig
	}
	return json.MarshalIndent(file{"llama", []string{"LlamaForCausalLM"}, "silu", torch, c}, "", "  ")
}

// CheckpointDType is the safetensors dtype LlamaCheckpoint writes a preset's weights in for a
// --base-dtype: BF16 for auto and bf16 (so that auto holds them in bf16), F16 for f16, F32 for
// f32 and "" (what LoadOptions reads "" as).
func CheckpointDType(base hf.BaseDType) string {
	switch base {
	case hf.BaseAuto, hf.BaseBF16:
		return safetensors.BF16
	case hf.BaseF16:
		return safetensors.F16
	}
	return safetensors.F32
}

// LlamaCheckpoint returns the folder of a random Llama checkpoint of shape c in dtype (F32, F16,
// BF16) under root: root/<name>-<dtype>-<hash of the config, dtype and recipe>, holding
// config.json, model-0000N-of-0000M.safetensors shards of at most ShardBytes tensor bytes and
// model.safetensors.index.json, as Hugging Face writes them. An existing folder is reused (wrote
// false). Otherwise it is written, tensor by tensor and in chunks — never more than one chunk of
// values in memory — into a temporary sibling that is renamed into place once complete, so a
// reader never sees a partial checkpoint; temporaries left by a killed writer (untouched for
// 10 minutes) are removed first. The values are seeded: the same c gives the same bytes.
// logf receives progress (each shard and the bytes written so far).
func LlamaCheckpoint(root, name string, c LlamaConfig, dtype string, logf func(format string, args ...any)) (dir string, wrote bool, err error) {
	cfg, err := c.configJSON(dtype)
	if err != nil {
		return "", false, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	sum := sha256.Sum256([]byte(checkpointRecipe + "\x00" + dtype + "\x00" + string(cfg)))
	dir = filepath.Join(root, fmt.Sprintf("%s-%s-%s", name, strings.ToLower(dtype), hex.EncodeToString(sum[:6])))
	if ok, err := complete(dir); ok || err != nil {
		return dir, false, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", false, fmt.Errorf("checkpoint cache %s: %w", root, err)
	}
	removeStale(root, filepath.Base(dir), logf)
	logf("writing a random %s checkpoint (%.2f GB of %s) into %s", name, float64(c.byteSize(dtype))/1e9, dtype, dir)
	tmp, err := atomicfile.TempDir(dir)
	if err != nil {
		return "", false, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := writeLlama(tmp, c, cfg, dtype, logf); err != nil {
		return "", false, fmt.Errorf("writing checkpoint %s: %w", dir, err)
	}
	if err := atomicfile.Rename(tmp, dir); err != nil {
		if ok, _ := complete(dir); ok { // another process wrote the same checkpoint first
			_ = os.RemoveAll(tmp)
			return dir, false, nil
		}
		return "", false, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	atomicfile.SyncDir(root)
	return dir, true, nil
}

// complete reports whether dir holds a checkpoint LlamaCheckpoint wrote (it only ever appears
// complete); a dir that exists without its config and index is an error naming it.
func complete(dir string) (bool, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	for _, f := range []string{hf.ConfigFile, hf.IndexFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false, fmt.Errorf("checkpoint cache %s exists but has no %s: not a complete checkpoint; remove it", dir, f)
		}
	}
	return true, nil
}

// removeStale removes the temporary siblings of name in root that nothing has written to for 10
// minutes (a writer touches its current shard continuously): what a killed writer left.
func removeStale(root, name string, logf func(string, ...any)) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), atomicfile.TempPrefix(name)) {
			continue
		}
		p := filepath.Join(root, e.Name())
		newest := time.Time{}
		_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err == nil {
				if info, err := d.Info(); err == nil && info.ModTime().After(newest) {
					newest = info.ModTime()
				}
			}
			return nil
		})
		if time.Since(newest) > 10*time.Minute {
			logf("removing %s, a partial checkpoint left by an interrupted run", p)
			_ = os.RemoveAll(p)
		}
	}
}

// writeLlama writes config.json, the shards and the index of c into dir.
func writeLlama(dir string, c LlamaConfig, cfg []byte, dtype string, logf func(string, ...any)) error {
	if err := os.WriteFile(filepath.Join(dir, hf.ConfigFile), cfg, 0o644); err != nil {
		return err
	}
	size := int64(map[string]int{safetensors.F32: 4, safetensors.F16: 2, safetensors.BF16: 2}[dtype])
	var shards [][]ckTensor
	var total, cur int64
	for _, t := range c.tensors() {
		b := t.numel() * size
		if len(shards) == 0 || cur > 0 && cur+b > ShardBytes {
			shards, cur = append(shards, nil), 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], t)
		cur, total = cur+b, total+b
	}
	weightMap := map[string]string{}
	var done int64
	start := time.Now()
	for i, ts := range shards {
		file := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		hdr := make([]safetensors.Tensor, len(ts))
		for j, t := range ts {
			hdr[j] = safetensors.Tensor{Name: t.name, DType: dtype, Shape: t.shape}
			weightMap[t.name] = file
		}
		w, err := safetensors.Create(filepath.Join(dir, file), hdr, map[string]string{"format": "pt"})
		if err != nil {
			return err
		}
		for _, t := range ts {
			if err := writeRandom(w, t, dtype); err != nil {
				w.Abort()
				return fmt.Errorf("%s: tensor %s: %w", file, t.name, err)
			}
			done += t.numel() * size
		}
		if err := w.Close(); err != nil {
			return err
		}
		logf("wrote %s (%d tensors): %.2f of %.2f GB, %.0f s", file, len(ts), float64(done)/1e9, float64(total)/1e9, time.Since(start).Seconds())
	}
	idx, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, hf.IndexFile), idx, 0o644)
}

// approxNormal maps 64 random bits to a value distributed about as N(0, 1): the sum of four
// uniform 16-bit parts, centred and scaled to unit variance (Irwin–Hall; within ±√12). It is ten
// times cheaper than rand.NormFloat64, which matters for billions of values.
func approxNormal(u uint64) float64 {
	s := float64(u&0xffff) + float64(u>>16&0xffff) + float64(u>>32&0xffff) + float64(u>>48)
	const mean, sd = 2 * 65535, 65536 * 0.5773502691896258 // 4 × 65535/2; √(4/12) × 65536
	return (s - mean) / sd
}

// writeRandom writes tensor t's values in dtype to w, 1M values at a time: entries ~ N(0, std²)
// (approxNormal), or 1 where std is 0.
func writeRandom(w io.Writer, t ckTensor, dtype string) error {
	h := fnv.New64a()
	h.Write([]byte(t.name))
	rng := rand.New(rand.NewPCG(1, h.Sum64()))
	n := t.numel()
	vals := make([]float32, min(n, 1<<20))
	for done := int64(0); done < n; {
		m := min(int64(len(vals)), n-done)
		for i := range vals[:m] {
			if t.std == 0 {
				vals[i] = 1
			} else {
				vals[i] = float32(approxNormal(rng.Uint64()) * t.std)
			}
		}
		chunk, err := safetensors.FromFloat32s(t.name, dtype, []int{int(m)}, vals[:m])
		if err != nil {
			return err
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return err
		}
		done += m
	}
	return nil
}
