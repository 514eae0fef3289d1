package gpt2

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/lm"
)

const tD, tHeads, tLayers, tVocab, tPos, tInner = 48, 4, 2, 57, 32, 80

func tinyConfig(arch string) map[string]any {
	return map[string]any{
		"architectures": []string{arch}, "model_type": "gpt2", "vocab_size": tVocab, "n_embd": tD,
		"n_layer": tLayers, "n_head": tHeads, "n_positions": tPos, "n_inner": tInner,
		"activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "scale_attn_weights": true,
		"bos_token_id": 0, "eos_token_id": 0,
	}
}

func tinyCheckpoint(prefix string, seed uint64) *hftest.Checkpoint {
	ck := hftest.New(seed)
	ck.Rand(prefix+"wte.weight", 0, 0.5, tVocab, tD)
	ck.Rand(prefix+"wpe.weight", 0, 0.3, tPos, tD)
	ln := func(n string) {
		ck.Rand(n+".weight", 1, 0.2, tD)
		ck.Rand(n+".bias", 0, 0.2, tD)
	}
	conv := func(n string, in, out int) { // Conv1D: weight [in, out]
		ck.Rand(n+".weight", 0, 1/math.Sqrt(float64(in)), in, out)
		ck.Rand(n+".bias", 0, 0.1, out)
	}
	for i := 0; i < tLayers; i++ {
		p := fmt.Sprintf("%sh.%d.", prefix, i)
		ln(p + "ln_1")
		conv(p+"attn.c_attn", tD, 3*tD)
		conv(p+"attn.c_proj", tD, tD)
		ln(p + "ln_2")
		conv(p+"mlp.c_fc", tD, tInner)
		conv(p+"mlp.c_proj", tInner, tD)
		// The causal-mask buffer old checkpoints carry.
		ck.Set(p+"attn.bias", make([]float64, tPos*tPos), 1, 1, tPos, tPos)
	}
	ln(prefix + "ln_f")
	return ck
}

// refLogits is the float64 reference from transformers' modeling_gpt2 (GPT2Block pre-LN, Conv1D
// x·W+b, split of c_attn into q|k|v, eager attention with causal mask and padding-key mask,
// NewGELU, tied lm_head) for one sequence: logits [L, V].
func refLogits(c *Config, ck *hftest.Checkpoint, ids, mask []int) []float64 {
	L, D, H := len(ids), c.Hidden, c.Heads
	hd := D / H
	p, g := c.Prefix, ck.Get
	h := make([]float64, L*D)
	for i, id := range ids {
		for d := 0; d < D; d++ {
			h[i*D+d] = g(p + "wte.weight")[id*D+d] + g(p + "wpe.weight")[i*D+d]
		}
	}
	for l := 0; l < c.Layers; l++ {
		lp := fmt.Sprintf("%sh.%d.", p, l)
		conv := func(n string, x []float64, in, out int) []float64 {
			return hftest.Conv1D(x, L, in, g(lp+n+".weight"), out, g(lp+n+".bias"))
		}
		a := hftest.LayerNorm(h, L, D, g(lp+"ln_1.weight"), g(lp+"ln_1.bias"), c.LayerNormEps)
		qkv := conv("attn.c_attn", a, D, 3*D)
		ctx := make([]float64, L*D)
		for hh := 0; hh < H; hh++ {
			o := hftest.Attention(L, L, hd,
				func(i, d int) float64 { return qkv[i*3*D+hh*hd+d] },
				func(j, d int) float64 { return qkv[j*3*D+D+hh*hd+d] },
				func(j, d int) float64 { return qkv[j*3*D+2*D+hh*hd+d] },
				1/math.Sqrt(float64(hd)), func(i, j int) bool { return j <= i && mask[j] != 0 })
			for i := 0; i < L; i++ {
				copy(ctx[i*D+hh*hd:], o[i*hd:(i+1)*hd])
			}
		}
		h = hftest.Add(h, conv("attn.c_proj", ctx, D, D))
		m := hftest.LayerNorm(h, L, D, g(lp+"ln_2.weight"), g(lp+"ln_2.bias"), c.LayerNormEps)
		h = hftest.Add(h, conv("mlp.c_proj", hftest.Act(c.Activation, conv("mlp.c_fc", m, D, c.Inner)), c.Inner, D))
	}
	h = hftest.LayerNorm(h, L, D, g(p+"ln_f.weight"), g(p+"ln_f.bias"), c.LayerNormEps)
	return hftest.Linear(h, L, D, g(p+"wte.weight"), c.VocabSize, nil)
}

func be(t testing.TB) compute.Backend {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name, arch, prefix, dtype string
		shards                    int
		base                      hf.BaseDType // how the matrices are held (16-bit ones in widen mode)
	}{
		{"lmhead-f32", "GPT2LMHeadModel", "transformer.", "F32", 1, hf.BaseF32},
		{"bare-bf16-sharded", "GPT2Model", "", "BF16", 2, hf.BaseF32},
		{"lmhead-f16", "GPT2LMHeadModel", "transformer.", "F16", 1, hf.BaseF32},
		{"bare-bf16-held-bf16", "GPT2Model", "", "BF16", 2, hf.BaseAuto},
		{"lmhead-f16-held-f16", "GPT2LMHeadModel", "transformer.", "F16", 1, hf.BaseAuto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(m fastops.HalfMode) { fastops.DefaultHalfMode = m }(fastops.DefaultHalfMode)
			fastops.DefaultHalfMode = fastops.HalfWiden // float32 products of the 16-bit weights: the reference's math
			ck := tinyCheckpoint(tc.prefix, 4)
			dir := t.TempDir()
			if err := ck.Write(dir, tinyConfig(tc.arch), tc.dtype, tc.shards); err != nil {
				t.Fatal(err)
			}
			store := model.NewStore()
			c, err := LoadBase(dir, store, tc.base)
			if err != nil {
				t.Fatal(err)
			}
			if c.Prefix != tc.prefix {
				t.Fatalf("prefix %q, want %q", c.Prefix, tc.prefix)
			}
			if dt := store.GetVariable("/" + strings.ReplaceAll(tc.prefix, ".", "/") + "h/0/attn/c_attn/weight").Shape().DType; tc.base == hf.BaseAuto && !dt.IsHalfPrecision() {
				t.Fatalf("c_attn held as %s, want the checkpoint's %s", dt, tc.dtype)
			}
			ids := [][]int{{0, 5, 19, 56, 3, 3, 44, 21, 8}, {0, 30, 2, 11, 0, 0, 0, 0, 0}}
			mask := [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 0, 0, 0}}
			var idv []int32
			var mv []float32
			var want []float64
			for i := range ids {
				for j := range ids[i] {
					idv = append(idv, int32(ids[i][j]))
					mv = append(mv, float32(mask[i][j]))
				}
				want = append(want, refLogits(c, ck, ids[i], mask[i])...)
			}
			exec, err := model.NewExec(be(t), store, func(scope *model.Scope, ids, mask *Node) *Node {
				return Logits(c, nil, scope, ids, mask)
			})
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Call(tensors.FromFlatDataAndDimensions(idv, 2, 9), tensors.FromFlatDataAndDimensions(mv, 2, 9))
			if err != nil {
				t.Fatal(err)
			}
			rel, abs := hftest.MaxRelErr(tensors.MustCopyFlatData[float32](out[0]), want)
			t.Logf("%s: max |Δlogit| %.3g, relative %.3g", tc.name, abs, rel)
			if rel > 1e-4 {
				t.Fatalf("logits differ from the float64 reference: relative error %.3g", rel)
			}
			// Greedy generation equals the reference's argmax continuation.
			gen, err := NewGenerator(be(t), store, c, nil, 16)
			if err != nil {
				t.Fatal(err)
			}
			got, err := gen.Generate([]int{0, 5, 19}, 6, lm.SampleOptions{}, -1)
			if err != nil {
				t.Fatal(err)
			}
			seq := []int{0, 5, 19}
			for len(seq) < 9 {
				lg := refLogits(c, ck, seq, []int{1, 1, 1, 1, 1, 1, 1, 1, 1})
				last := lg[(len(seq)-1)*c.VocabSize:]
				best := 0
				for j := range last {
					if last[j] > last[best] {
						best = j
					}
				}
				seq = append(seq, best)
			}
			if fmt.Sprint(got) != fmt.Sprint(seq[3:]) {
				t.Fatalf("generated %v, reference %v", got, seq[3:])
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		edit       func(m map[string]any, ck *hftest.Checkpoint)
	}{
		{"inverse layer idx", `"scale_attn_by_inverse_layer_idx"`, func(m map[string]any, ck *hftest.Checkpoint) {
			m["scale_attn_by_inverse_layer_idx"] = true
		}},
		{"activation", `"activation_function": "relu2"`, func(m map[string]any, ck *hftest.Checkpoint) { m["activation_function"] = "relu2" }},
		{"transposed conv1d", `"transformer.h.0.mlp.c_fc.weight" has shape [80 48]`, func(m map[string]any, ck *hftest.Checkpoint) {
			ck.Rand("transformer.h.0.mlp.c_fc.weight", 0, 1, 80, 48)
		}},
		{"model_type", `model_type "gpt_neo"`, func(m map[string]any, ck *hftest.Checkpoint) { m["model_type"] = "gpt_neo" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyConfig("GPT2LMHeadModel")
			ck := tinyCheckpoint("transformer.", 1)
			tc.edit(m, ck)
			dir := t.TempDir()
			if err := ck.Write(dir, m, "F32", 1); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir, model.NewStore())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}
