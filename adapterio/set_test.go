package adapterio_test

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/llama"
	"github.com/singlora/singlora/peft"
)

// setLlama writes a random 2-layer Llama (GQA, tied embeddings) with a classification-style
// extra module ("score", saved by one adapter as modules_to_save) and returns its folder.
func setLlama(t *testing.T) string {
	t.Helper()
	const d, inter, v, heads, kvh = 16, 24, 20, 4, 2
	hd := d / heads
	ck := hftest.New(5)
	ck.Rand("model.embed_tokens.weight", 0, 1, v, d)
	for l := range 2 {
		p := "model.layers." + string(rune('0'+l)) + "."
		for _, m := range []struct {
			n       string
			in, out int
		}{{"self_attn.q_proj", d, heads * hd}, {"self_attn.k_proj", d, kvh * hd}, {"self_attn.v_proj", d, kvh * hd},
			{"self_attn.o_proj", heads * hd, d}, {"mlp.gate_proj", d, inter}, {"mlp.up_proj", d, inter}, {"mlp.down_proj", inter, d}} {
			ck.Rand(p+m.n+".weight", 0, 0.3, m.out, m.in)
		}
		ck.Rand(p+"input_layernorm.weight", 1, 0.1, d)
		ck.Rand(p+"post_attention_layernorm.weight", 1, 0.1, d)
	}
	ck.Rand("model.norm.weight", 1, 0.1, d)
	cfg := map[string]any{"model_type": "llama", "architectures": []string{"LlamaForCausalLM"}, "vocab_size": v,
		"hidden_size": d, "intermediate_size": inter, "num_hidden_layers": 2, "num_attention_heads": heads,
		"num_key_value_heads": kvh, "tie_word_embeddings": true, "eos_token_id": 19, "hidden_act": "silu"}
	dir := t.TempDir()
	if err := ck.Write(dir, cfg, "F32", 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// logits runs the Llama forward for fixed token ids with inj (nil: the plain model).
func logits(t *testing.T, c *llama.Config, store *model.Store, inj *peft.Injection) []float32 {
	t.Helper()
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	ids := tensors.FromFlatDataAndDimensions([]int32{1, 4, 7, 2, 9, 3}, 2, 3)
	mask := tensors.FromFlatDataAndDimensions([]bool{true, true, true, true, true, false}, 2, 3)
	out, err := model.CallOnce(be, store, func(scope *model.Scope, ids, mask *Node) *Node {
		return llama.Logits(c, inj, scope, ids, mask)
	}, ids, mask)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](out)
}

// makeAdapter attaches cfg to a fresh copy of the model, gives every adapter tensor non-zero
// values and saves it into dir.
func makeAdapter(t *testing.T, modelDir, dir string, cfg peft.Config) {
	t.Helper()
	store := model.NewStore()
	c, err := llama.Load(modelDir, store)
	if err != nil {
		t.Fatal(err)
	}
	inj, err := peft.Inject(cfg, llama.Linears(c))
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	i := 0
	for v := range store.IterVariables() {
		if !peft.IsAdapterVariable(v.Path()) && !inj.SavesVariable(v.Path()) {
			continue
		}
		vals, err := peft.Float32Values(v)
		if err != nil {
			t.Fatal(err)
		}
		for j := range vals {
			i++
			vals[j] += float32(0.3 * math.Sin(float64(i)*0.7+float64(cfg.Seed)))
		}
		if err := v.SetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := adapterio.SaveFromStore(dir, inj, store, modelDir); err != nil {
		t.Fatal(err)
	}
}

// alone returns the logits of the model with only the adapter in dir loaded (the usual
// LoadIntoStore path on a fresh store).
func alone(t *testing.T, modelDir, dir string) []float32 {
	t.Helper()
	store := model.NewStore()
	c, err := llama.Load(modelDir, store)
	if err != nil {
		t.Fatal(err)
	}
	inj, err := adapterio.LoadIntoStore(dir, store, llama.Linears(c))
	if err != nil {
		t.Fatal(err)
	}
	return logits(t, c, store, inj)
}

// TestSetSwitchesAdapters: two adapters (SingLoRA on attention with per-module ranks; LoRA on the
// MLP with lora_only biases — Llama has none, so all-linear LoRA here trains the model's norm as
// modules_to_save instead) loaded into one model: activating each gives exactly that adapter's
// logits alone, switching back and forth changes nothing, and with none active the logits and
// every variable are bit-identical to the plain model's.
func TestSetSwitchesAdapters(t *testing.T) {
	modelDir := setLlama(t)
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	ca := peft.DefaultConfig(peft.SingLoRA)
	ca.Targets, ca.Rank, ca.Alpha, ca.Seed = []string{"q_proj", "k_proj", "v_proj", "o_proj"}, 2, 4, 1
	ca.RankPattern = peft.Pattern[int]{{Key: "o_proj", Value: 3}}
	makeAdapter(t, modelDir, dirA, ca)
	cb := peft.DefaultConfig(peft.LoRA)
	cb.Targets, cb.Rank, cb.Alpha, cb.Seed = []string{"gate_proj", "up_proj", "down_proj"}, 4, 8, 2
	cb.ModulesToSave = []string{"model.norm"}
	makeAdapter(t, modelDir, dirB, cb)
	wantA, wantB := alone(t, modelDir, dirA), alone(t, modelDir, dirB)

	store := model.NewStore()
	c, err := llama.Load(modelDir, store)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string][]float32 {
		out := map[string][]float32{}
		for v := range store.IterVariables() {
			if v.DType().IsFloat() {
				vals, _ := peft.Float32Values(v)
				out[v.Path()] = vals
			}
		}
		return out
	}
	plain := logits(t, c, store, nil)
	base := snapshot()
	set := adapterio.NewSet(store, llama.Linears(c))
	if err := set.Add("a", dirA); err != nil {
		t.Fatal(err)
	}
	if err := set.Add("b", dirB); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(); len(got) != len(base) {
		t.Fatalf("Add changed the store: %d variables, base %d", len(got), len(base))
	}
	for _, step := range []struct {
		name string
		want []float32
	}{{"a", wantA}, {"b", wantB}, {"", plain}, {"b", wantB}, {"a", wantA}, {"a", wantA}, {"", plain}} {
		inj, err := set.Activate(step.name)
		if err != nil {
			t.Fatal(err)
		}
		if (inj == nil) != (step.name == "") || set.Active() != step.name {
			t.Fatalf("Activate(%q): injection %v, active %q", step.name, inj != nil, set.Active())
		}
		if got := logits(t, c, store, inj); !slices.Equal(got, step.want) {
			t.Fatalf("active %q: logits differ from the adapter alone / the plain model (first %v vs %v)", step.name, got[:3], step.want[:3])
		}
	}
	if slices.Equal(wantA, plain) || slices.Equal(wantB, plain) || slices.Equal(wantA, wantB) {
		t.Fatal("the adapters have no visible effect: the test would prove nothing")
	}
	after := snapshot()
	for p, v := range base {
		if !slices.Equal(after[p], v) {
			t.Fatalf("after deactivating, %s differs from the base", p)
		}
	}
	if len(after) != len(base) {
		var extra []string
		for p := range after {
			if _, ok := base[p]; !ok {
				extra = append(extra, p)
			}
		}
		t.Fatalf("after deactivating, the store has extra variables %v", extra)
	}

	// Errors: an unknown name, a duplicate, an adapter for another model; Delete.
	if _, err := set.Activate("c"); err == nil || !strings.Contains(err.Error(), "loaded: a, b") {
		t.Fatalf("unknown adapter: %v", err)
	}
	if err := set.Add("a", dirB); err == nil || !strings.Contains(err.Error(), "loaded already") {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := set.Add("x=y", dirB); err == nil {
		t.Fatal("a name with '=' accepted")
	}
	if _, err := set.Activate("b"); err != nil {
		t.Fatal(err)
	}
	if err := set.Delete("b"); err != nil {
		t.Fatal(err)
	}
	if set.Active() != "" || !slices.Equal(set.Names(), []string{"a"}) {
		t.Fatalf("after Delete: active %q, names %v", set.Active(), set.Names())
	}
	if got := logits(t, c, store, nil); !slices.Equal(got, plain) {
		t.Fatal("deleting the active adapter did not restore the plain model")
	}
}

func TestParseNamed(t *testing.T) {
	for _, c := range []struct{ in, name, dir string }{
		{"a=runs/x/adapter", "a", "runs/x/adapter"},
		{"runs/x/adapter", "adapter", "runs/x/adapter"},
		{"runs/x/adapter/", "adapter", "runs/x/adapter/"},
		{"./weird=dir/a", "a", "./weird=dir/a"},
	} {
		if n, d := adapterio.ParseNamed(c.in); n != c.name || d != c.dir {
			t.Errorf("ParseNamed(%q) = %q, %q; want %q, %q", c.in, n, d, c.name, c.dir)
		}
	}
}
