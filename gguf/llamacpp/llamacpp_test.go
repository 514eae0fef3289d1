package llamacpp

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/gguf"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/peft"
)

// TestPermuteRowsIsRoPEConversion checks PermuteRows from what it is for: HF's RoPE rotates the
// halves of each head (x[j], x[j+d/2]), llama.cpp's "llama" RoPE rotates interleaved pairs
// (x[2j], x[2j+1]); rotating the permuted projection interleaved must equal permuting the
// HF-rotated projection, for any position, with any number of heads.
func TestPermuteRowsIsRoPEConversion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ heads, d, pos int }{{1, 2, 3}, {2, 8, 5}, {4, 16, 11}, {3, 6, 0}} {
		rows := tc.heads * tc.d
		x := make([]float32, rows)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		angle := func(j int) (float64, float64) {
			th := float64(tc.pos) * math.Pow(10000, -2*float64(j)/float64(tc.d))
			return math.Cos(th), math.Sin(th)
		}
		hfRope := make([]float32, rows) // rotate_half
		ilRope := func(v []float32) []float32 {
			out := make([]float32, len(v))
			for h := 0; h < tc.heads; h++ {
				for j := 0; j < tc.d/2; j++ {
					c, s := angle(j)
					a, b := float64(v[h*tc.d+2*j]), float64(v[h*tc.d+2*j+1])
					out[h*tc.d+2*j], out[h*tc.d+2*j+1] = float32(a*c-b*s), float32(a*s+b*c)
				}
			}
			return out
		}
		for h := 0; h < tc.heads; h++ {
			for j := 0; j < tc.d/2; j++ {
				c, s := angle(j)
				a, b := float64(x[h*tc.d+j]), float64(x[h*tc.d+j+tc.d/2])
				hfRope[h*tc.d+j], hfRope[h*tc.d+j+tc.d/2] = float32(a*c-b*s), float32(a*s+b*c)
			}
		}
		px, err := PermuteRows(x, rows, 1, tc.heads)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := PermuteRows(hfRope, rows, 1, tc.heads)
		got := ilRope(px)
		for i := range got {
			if math.Abs(float64(got[i]-want[i])) > 1e-5 {
				t.Fatalf("%+v: row %d: interleaved RoPE of the permuted rows %g, permuted HF RoPE %g", tc, i, got[i], want[i])
			}
		}
	}
	// Whole rows move: a 2-column matrix keeps its rows intact.
	w := []float32{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5} // rows 0..3 of [r, r+0.5]
	got, err := PermuteRows(w, 4, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5}; !slices.Equal(got, want) {
		t.Errorf("PermuteRows of 4 rows, 1 head = %v, want rows 0 2 1 3 (%v)", got, want)
	}
	if _, err := PermuteRows(w, 4, 2, 3); err == nil {
		t.Error("4 rows in 3 heads: no error")
	}
}

func TestTensorName(t *testing.T) {
	for _, tc := range []struct{ hf, want string }{
		{"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
		{"lm_head.weight", "output.weight"}, {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
		{"model.layers.12.self_attn.k_proj.bias", "blk.12.attn_k.bias"}, {"model.layers.3.self_attn.v_proj", "blk.3.attn_v"},
		{"model.layers.1.self_attn.o_proj.weight", "blk.1.attn_output.weight"}, {"model.layers.1.mlp.gate_proj.weight", "blk.1.ffn_gate.weight"},
		{"model.layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"}, {"model.layers.1.mlp.down_proj.weight", "blk.1.ffn_down.weight"},
		{"model.layers.2.input_layernorm.weight", "blk.2.attn_norm.weight"}, {"model.layers.2.post_attention_layernorm.weight", "blk.2.ffn_norm.weight"},
	} {
		if got, err := TensorName(tc.hf); err != nil || got != tc.want {
			t.Errorf("TensorName(%s) = %q, %v; want %q", tc.hf, got, err, tc.want)
		}
	}
	for _, bad := range []string{"model.layers.x.self_attn.q_proj.weight", "model.layers.0.self_attn.rotary", "classifier.weight"} {
		if _, err := TensorName(bad); err == nil || !strings.Contains(err.Error(), "known:") {
			t.Errorf("TensorName(%s): %v", bad, err)
		}
	}
}

// tinyModel writes a 1-layer GQA Llama (or qwen2) with a byte-level BPE tokenizer.json.
func tinyModel(t *testing.T, modelType string) (string, *llama.Config, *hftest.Checkpoint) {
	t.Helper()
	const d, inter, heads, kvh, v = 16, 24, 4, 2, 8
	ck := hftest.New(3)
	ck.Rand("model.embed_tokens.weight", 0, 1, v, d)
	for _, l := range []struct {
		n       string
		in, out int
	}{{"self_attn.q_proj", d, d}, {"self_attn.k_proj", d, kvh * d / heads}, {"self_attn.v_proj", d, kvh * d / heads},
		{"self_attn.o_proj", d, d}, {"mlp.gate_proj", d, inter}, {"mlp.up_proj", d, inter}, {"mlp.down_proj", inter, d}} {
		ck.Rand("model.layers.0."+l.n+".weight", 0, 0.3, l.out, l.in)
		if modelType == "qwen2" && l.n != "self_attn.o_proj" && strings.HasPrefix(l.n, "self_attn") {
			ck.Rand("model.layers.0."+l.n+".bias", 0, 0.3, l.out)
		}
	}
	ck.Rand("model.layers.0.input_layernorm.weight", 1, 0.1, d)
	ck.Rand("model.layers.0.post_attention_layernorm.weight", 1, 0.1, d)
	ck.Rand("model.norm.weight", 1, 0.1, d)
	ck.Rand("lm_head.weight", 0, 1, v, d)
	archs := map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
	cfg := map[string]any{"model_type": modelType, "architectures": []string{archs[modelType]}, "vocab_size": v,
		"hidden_size": d, "intermediate_size": inter, "num_hidden_layers": 1, "num_attention_heads": heads,
		"num_key_value_heads": kvh, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"}
	dir := t.TempDir()
	if err := ck.Write(dir, cfg, "F32", 1); err != nil {
		t.Fatal(err)
	}
	tj := map[string]any{
		"added_tokens":  []any{map[string]any{"id": 1, "content": "<s>", "special": true}, map[string]any{"id": 2, "content": "</s>", "special": true}, map[string]any{"id": 5, "content": "<tool>", "special": false}},
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "use_regex": true},
		"model":         map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0, "b": 3, "ab": 4}, "merges": []any{"a b", []string{"ab", "b"}}},
	}
	b, _ := json.Marshal(tj)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := llama.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, c, ck
}

// randAdapter is a random adapter of method m on every projection of c.
func randAdapter(c *llama.Config, m peft.Method, r int, alpha float64, edit func(*adapterio.Config)) *adapterio.Adapter {
	rng := rand.New(rand.NewPCG(uint64(r), 9))
	cfg := &adapterio.Config{BaseModel: "t", Extra: map[string]json.RawMessage{}}
	cfg.R, cfg.LoraAlpha, cfg.TargetModules = r, alpha, []string{peft.AllLinear}
	switch m {
	case peft.SingLoRA:
		cfg.PeftType, cfg.RampUpSteps, cfg.TrainedSteps, cfg.Init = adapterio.TypeSingLoRA, 8, 2, string(peft.InitTheory)
	default:
		cfg.PeftType, cfg.Bias, cfg.UseDora = adapterio.TypeLoRA, "none", m == peft.DoRA
		if m == peft.LoRAPlus {
			cfg.LoraPlusRatio = 16
		}
	}
	if edit != nil {
		edit(cfg)
	}
	a := &adapterio.Adapter{Config: cfg}
	for _, s := range llama.Linears(c) {
		mod := &adapterio.Module{Path: s.Path, In: s.In, Out: s.Out, Layout: s.Layout, Tensors: map[string]*adapterio.Matrix{}}
		for _, at := range peft.AdapterTensors(m, s, r) {
			n := 1
			for _, d := range at.Shape {
				n *= d
			}
			vals := make([]float32, n)
			for i := range vals {
				vals[i] = float32(rng.NormFloat64()*0.3) + 0.5*float32(boolInt(at.Name == peft.NameMagnitude))
			}
			mod.Tensors[at.Name] = &adapterio.Matrix{Shape: at.Shape, Data: vals}
		}
		a.Modules = append(a.Modules, mod)
	}
	return a
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestAdapterTensorsReproduceDeltaW: llama.cpp's update (α/r)·lora_b·lora_a, from the tensors as
// written (ggml dims, encoded bytes), equals singlora's ΔW with q/k rows permuted, for every method
// with a LoRA form and for scales that are not α/r; DoRA is refused.
func TestAdapterTensorsReproduceDeltaW(t *testing.T) {
	for _, modelType := range []string{"llama", "qwen2"} {
		_, c, _ := tinyModel(t, modelType)
		arch, _ := ArchFor(modelType)
		for _, tc := range []struct {
			m    peft.Method
			edit func(*adapterio.Config)
		}{
			{peft.SingLoRA, nil}, {peft.LoRA, nil}, {peft.LoRAPlus, nil},
			{peft.LoRA, func(c *adapterio.Config) { c.UseRSLoRA = true }},
			{peft.SingLoRA, func(c *adapterio.Config) { c.UseRSLoRA = true }},
		} {
			name := fmt.Sprintf("%s/%s rslora=%v", modelType, tc.m, tc.edit != nil)
			a := randAdapter(c, tc.m, 2, 6, tc.edit)
			kvs, tensors, rep, err := AdapterTensors(a, c, gguf.F32)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			f, err := gguf.Parse(must(gguf.Marshal(kvs, tensors)))
			if err != nil {
				t.Fatal(err)
			}
			alpha := float64(f.Get(KeyLoRAAlpha).(float32))
			if f.Get(KeyType) != "adapter" || f.Get(KeyAdapterType) != "lora" || f.Get(KeyArchitecture) != arch.Name || rep.Modules != len(a.Modules) {
				t.Fatalf("%s: keys %v, report %+v", name, f.KVs, rep)
			}
			for _, m := range a.Modules {
				want, err := adapterio.DeltaW(a, m)
				if err != nil {
					t.Fatal(err)
				}
				wf := make([]float32, len(want))
				for i, v := range want {
					wf[i] = float32(v)
				}
				if h := rowHeads(arch, c, m.Path); h > 0 {
					wf, _ = PermuteRows(wf, m.Out, m.In, h)
				}
				gn, _ := TensorName(m.Path + ".weight")
				ta, tb := f.Tensor(gn+".lora_a"), f.Tensor(gn+".lora_b")
				if ta == nil || tb == nil {
					t.Fatalf("%s: no %s.lora_a/.lora_b", name, gn)
				}
				r := int(ta.Dims[1])
				if !slices.Equal(ta.Dims, []uint64{uint64(m.In), uint64(r)}) || !slices.Equal(tb.Dims, []uint64{uint64(r), uint64(m.Out)}) {
					t.Fatalf("%s %s: dims lora_a %v lora_b %v, want [in r] [r out] as llama.cpp checks", name, gn, ta.Dims, tb.Dims)
				}
				av, _ := gguf.Decode(ta.Type, ta.Data)
				bv, _ := gguf.Decode(tb.Type, tb.Data)
				for o := 0; o < m.Out; o++ {
					for i := 0; i < m.In; i++ {
						var s float64
						for k := 0; k < r; k++ {
							s += float64(bv[o*r+k]) * float64(av[k*m.In+i])
						}
						s *= alpha / float64(r)
						if d := math.Abs(s - float64(wf[o*m.In+i])); d > 1e-5*(1+math.Abs(s)) {
							t.Fatalf("%s %s: ΔW[%d,%d] llama.cpp %g, singlora %g", name, m.Path, o, i, s, wf[o*m.In+i])
						}
					}
				}
			}
		}
		if _, _, _, err := AdapterTensors(randAdapter(c, peft.DoRA, 2, 4, nil), c, gguf.F32); err == nil || !strings.Contains(err.Error(), "DoRA") || !strings.Contains(err.Error(), "--merge") {
			t.Errorf("DoRA: %v", err)
		}
		bias := randAdapter(c, peft.LoRA, 2, 4, func(c *adapterio.Config) { c.Bias = "all" })
		if _, _, _, err := AdapterTensors(bias, c, gguf.F32); err == nil || !strings.Contains(err.Error(), "biases") {
			t.Errorf("bias all: %v", err)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestWriteModel: the model GGUF holds llama.cpp's keys and every weight under its name and
// dims, q/k rows permuted for llama (not for qwen2), matrices in the requested type, norms F32,
// the tokenizer with pads, types and merges; --merge writes adapterio.MergeWeight's weights.
func TestWriteModel(t *testing.T) {
	for _, modelType := range []string{"llama", "qwen2"} {
		dir, c, ck := tinyModel(t, modelType)
		arch, _ := ArchFor(modelType)
		for _, typ := range []gguf.TensorType{gguf.F32, gguf.F16, gguf.BF16} {
			path := filepath.Join(t.TempDir(), "m.gguf")
			rep, err := WriteModel(path, dir, ModelOptions{Type: typ})
			if err != nil {
				t.Fatal(err)
			}
			f, err := gguf.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]any{
				"general.architecture": arch.Name, arch.Name + ".block_count": uint32(1), arch.Name + ".attention.head_count": uint32(4),
				arch.Name + ".attention.head_count_kv": uint32(2), arch.Name + ".embedding_length": uint32(16),
				arch.Name + ".feed_forward_length": uint32(24), arch.Name + ".rope.dimension_count": uint32(4),
				"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.bos_token_id": uint32(1),
				"tokenizer.ggml.eos_token_id": uint32(2), "general.file_type": fileType(typ),
			} {
				if got := f.Get(key); got != want {
					t.Errorf("%s %s: %s = %v (%T), want %v", modelType, typ, key, got, got, want)
				}
			}
			if got := f.Get("tokenizer.ggml.tokens").([]string); !slices.Equal(got, []string{"a", "<s>", "</s>", "b", "ab", "<tool>", "[PAD6]", "[PAD7]"}) {
				t.Errorf("tokens %q", got)
			}
			if got := f.Get("tokenizer.ggml.token_type").([]int32); !slices.Equal(got, []int32{1, 3, 3, 1, 1, 4, 5, 5}) {
				t.Errorf("token types %v", got)
			}
			if got := f.Get("tokenizer.ggml.merges").([]string); !slices.Equal(got, []string{"a b", "ab b"}) {
				t.Errorf("merges %q", got)
			}
			if rep.Tensors != len(f.Tensors) {
				t.Errorf("report says %d tensors, file has %d", rep.Tensors, len(f.Tensors))
			}
			for _, name := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight", "model.layers.0.mlp.down_proj.weight", "lm_head.weight", "model.norm.weight", "model.layers.0.self_attn.k_proj.bias"} {
				if _, ok := ck.Values[name]; !ok {
					continue // k_proj.bias: qwen2 only
				}
				want := ck.Get(name)
				gn, _ := TensorName(name)
				tt := f.Tensor(gn)
				if tt == nil {
					t.Fatalf("%s: no %s", modelType, gn)
				}
				wantType := typ
				if len(tt.Dims) == 1 {
					wantType = gguf.F32
				}
				if tt.Type != wantType {
					t.Errorf("%s: %s, want %s", gn, tt.Type, wantType)
				}
				got, _ := gguf.Decode(tt.Type, tt.Data)
				rows := int(tt.Dims[len(tt.Dims)-1])
				wf := make([]float32, len(want))
				for i, v := range want {
					wf[i] = float32(v)
				}
				if h := rowHeads(arch, c, strings.TrimSuffix(strings.TrimSuffix(name, ".weight"), ".bias")); h > 0 {
					wf, _ = PermuteRows(wf, rows, len(wf)/rows, h)
				}
				tol := map[gguf.TensorType]float64{gguf.F32: 0, gguf.F16: 1e-3, gguf.BF16: 8e-3}[tt.Type]
				for i := range got {
					if math.Abs(float64(got[i]-wf[i])) > tol*math.Abs(float64(wf[i]))+1e-7 {
						t.Fatalf("%s %s: value %d is %g, want %g", modelType, gn, i, got[i], wf[i])
					}
				}
			}
		}
		// Merged: DoRA too (a merge has no LoRA-form restriction).
		for _, m := range []peft.Method{peft.SingLoRA, peft.DoRA} {
			a := randAdapter(c, m, 2, 4, nil)
			adir := filepath.Join(t.TempDir(), "ad")
			if err := adapterio.Save(adir, a); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "merged.gguf")
			rep, err := WriteModel(path, dir, ModelOptions{Type: gguf.F32, Adapter: adir})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Merged != len(a.Modules) {
				t.Errorf("%s: merged %d modules, want %d", m, rep.Merged, len(a.Modules))
			}
			f, _ := gguf.Read(path)
			mod := a.Modules[5] // up_proj
			w0 := ck.Get(mod.Path + ".weight")
			want, err := adapterio.MergeWeight(a, mod, w0, false)
			if err != nil {
				t.Fatal(err)
			}
			gn, _ := TensorName(mod.Path + ".weight")
			got, _ := gguf.Decode(gguf.F32, f.Tensor(gn).Data)
			for i := range got {
				if got[i] != float32(want[i]) {
					t.Fatalf("%s merged %s[%d] = %g, want %g", m, gn, i, got[i], want[i])
				}
			}
			if slices.Equal(got, f32s(w0)) {
				t.Errorf("%s: the merge left %s unchanged", m, gn)
			}
		}
	}
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
