package bert

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
	"github.com/singlora/singlora/models/hf/hftest"
)

const (
	tD, tInter, tHeads, tLayers, tVocab, tMaxPos = 48, 80, 4, 2, 50, 40
)

func tinyConfig(roberta bool, arch string) map[string]any {
	m := map[string]any{
		"architectures": []string{arch}, "model_type": "bert", "vocab_size": tVocab, "hidden_size": tD,
		"intermediate_size": tInter, "num_hidden_layers": tLayers, "num_attention_heads": tHeads,
		"max_position_embeddings": tMaxPos, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
		"pad_token_id": 0, "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1,
		"attention_probs_dropout_prob": 0.1, "id2label": map[string]string{"0": "NEG", "1": "NEU", "2": "POS"},
	}
	if roberta {
		m["model_type"] = "roberta"
		m["type_vocab_size"] = 1
		m["pad_token_id"] = 1
		m["layer_norm_eps"] = 1e-5
	}
	return m
}

// tinyCheckpoint writes encoder tensors under prefix, with a pooler and/or a classification head
// (which Load must ignore: classification trains its own head).
func tinyCheckpoint(m map[string]any, prefix string, pooler, classifier bool, seed uint64) *hftest.Checkpoint {
	ck := hftest.New(seed)
	types := m["type_vocab_size"].(int)
	roberta := m["model_type"] == "roberta"
	e := prefix + "embeddings."
	ck.Rand(e+"word_embeddings.weight", 0, 0.5, tVocab, tD)
	ck.Rand(e+"position_embeddings.weight", 0, 0.5, tMaxPos, tD)
	ck.Rand(e+"token_type_embeddings.weight", 0, 0.5, types, tD)
	ln := func(n string) {
		ck.Rand(n+".weight", 1, 0.2, tD)
		ck.Rand(n+".bias", 0, 0.2, tD)
	}
	lin := func(n string, in, out int) {
		ck.Rand(n+".weight", 0, 1/math.Sqrt(float64(in)), out, in)
		ck.Rand(n+".bias", 0, 0.1, out)
	}
	ln(e + "LayerNorm")
	for i := 0; i < tLayers; i++ {
		p := fmt.Sprintf("%sencoder.layer.%d.", prefix, i)
		lin(p+"attention.self.query", tD, tD)
		lin(p+"attention.self.key", tD, tD)
		lin(p+"attention.self.value", tD, tD)
		lin(p+"attention.output.dense", tD, tD)
		ln(p + "attention.output.LayerNorm")
		lin(p+"intermediate.dense", tD, tInter)
		lin(p+"output.dense", tInter, tD)
		ln(p + "output.LayerNorm")
	}
	if pooler {
		lin(prefix+"pooler.dense", tD, tD)
	}
	if classifier {
		if roberta {
			lin("classifier.dense", tD, tD)
			lin("classifier.out_proj", tD, 3)
		} else {
			lin("classifier", tD, 3)
		}
	}
	// A pre-training head tensor the classifier model ignores, as real checkpoints have.
	ck.Rand("cls.predictions.bias", 0, 1, tVocab)
	return ck
}

// reference is the float64 forward of one sequence from transformers' BertEmbeddings /
// RobertaEmbeddings (create_position_ids_from_input_ids), BertSelfAttention (eager, additive
// key mask), BertSelfOutput/BertOutput (post-LN) and BertPooler. It returns the last hidden
// states [L, D] and the pooled output (or nil).
func reference(c *Config, ck *hftest.Checkpoint, ids, types, mask []int) (hidden, pooled []float64) {
	L, D, H := len(ids), c.Hidden, c.Heads
	hd := D / H
	p := c.Prefix
	g := ck.Get
	pos := make([]int, L)
	cnt := 0
	for i := range ids {
		pos[i] = i
		if c.IsRoBERTa() {
			if ids[i] != c.PadTokenID {
				cnt++
				pos[i] = cnt + c.PadTokenID
			} else {
				pos[i] = c.PadTokenID
			}
		}
	}
	x := make([]float64, L*D)
	for i := 0; i < L; i++ {
		for d := 0; d < D; d++ {
			x[i*D+d] = g(p + "embeddings.word_embeddings.weight")[ids[i]*D+d] +
				g(p + "embeddings.position_embeddings.weight")[pos[i]*D+d] +
				g(p + "embeddings.token_type_embeddings.weight")[types[i]*D+d]
		}
	}
	x = hftest.LayerNorm(x, L, D, g(p+"embeddings.LayerNorm.weight"), g(p+"embeddings.LayerNorm.bias"), c.LayerNormEps)
	for l := 0; l < c.Layers; l++ {
		lp := fmt.Sprintf("%sencoder.layer.%d.", p, l)
		lin := func(n string, in []float64, din, dout int) []float64 {
			return hftest.Linear(in, L, din, g(lp+n+".weight"), dout, g(lp+n+".bias"))
		}
		q := lin("attention.self.query", x, D, D)
		k := lin("attention.self.key", x, D, D)
		v := lin("attention.self.value", x, D, D)
		ctx := make([]float64, L*D)
		for h := 0; h < H; h++ {
			o := hftest.Attention(L, L, hd,
				func(i, d int) float64 { return q[i*D+h*hd+d] },
				func(j, d int) float64 { return k[j*D+h*hd+d] },
				func(j, d int) float64 { return v[j*D+h*hd+d] },
				1/math.Sqrt(float64(hd)), func(i, j int) bool { return mask[j] != 0 })
			for i := 0; i < L; i++ {
				copy(ctx[i*D+h*hd:], o[i*hd:(i+1)*hd])
			}
		}
		a := hftest.LayerNorm(hftest.Add(lin("attention.output.dense", ctx, D, D), x), L, D,
			g(lp+"attention.output.LayerNorm.weight"), g(lp+"attention.output.LayerNorm.bias"), c.LayerNormEps)
		f := hftest.Act(c.HiddenAct, lin("intermediate.dense", a, D, c.Intermediate))
		x = hftest.LayerNorm(hftest.Add(lin("output.dense", f, c.Intermediate, D), a), L, D,
			g(lp+"output.LayerNorm.weight"), g(lp+"output.LayerNorm.bias"), c.LayerNormEps)
	}
	cls := x[:D]
	if c.HasPooler {
		pooled = hftest.Act("tanh", hftest.Linear(cls, 1, D, g(p+"pooler.dense.weight"), D, g(p+"pooler.dense.bias")))
	}
	return x, pooled
}

func be(t testing.TB) compute.Backend {
	b, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func toTensor(rows [][]int) *tensors.Tensor {
	v := make([]int32, 0, len(rows)*len(rows[0]))
	for _, r := range rows {
		for _, x := range r {
			v = append(v, int32(x))
		}
	}
	return tensors.FromFlatDataAndDimensions(v, len(rows), len(rows[0]))
}

func TestMatchesReference(t *testing.T) {
	cases := []struct {
		name, dtype, arch, prefix string
		roberta                   bool
		shards                    int
		pooler, classifier        bool
		act                       string
	}{
		{"bert-cls-f32", "F32", "BertForSequenceClassification", "bert.", false, 1, true, true, "gelu"},
		{"roberta-cls-bf16-sharded", "BF16", "RobertaForSequenceClassification", "roberta.", true, 2, false, true, "gelu"},
		{"bertmodel-noprefix-f16-gelu_new", "F16", "BertModel", "", false, 1, true, false, "gelu_new"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyConfig(tc.roberta, tc.arch)
			m["hidden_act"] = tc.act
			ck := tinyCheckpoint(m, tc.prefix, tc.pooler, tc.classifier, 11)
			dir := t.TempDir()
			if err := ck.Write(dir, m, tc.dtype, tc.shards); err != nil {
				t.Fatal(err)
			}
			store := model.NewStore()
			c, err := Load(dir, store)
			if err != nil {
				t.Fatal(err)
			}
			if c.Prefix != tc.prefix || c.HasPooler != tc.pooler {
				t.Fatalf("detected prefix %q pooler %v", c.Prefix, c.HasPooler)
			}
			for v := range store.IterVariables() {
				if strings.HasPrefix(v.Path(), "/classifier/") {
					t.Errorf("the checkpoint's classification head was loaded: %s", v.Path())
				}
			}
			pad := c.PadTokenID
			ids := [][]int{{2, 17, 33, 8, 49, 12, 5, 3}, {2, 40, 9, 3, pad, pad, pad, pad}}
			types := [][]int{{0, 0, 0, 0, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 0, 0, 0}}
			if tc.roberta {
				types[0] = make([]int, 8)
			}
			mask := [][]int{{1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 0, 0}}
			exec, err := model.NewExec(be(t), store, func(scope *model.Scope, in []*Node) []*Node {
				h := Encode(c, nil, scope, in[0], in[1], in[2])
				out := []*Node{h}
				if c.HasPooler {
					out = append(out, Pooled(c, nil, scope, h))
				}
				return out
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := exec.Call(toTensor(ids), toTensor(types), toTensor(mask))
			if err != nil {
				t.Fatal(err)
			}
			var wantH, wantP []float64
			for i := range ids {
				h, p := reference(c, ck, ids[i], types[i], mask[i])
				wantH, wantP = append(wantH, h...), append(wantP, p...)
			}
			check := func(what string, got *tensors.Tensor, want []float64) {
				rel, abs := hftest.MaxRelErr(tensors.MustCopyFlatData[float32](got), want)
				t.Logf("%s %s: max |Δ| %.3g, relative %.3g", tc.name, what, abs, rel)
				if rel > 1e-4 {
					t.Errorf("%s differs from the float64 reference: relative error %.3g", what, rel)
				}
			}
			check("hidden states", res[0], wantH)
			if c.HasPooler {
				check("pooled", res[1], wantP)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		edit       func(m map[string]any, ck *hftest.Checkpoint)
	}{
		{"position_embedding_type", `"position_embedding_type": "relative_key"`, func(m map[string]any, ck *hftest.Checkpoint) {
			m["position_embedding_type"] = "relative_key"
		}},
		{"hidden_act", `"hidden_act": "relu2"`, func(m map[string]any, ck *hftest.Checkpoint) { m["hidden_act"] = "relu2" }},
		{"arch", `"DistilBertModel"`, func(m map[string]any, ck *hftest.Checkpoint) {
			delete(m, "model_type")
			m["architectures"] = []string{"DistilBertModel"}
		}},
		{"shape", `"bert.encoder.layer.1.intermediate.dense.weight" has shape [81 48]`, func(m map[string]any, ck *hftest.Checkpoint) {
			ck.Rand("bert.encoder.layer.1.intermediate.dense.weight", 0, 1, 81, 48)
		}},
		{"missing", `missing tensor "bert.encoder.layer.0.output.LayerNorm.bias"`, func(m map[string]any, ck *hftest.Checkpoint) {
			ck.Delete("bert.encoder.layer.0.output.LayerNorm.bias")
		}},
		{"layout", "none of the tensors", func(m map[string]any, ck *hftest.Checkpoint) {
			ck.Delete("bert.embeddings.word_embeddings.weight")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyConfig(false, "BertForSequenceClassification")
			ck := tinyCheckpoint(m, "bert.", true, true, 1)
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
