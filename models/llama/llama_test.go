package llama

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/lm"
)

// tinyConfig is a small Llama config with non-square projections: hidden 48, intermediate 80,
// 4 heads, 2 KV heads, head_dim 12.
func tinyConfig() map[string]any {
	return map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"vocab_size": 61, "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": false,
		"rope_scaling": nil, "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
	}
}

func cfgInt(m map[string]any, k string) int { return m[k].(int) }

// writeTiny writes a random checkpoint for config m into a new temp dir.
func writeTiny(t testing.TB, m map[string]any, dtype string, shards int, seed uint64) (string, *hftest.Checkpoint) {
	t.Helper()
	ck := tinyCheckpoint(m, seed)
	dir := t.TempDir()
	if err := ck.Write(dir, m, dtype, shards); err != nil {
		t.Fatal(err)
	}
	return dir, ck
}

func tinyCheckpoint(m map[string]any, seed uint64) *hftest.Checkpoint {
	d, inter, v := cfgInt(m, "hidden_size"), cfgInt(m, "intermediate_size"), cfgInt(m, "vocab_size")
	heads, kvh := cfgInt(m, "num_attention_heads"), cfgInt(m, "num_key_value_heads")
	hd := d / heads
	if x, ok := m["head_dim"]; ok {
		hd = x.(int)
	}
	bias, _ := m["attention_bias"].(bool)
	ck := hftest.New(seed)
	ck.Rand("model.embed_tokens.weight", 0, 0.5, v, d)
	for i := 0; i < cfgInt(m, "num_hidden_layers"); i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		lin := func(name string, in, out int, b bool) {
			ck.Rand(p+name+".weight", 0, 1/math.Sqrt(float64(in)), out, in)
			if b {
				ck.Rand(p+name+".bias", 0, 0.1, out)
			}
		}
		lin("self_attn.q_proj", d, heads*hd, bias)
		lin("self_attn.k_proj", d, kvh*hd, bias)
		lin("self_attn.v_proj", d, kvh*hd, bias)
		lin("self_attn.o_proj", heads*hd, d, bias)
		lin("mlp.gate_proj", d, inter, false)
		lin("mlp.up_proj", d, inter, false)
		lin("mlp.down_proj", inter, d, false)
		ck.Rand(p+"input_layernorm.weight", 1, 0.2, d)
		ck.Rand(p+"post_attention_layernorm.weight", 1, 0.2, d)
	}
	ck.Rand("model.norm.weight", 1, 0.2, d)
	if tie, _ := m["tie_word_embeddings"].(bool); !tie {
		ck.Rand("lm_head.weight", 0, 1/math.Sqrt(float64(d)), v, d)
	}
	return ck
}

// refLogits is the float64 reference forward of one sequence (transformers' modeling_llama:
// LlamaRMSNorm, LlamaRotaryEmbedding + apply_rotary_pos_emb with rotate_half, repeat_kv,
// eager attention with causal + padding mask, LlamaMLP), returning logits [L, V].
func refLogits(c *Config, ck *hftest.Checkpoint, ids []int, mask []int) []float64 {
	return refLogitsRounded(c, ck, ids, mask, nil)
}

// refLogitsRounded is refLogits with the inputs of every weight product (the projections and
// the LM head) rounded by round (nil: not rounded), as a half-precision base's cast mode rounds
// the activations to the weight's dtype (fastops.HalfCast).
func refLogitsRounded(c *Config, ck *hftest.Checkpoint, ids []int, mask []int, round func(float64) float64) []float64 {
	rounded := func(x []float64) []float64 {
		if round == nil {
			return x
		}
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = round(v)
		}
		return out
	}
	L, D := len(ids), c.Hidden
	h := make([]float64, L*D)
	emb := ck.Get("model.embed_tokens.weight")
	for i, id := range ids {
		copy(h[i*D:(i+1)*D], emb[id*D:(id+1)*D])
	}
	bias := func(n string) []float64 {
		if v, ok := ck.Values[n]; ok {
			return v
		}
		return nil
	}
	hd := c.HeadDim
	ropeVec := func(x []float64, nh int) { // x [L, nh*hd], in place
		for p := 0; p < L; p++ {
			for hh := 0; hh < nh; hh++ {
				v := x[p*nh*hd+hh*hd : p*nh*hd+(hh+1)*hd]
				out := make([]float64, hd)
				for j := 0; j < hd; j++ {
					f := float64(p) * math.Pow(c.RopeTheta, -float64(2*(j%(hd/2)))/float64(hd))
					var rot float64
					if j < hd/2 {
						rot = -v[j+hd/2]
					} else {
						rot = v[j-hd/2]
					}
					out[j] = v[j]*math.Cos(f) + rot*math.Sin(f)
				}
				copy(v, out)
			}
		}
	}
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		n := hftest.RMSNorm(h, L, D, ck.Get(p+"input_layernorm.weight"), c.RMSNormEps)
		lin := func(name string, x []float64, in, out int) []float64 {
			return hftest.Linear(rounded(x), L, in, ck.Get(p+name+".weight"), out, bias(p+name+".bias"))
		}
		q := lin("self_attn.q_proj", n, D, c.Heads*hd)
		k := lin("self_attn.k_proj", n, D, c.KVHeads*hd)
		v := lin("self_attn.v_proj", n, D, c.KVHeads*hd)
		ropeVec(q, c.Heads)
		ropeVec(k, c.KVHeads)
		attn := make([]float64, L*c.Heads*hd)
		for hh := 0; hh < c.Heads; hh++ {
			kh := hh / (c.Heads / c.KVHeads)
			o := hftest.Attention(L, L, hd,
				func(i, d int) float64 { return q[i*c.Heads*hd+hh*hd+d] },
				func(j, d int) float64 { return k[j*c.KVHeads*hd+kh*hd+d] },
				func(j, d int) float64 { return v[j*c.KVHeads*hd+kh*hd+d] },
				1/math.Sqrt(float64(hd)),
				func(i, j int) bool { return j <= i && (mask == nil || mask[j] != 0) })
			for i := 0; i < L; i++ {
				copy(attn[i*c.Heads*hd+hh*hd:], o[i*hd:(i+1)*hd])
			}
		}
		h = hftest.Add(h, lin("self_attn.o_proj", attn, c.Heads*hd, D))
		n = hftest.RMSNorm(h, L, D, ck.Get(p+"post_attention_layernorm.weight"), c.RMSNormEps)
		g := hftest.Act("silu", lin("mlp.gate_proj", n, D, c.Intermediate))
		u := lin("mlp.up_proj", n, D, c.Intermediate)
		h = hftest.Add(h, lin("mlp.down_proj", hftest.Mul(g, u), c.Intermediate, D))
	}
	h = hftest.RMSNorm(h, L, D, ck.Get("model.norm.weight"), c.RMSNormEps)
	head := "lm_head.weight"
	if _, ok := ck.Values[head]; !ok {
		head = "model.embed_tokens.weight"
	}
	return hftest.Linear(rounded(h), L, D, ck.Get(head), c.VocabSize, nil)
}

func be(t testing.TB) compute.Backend {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runLogits runs Logits on a batch; mask may be nil.
func runLogits(t testing.TB, c *Config, store *model.Store, ids [][]int, mask [][]int) []float32 {
	t.Helper()
	b, l := len(ids), len(ids[0])
	idv := make([]int32, 0, b*l)
	mv := make([]float32, 0, b*l)
	for i := range ids {
		for j := range ids[i] {
			idv = append(idv, int32(ids[i][j]))
			m := float32(1)
			if mask != nil {
				m = float32(mask[i][j])
			}
			mv = append(mv, m)
		}
	}
	exec, err := model.NewExec(be(t), store, func(scope *model.Scope, ids, mask *Node) *Node {
		return Logits(c, nil, scope, ids, mask)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Call(tensors.FromFlatDataAndDimensions(idv, b, l), tensors.FromFlatDataAndDimensions(mv, b, l))
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](out[0])
}

func TestMatchesReference(t *testing.T) {
	cases := []struct {
		name   string
		dtype  string
		shards int
		edit   func(m map[string]any)
	}{
		{"f32", "F32", 1, nil},
		{"bf16-sharded-tied-headdim16-bias", "BF16", 3, func(m map[string]any) {
			m["tie_word_embeddings"] = true
			m["head_dim"] = 16
			m["attention_bias"] = true
		}},
		{"f16-mha", "F16", 1, func(m map[string]any) { m["num_key_value_heads"] = 4; m["rope_theta"] = 500000.0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyConfig()
			if tc.edit != nil {
				tc.edit(m)
			}
			dir, ck := writeTiny(t, m, tc.dtype, tc.shards, 3)
			store := model.NewStore()
			c, err := Load(dir, store)
			if err != nil {
				t.Fatal(err)
			}
			ids := [][]int{{1, 5, 9, 33, 60, 7, 7, 2, 14, 40}, {1, 8, 17, 3, 0, 0, 0, 0, 0, 0}}
			mask := [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 0, 0, 0, 0}}
			got := runLogits(t, c, store, ids, mask)
			var want []float64
			for i := range ids {
				want = append(want, refLogits(c, ck, ids[i], mask[i])...)
			}
			rel, abs := hftest.MaxRelErr(got, want)
			t.Logf("%s: max |Δlogit| %.3g, relative to max |logit| %.3g", tc.name, abs, rel)
			if rel > 1e-4 {
				t.Fatalf("logits differ from the float64 reference: relative error %.3g", rel)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	good := func(t *testing.T) (string, map[string]any, *hftest.Checkpoint) {
		m := tinyConfig()
		dir, ck := writeTiny(t, m, "F32", 1, 1)
		return dir, m, ck
	}
	rewrite := func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
		if err := ck.Write(dir, m, "F32", 1); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, want string
		edit       func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint)
	}{
		{"no weights", "no model.safetensors", func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
		}},
		{"no config", "no config.json", func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			os.Remove(filepath.Join(dir, "config.json"))
		}},
		{"missing shard", "shard", func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			os.Remove(filepath.Join(dir, "model.safetensors"))
			if err := ck.Write(dir, m, "F32", 2); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(dir, "model.safetensors"))
			os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors"))
		}},
		{"rope_scaling", `"rope_scaling"`, func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			m["rope_scaling"] = map[string]any{"type": "linear", "factor": 2.0}
			rewrite(t, dir, m, ck)
		}},
		{"hidden_act", `"hidden_act": "relu2"`, func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			m["hidden_act"] = "relu2"
			rewrite(t, dir, m, ck)
		}},
		{"shape", `"model.layers.1.mlp.up_proj.weight" has shape [80 47]`, func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			ck.Rand("model.layers.1.mlp.up_proj.weight", 0, 1, 80, 47)
			rewrite(t, dir, m, ck)
		}},
		{"missing tensor", `missing tensor "model.layers.0.self_attn.k_proj.weight"`, func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			ck.Delete("model.layers.0.self_attn.k_proj.weight")
			rewrite(t, dir, m, ck)
		}},
		{"architecture", `model_type "mamba"`, func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			m["model_type"] = "mamba"
			rewrite(t, dir, m, ck)
		}},
		{"architectures", `"GPTNeoXForCausalLM"`, func(t *testing.T, dir string, m map[string]any, ck *hftest.Checkpoint) {
			m["architectures"] = []string{"GPTNeoXForCausalLM"}
			rewrite(t, dir, m, ck)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, m, ck := good(t)
			tc.edit(t, dir, m, ck)
			_, err := Load(dir, model.NewStore())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

// TestGenerationCacheMatchesRecomputation: greedy generation with the KV cache yields the same
// tokens as recomputing the whole sequence's logits at every step, and the cached logits match.
func TestGenerationCacheMatchesRecomputation(t *testing.T) {
	m := tinyConfig()
	dir, ck := writeTiny(t, m, "F32", 1, 5)
	store := model.NewStore()
	c, err := Load(dir, store)
	if err != nil {
		t.Fatal(err)
	}
	prompt := []int{1, 22, 9, 41}
	const n = 12
	gen, err := NewGenerator(be(t), store, c, nil, 20)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := gen.Generate(prompt, n, lm.SampleOptions{}, -1)
	if err != nil {
		t.Fatal(err)
	}
	seq := append([]int(nil), prompt...)
	for i := 0; i < n; i++ {
		logits := refLogits(c, ck, seq, nil)
		last := logits[(len(seq)-1)*c.VocabSize:]
		best := 0
		for j, v := range last {
			if v > last[best] {
				best = j
			}
		}
		seq = append(seq, best)
	}
	uncached := seq[len(prompt):]
	t.Logf("cached %v\nrecomputed (float64 reference) %v", cached, uncached)
	for i := range uncached {
		if cached[i] != uncached[i] {
			t.Fatalf("token %d: cached %d, recomputed %d", i, cached[i], uncached[i])
		}
	}
	// Also against the GoMLX uncached forward.
	full := runLogits(t, c, store, [][]int{seq[:len(seq)-1]}, nil)
	for i := len(prompt) - 1; i < len(seq)-1; i++ {
		if got := lm.Argmax(full[i*c.VocabSize : (i+1)*c.VocabSize]); got != seq[i+1] {
			t.Fatalf("position %d: uncached GoMLX argmax %d, want %d", i, got, seq[i+1])
		}
	}
	// Sampling: same seed ⇒ same tokens; top-k 1 ⇒ greedy.
	s1, _ := gen.Generate(prompt, n, lm.SampleOptions{Temperature: 1.5, TopK: 10, Seed: 7}, -1)
	s2, _ := gen.Generate(prompt, n, lm.SampleOptions{Temperature: 1.5, TopK: 10, Seed: 7}, -1)
	s3, _ := gen.Generate(prompt, n, lm.SampleOptions{Temperature: 1.5, TopK: 10, Seed: 8}, -1)
	k1, _ := gen.Generate(prompt, n, lm.SampleOptions{Temperature: 1, TopK: 1, Seed: 3}, -1)
	t.Logf("sampled seed 7: %v, seed 8: %v", s1, s3)
	if fmt.Sprint(s1) != fmt.Sprint(s2) {
		t.Fatalf("same seed, different samples: %v vs %v", s1, s2)
	}
	if fmt.Sprint(k1) != fmt.Sprint(cached) {
		t.Fatalf("top-k 1 sampling %v differs from greedy %v", k1, cached)
	}
	if _, err := gen.Generate(prompt, 17, lm.SampleOptions{}, -1); err == nil {
		t.Fatal("generation past the cache length should fail")
	}
}
