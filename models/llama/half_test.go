package llama

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/lm"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// TestHalfBaseMatchesReference loads tiny BF16 and F16 checkpoints with a 16-bit base (the
// matrices stay in the checkpoint's dtype, norms become float32) and compares the logits with the
// float64 reference forward: in widen mode the reference is the plain one (the weights are the
// checkpoint's 16-bit values, the activations float32), in cast mode the reference rounds every
// product's input to the weight's dtype first, as the mode does.
func TestHalfBaseMatchesReference(t *testing.T) {
	defer func(m fastops.HalfMode) { fastops.DefaultHalfMode = m }(fastops.DefaultHalfMode)
	for _, tc := range []struct {
		ckpt  string
		base  hf.BaseDType
		dtype dtypes.DType
	}{
		{"BF16", hf.BaseAuto, dtypes.BFloat16},
		{"F16", hf.BaseAuto, dtypes.Float16},
		{"F32", hf.BaseBF16, dtypes.BFloat16}, // converted on load
	} {
		m := tinyConfig()
		m["attention_bias"] = true
		dir, ck := writeTiny(t, m, tc.ckpt, 2, 5)
		if tc.ckpt == "F32" { // the reference holds what the conversion to bf16 keeps
			for name, v := range ck.Values {
				if len(ck.Shapes[name]) >= 2 {
					for i := range v {
						v[i] = float64(bfloat16.FromFloat64(v[i]).Float32())
					}
				}
			}
		}
		round := func(x float64) float64 {
			if tc.dtype == dtypes.Float16 {
				return float64(float16.FromFloat64(x).Float32())
			}
			return float64(bfloat16.FromFloat64(x).Float32())
		}
		for _, mode := range []fastops.HalfMode{fastops.HalfWiden, fastops.HalfCast} {
			t.Run(fmt.Sprintf("%s-as-%s/%s", tc.ckpt, tc.base, mode), func(t *testing.T) {
				fastops.DefaultHalfMode = mode
				store := model.NewStore()
				c, err := LoadBase(dir, store, tc.base)
				if err != nil {
					t.Fatal(err)
				}
				for path, want := range map[string]dtypes.DType{
					"/model/layers/0/self_attn/q_proj/weight": tc.dtype, "/model/embed_tokens/weight": tc.dtype,
					"/lm_head/weight": tc.dtype, "/model/layers/0/self_attn/q_proj/bias": dtypes.Float32,
					"/model/norm/weight": dtypes.Float32,
				} {
					if got := store.GetVariable(path).Shape().DType; got != want {
						t.Errorf("%s held as %s, want %s", path, got, want)
					}
				}
				ids := [][]int{{1, 5, 9, 33, 60, 7, 7, 2, 14, 40}, {1, 8, 17, 3, 0, 0, 0, 0, 0, 0}}
				mask := [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 0, 0, 0, 0}}
				got := runLogits(t, c, store, ids, mask)
				var want []float64
				for i := range ids {
					r := round
					if mode == fastops.HalfWiden {
						r = nil
					}
					want = append(want, refLogitsRounded(c, ck, ids[i], mask[i], r)...)
				}
				rel, abs := hftest.MaxRelErr(got, want)
				t.Logf("max |Δlogit| %.3g, relative to max |logit| %.3g", abs, rel)
				if mode == fastops.HalfWiden && rel > 1e-4 {
					t.Fatalf("logits differ from the float64 reference: relative error %.3g", rel)
				}
				if mode == fastops.HalfCast {
					// The Go activations differ from the reference's by float32 noise, so now and
					// then one rounds to the neighbouring 16-bit value: allow 2 ulps of f16 (1e-3).
					// Without the rounding in the reference the error is what the bound must
					// exclude (checked: ≥ 4× larger).
					var plain []float64
					for i := range ids {
						plain = append(plain, refLogits(c, ck, ids[i], mask[i])...)
					}
					prel, _ := hftest.MaxRelErr(got, plain)
					t.Logf("against the unrounded reference: relative %.3g", prel)
					if rel > 1e-3 || prel < 4*rel {
						t.Fatalf("cast-mode logits: relative error %.3g against the rounding reference, %.3g against the plain one", rel, prel)
					}
				}
			})
		}
	}
}

// TestHalfBaseTrainsLikeF32 fine-tunes the same tiny BF16 checkpoint with SingLoRA three ways —
// the base held in float32, in bf16 with the widen product, in bf16 with the cast product — and
// compares the completion-loss curves. Widen computes in float32 from the same 16-bit weights,
// so it must follow the float32 run to float32 rounding; cast rounds activations to bf16 at
// every product, and the test bounds how far that moves the curve (the numbers are in
// PERFORMANCE.md): every run must learn (final loss < 10% of the first), cast must end within 1%
// of float32's final loss, and its curve is a guard against gross errors within 5% at every step
// (measured: 0.08% at the end, 2.1% at step 30, where the loss falls fastest and the two
// trajectories are briefly out of step — cast lower there).
func TestHalfBaseTrainsLikeF32(t *testing.T) {
	defer func(m fastops.HalfMode) { fastops.DefaultHalfMode = m }(fastops.DefaultHalfMode)
	m := tinyConfig()
	m["vocab_size"], m["hidden_size"], m["intermediate_size"] = 40, 32, 48
	m["num_attention_heads"], m["num_key_value_heads"] = 4, 2
	dir, _ := writeTiny(t, m, "BF16", 1, 21)
	prompts := [][]int{{1, 5, 6}, {1, 7, 8, 9}, {1, 10}, {1, 11, 5, 12}}
	completions := [][]int{{20, 21, 22, 2}, {23, 24, 2}, {25, 26, 27, 28, 2}, {29, 21, 30, 2}}
	ids, targets, mask, err := lm.CausalBatch(prompts, completions, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	const steps = 60
	curve := func(base hf.BaseDType, mode fastops.HalfMode) []float64 {
		fastops.DefaultHalfMode = mode
		store := model.NewStore()
		c, err := LoadBase(dir, store, base)
		if err != nil {
			t.Fatal(err)
		}
		cfg := peft.DefaultConfig(peft.SingLoRA)
		cfg.Targets, cfg.RampSteps, cfg.Seed = []string{"all-linear"}, 10, 3
		inj, err := peft.Inject(cfg, Linears(c))
		if err != nil {
			t.Fatal(err)
		}
		if err := inj.Attach(store); err != nil {
			t.Fatal(err)
		}
		opt := optim.DefaultAdamW(1e-2)
		opt.WeightDecay = 0
		opt.GroupOf = inj.OptimizerGroups(0)
		st, err := train.NewStepper(be(t), store, LossFn(c, inj), opt, 1)
		if err != nil {
			t.Fatal(err)
		}
		var losses []float64
		for s := 0; s < steps; s++ {
			res, err := st.Step([]*tensors.Tensor{ids, targets, mask})
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, res.Loss)
		}
		return losses
	}
	f32 := curve(hf.BaseF32, fastops.HalfCast)
	widen := curve(hf.BaseBF16, fastops.HalfWiden)
	cast := curve(hf.BaseBF16, fastops.HalfCast)
	worstWiden, worstCast, worstAt := 0.0, 0.0, 0
	for s := range f32 {
		worstWiden = max(worstWiden, math.Abs(widen[s]-f32[s])/f32[s])
		if d := math.Abs(cast[s]-f32[s]) / f32[s]; d > worstCast {
			worstCast, worstAt = d, s
		}
	}
	t.Logf("cast's largest relative difference at step %d: f32 %.5f, cast %.5f", worstAt+1, f32[worstAt], cast[worstAt])
	for _, s := range []int{0, 9, 19, 39, steps - 1} {
		t.Logf("step %2d: loss f32 %.5f  bf16-widen %.5f  bf16-cast %.5f", s+1, f32[s], widen[s], cast[s])
	}
	t.Logf("largest relative difference from the f32 run: widen %.2g, cast %.2g", worstWiden, worstCast)
	for name, c := range map[string][]float64{"f32": f32, "widen": widen, "cast": cast} {
		if !(c[steps-1] < 0.1*c[0]) {
			t.Errorf("%s run did not learn: loss %.4f → %.4f", name, c[0], c[steps-1])
		}
	}
	if worstWiden > 1e-4 {
		t.Errorf("bf16 widen run departs from the f32 run by %.3g (relative), want float32 rounding (≤ 1e-4)", worstWiden)
	}
	if end := math.Abs(cast[steps-1]-f32[steps-1]) / f32[steps-1]; end > 0.01 || worstCast > 0.05 {
		t.Errorf("bf16 cast run departs from the f32 run: final loss by %.3g, at worst by %.3g (relative); want ≤ 1%% and ≤ 5%%", end, worstCast)
	}
}

// TestHalfBaseGenerates: greedy generation from a BF16 checkpoint held in bf16 (the KV-cached
// graph: one row per token, so cast mode) produces the tokens of the float64 reference that
// rounds every product's input to bf16 as cast mode does.
func TestHalfBaseGenerates(t *testing.T) {
	m := tinyConfig()
	dir, ck := writeTiny(t, m, "BF16", 1, 5)
	store := model.NewStore()
	c, err := LoadBase(dir, store, hf.BaseAuto)
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
	round := func(x float64) float64 { return float64(bfloat16.FromFloat64(x).Float32()) }
	seq := append([]int(nil), prompt...)
	for i := 0; i < n; i++ {
		logits := refLogitsRounded(c, ck, seq, nil, round)
		seq = append(seq, lm.Argmax(toFloat32(logits[(len(seq)-1)*c.VocabSize:])))
	}
	if fmt.Sprint(cached) != fmt.Sprint(seq[len(prompt):]) {
		t.Fatalf("bf16 base generates %v, the rounding reference %v", cached, seq[len(prompt):])
	}
}

func toFloat32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}
