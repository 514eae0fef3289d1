package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/models/use"
)

// tinyLlama writes a random 1-layer Llama folder that reads at most 32 positions.
func tinyLlama(t *testing.T) string {
	const d, inter, v = 16, 24, 20
	ck := hftest.New(4)
	ck.Rand("model.embed_tokens.weight", 0, 1, v, d)
	for _, n := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
		ck.Rand("model.layers.0.self_attn."+n+".weight", 0, 0.3, d, d)
	}
	ck.Rand("model.layers.0.mlp.gate_proj.weight", 0, 0.3, inter, d)
	ck.Rand("model.layers.0.mlp.up_proj.weight", 0, 0.3, inter, d)
	ck.Rand("model.layers.0.mlp.down_proj.weight", 0, 0.3, d, inter)
	for _, n := range []string{"model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm", "model.norm"} {
		ck.Rand(n+".weight", 1, 0.1, d)
	}
	dir := t.TempDir()
	cfg := map[string]any{"model_type": "llama", "vocab_size": v, "hidden_size": d, "intermediate_size": inter,
		"num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32, "tie_word_embeddings": true}
	if err := ck.Write(dir, cfg, "F32", 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestModelWorkload: the model preset loads its model through the registry and times a step of
// the task the registry gives it (causal-LM for a Llama folder, at the positions it reads;
// classification for the built-in encoder), and refuses a missing or unknown model naming the
// known ones.
func TestModelWorkload(t *testing.T) {
	defer func(m string) { Model = m }(Model)
	Model = tinyLlama(t)
	ws, err := Workloads("model", []string{"lora"})
	if err != nil || len(ws) != 1 || ws[0].Name != "model/lora" {
		t.Fatalf("Workloads(model): %v, %v", ws, err)
	}
	r, err := Run(ws[0], 2, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	// 8·32 tokens through 4·16·16 + 3·16·24 weights: 2·256·2176 forward; ×2 with the input gradients.
	want := fmt.Sprintf("%s llama (models/llama) causal-lm B=8 L=32, 7 linear layers r=8", Model)
	if r.Shape != want || r.MsMedian <= 0 || r.GFLOPPerStep != 2*2*256*2176/1e9 {
		t.Errorf("result shape %q, %.1f ms, %g GFLOP; want %q", r.Shape, r.MsMedian, r.GFLOPPerStep, want)
	}
	if f, err := Find("model/singlora"); err != nil || f.Method != "singlora" {
		t.Errorf("Find(model/singlora) = %+v, %v", f, err)
	}

	for _, tc := range []struct{ model, want string }{
		{"", "no model given"},
		{t.TempDir(), "no config.json"},
	} {
		Model = tc.model
		if _, err := ModelWorkload("lora"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("model %q: error %v, want %q", tc.model, err, tc.want)
		}
	}
	Model = "nosuch-model"
	if _, err := ModelWorkload("lora"); err == nil || !strings.Contains(err.Error(), "built-in model (use)") {
		t.Errorf("unknown model: %v", err)
	}

	if !use.Available() || testing.Short() {
		t.Skip("USE-Lite not fetched (singlora fetch), or -short")
	}
	Model = "use"
	w, err := ModelWorkload("singlora")
	if err != nil {
		t.Fatal(err)
	}
	if r, err = Run(w, 1, 1, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Shape, "use use (models/use) classify B=8 L=") || r.MsMedian <= 0 {
		t.Errorf("use: result %+v", r)
	}
}
