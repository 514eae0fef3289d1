package finetune

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/models/hf/hftest"
)

// tinyLlama writes a random Llama checkpoint (hidden 32, 2 layers, GQA) and a WordPiece
// tokenizer.json over the words of the test data into a temp folder.
func tinyLlama(t *testing.T, words []string) string {
	t.Helper()
	dir := t.TempDir()
	writeWordPiece(t, dir, []string{"[PAD]", "[UNK]"}, words, false)
	const d, inter, layers, heads, kv, v = 32, 48, 2, 4, 2, 40
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"vocab_size": v, "hidden_size": d, "intermediate_size": inter, "num_hidden_layers": layers,
		"num_attention_heads": heads, "num_key_value_heads": kv, "max_position_embeddings": 64,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": false,
	}
	ck := hftest.New(3)
	ck.Rand("model.embed_tokens.weight", 0, 0.5, v, d)
	hd := d / heads
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		lin := func(name string, in, out int) { ck.Rand(p+name+".weight", 0, 1/math.Sqrt(float64(in)), out, in) }
		lin("self_attn.q_proj", d, heads*hd)
		lin("self_attn.k_proj", d, kv*hd)
		lin("self_attn.v_proj", d, kv*hd)
		lin("self_attn.o_proj", heads*hd, d)
		lin("mlp.gate_proj", d, inter)
		lin("mlp.up_proj", d, inter)
		lin("mlp.down_proj", inter, d)
		ck.Rand(p+"input_layernorm.weight", 1, 0.1, d)
		ck.Rand(p+"post_attention_layernorm.weight", 1, 0.1, d)
	}
	ck.Rand("model.norm.weight", 1, 0.1, d)
	ck.Rand("lm_head.weight", 0, 1/math.Sqrt(float64(d)), v, d)
	if err := ck.Write(dir, cfg, "BF16", 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCausalLMFineTune: "singlora train" on a Hugging Face Llama folder with prompt/completion
// data (the task inferred from the folder) lowers the completion loss with SingLoRA and saves
// the adapter; validation loss is reported.
func TestCausalLMFineTune(t *testing.T) {
	for _, base := range []string{"auto", "f32"} { // the BF16 checkpoint held in bf16, and widened to float32 on load
		t.Run(base, func(t *testing.T) { causalLMFineTune(t, base) })
	}
}

func causalLMFineTune(t *testing.T, base string) {
	pairs := [][2]string{
		{"the fox", "jumps over the dog"}, {"a cat", "sleeps on the mat"}, {"the bird", "sings in the tree"},
		{"a fish", "swims in the sea"}, {"the dog", "barks at the fox"}, {"a cow", "eats the grass"},
	}
	var words []string
	var sb strings.Builder
	for i := 0; i < 4; i++ {
		for _, p := range pairs {
			js, _ := json.Marshal(map[string]string{"prompt": p[0], "completion": p[1]})
			sb.Write(js)
			sb.WriteByte('\n')
		}
	}
	for _, p := range pairs {
		words = append(words, strings.Fields(p[0]+" "+p[1])...)
	}
	modelDir := tinyLlama(t, words)
	tmp := t.TempDir()
	trainPath := filepath.Join(tmp, "train.jsonl")
	if err := os.WriteFile(trainPath, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Model, c.Train, c.Val, c.Test = modelDir, trainPath, trainPath, trainPath
	c.Method, c.LR, c.Steps, c.Batch, c.EvalEvery = "singlora", 1e-2, 60, 8, 30
	c.BaseDType = base
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(tmp, "run")
	job, err := New(c, run, be, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	job.SetQuiet(true)
	want := dtypes.BFloat16
	if base == "f32" {
		want = dtypes.Float32
	}
	if got := job.(*CausalJob).Store.GetVariable("/model/layers/0/self_attn/q_proj/weight").Shape().DType; got != want {
		t.Fatalf("--base-dtype %s: q_proj held as %s, want %s", base, got, want)
	}
	s, err := job.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var losses []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct{ Loss float64 }
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, m.Loss)
	}
	first, last := losses[0], losses[len(losses)-1]
	t.Logf("completion loss %.3f → %.3f; validation %v", first, last, s.Val)
	if !(last < 0.5*first) {
		t.Fatalf("completion loss did not fall: %.3f → %.3f", first, last)
	}
	if s.Val["perplexity"] <= 0 || s.Val["loss"] > first {
		t.Fatalf("validation metrics %v", s.Val)
	}
	// The test set is the same file, scored with the same (best) weights.
	if s.Test["loss"] != s.Val["loss"] || s.Test["perplexity"] != s.Val["perplexity"] {
		t.Fatalf("test metrics %v on the validation file, want %v", s.Test, s.Val)
	}
	if _, err := os.Stat(filepath.Join(run, AdapterDir, "adapter_model.safetensors")); err != nil {
		t.Fatal(err)
	}
}

// TestBaseDTypeValidated: --base-dtype accepts auto/bf16/f16/f32 (and their long names), and a
// 16-bit base is refused for a method that trains the base weights.
func TestBaseDTypeValidated(t *testing.T) {
	for _, tc := range []struct{ base, method, want string }{
		{"bf16", "singlora", ""}, {"float16", "lora", ""}, {"auto", "full", ""}, {"f32", "full", ""},
		{"int8", "singlora", `base dtype "int8": want one of auto, bf16, f16, f32`},
		{"bf16", "full", "method full trains the base weights, which must be float32 (use auto or f32)"},
	} {
		c := Default()
		c.Train, c.Method, c.BaseDType = "train.jsonl", tc.method, tc.base
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("--base-dtype %s --method %s: error %v, want %q", tc.base, tc.method, err, tc.want)
		}
	}
}
