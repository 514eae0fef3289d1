package llama

import (
	"fmt"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/dtypes/float16"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/hf/hftest"
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
