package finetune

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/models/hf/hftest"
)

// tinyLlamaClassifier writes a random BF16 LlamaForSequenceClassification checkpoint (hidden
// 32, 2 layers, GQA; score.weight [2, 32] and no lm_head) and a WordPiece tokenizer.json over
// words into a temp folder.
func tinyLlamaClassifier(t *testing.T, words []string) string {
	t.Helper()
	dir := t.TempDir()
	writeWordPiece(t, dir, []string{"[PAD]", "[UNK]"}, words, false)
	const d, inter, layers, heads, kv, v = 32, 48, 2, 4, 2, 40
	cfg := map[string]any{
		"architectures": []string{"LlamaForSequenceClassification"}, "model_type": "llama",
		"vocab_size": v, "hidden_size": d, "intermediate_size": inter, "num_hidden_layers": layers,
		"num_attention_heads": heads, "num_key_value_heads": kv, "max_position_embeddings": 64,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": false,
		"pad_token_id": 0, "num_labels": 2,
	}
	ck := hftest.New(4)
	ck.Rand("model.embed_tokens.weight", 0, 0.5, v, d)
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		lin := func(name string, in, out int) { ck.Rand(p+name+".weight", 0, 1/math.Sqrt(float64(in)), out, in) }
		lin("self_attn.q_proj", d, d)
		lin("self_attn.k_proj", d, kv*d/heads)
		lin("self_attn.v_proj", d, kv*d/heads)
		lin("self_attn.o_proj", d, d)
		lin("mlp.gate_proj", d, inter)
		lin("mlp.up_proj", d, inter)
		lin("mlp.down_proj", inter, d)
		ck.Rand(p+"input_layernorm.weight", 1, 0.1, d)
		ck.Rand(p+"post_attention_layernorm.weight", 1, 0.1, d)
	}
	ck.Rand("model.norm.weight", 1, 0.1, d)
	ck.Rand("score.weight", 0, 0.1, 2, d)
	if err := ck.Write(dir, cfg, "BF16", 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLlamaClassification: "singlora train --task classify" on a LlamaForSequenceClassification
// folder (bf16 base, features at the last real token) learns a separable task with SingLoRA,
// writes the adapter and head.json, and the reloaded run (LoadClassifier) reproduces the
// end-of-training validation predictions.
func TestLlamaClassification(t *testing.T) {
	pos := []string{"great", "lovely", "superb", "fine"}
	neg := []string{"awful", "bad", "boring", "terrible"}
	fill := []string{"the", "film", "was", "really", "quite", "and"}
	var sb strings.Builder
	for i := 0; i < 64; i++ {
		w, label := pos[i%4], "pos"
		if i%2 == 1 {
			w, label = neg[(i/2)%4], "neg"
		}
		text := fmt.Sprintf("%s %s %s %s", fill[i%6], w, fill[(i+1)%6], fill[(i+3)%6])
		js, _ := json.Marshal(map[string]string{"text": text, "label": label})
		sb.Write(js)
		sb.WriteByte('\n')
	}
	modelDir := tinyLlamaClassifier(t, append(append(pos, neg...), fill...))
	tmp := t.TempDir()
	trainPath := filepath.Join(tmp, "train.jsonl")
	if err := os.WriteFile(trainPath, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Model, c.Task, c.Train, c.ValFraction = modelDir, "classify", trainPath, 0.25
	c.Method, c.LR, c.HeadLR, c.Steps, c.Batch, c.EvalEvery = "singlora", 1e-2, 1e-2, 60, 8, 20
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(tmp, "run")
	job, err := New(c, run, be, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := job.(*Job); !ok {
		t.Fatalf("--task classify on a Llama folder prepared a %T, want a classification *Job", job)
	}
	job.SetQuiet(true)
	s, err := job.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("validation %v after %d steps", s.Val, s.Steps)
	if s.Val["accuracy"] < 0.9 {
		t.Fatalf("validation accuracy %.3f on a separable task", s.Val["accuracy"])
	}
	for _, f := range []string{filepath.Join(AdapterDir, "adapter_model.safetensors"), HeadFile} {
		if _, err := os.Stat(filepath.Join(run, f)); err != nil {
			t.Fatal(err)
		}
	}
	task, err := LoadClassifier(run)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(run, PredictionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var texts, want []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var p Prediction
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatal(err)
		}
		texts, want = append(texts, p.Text), append(want, p.Pred)
	}
	p, err := task.NewPredictor(be)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Predict(task.Enc.Tokenize(texts))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if task.Labels[got[i]] != want[i] {
			t.Fatalf("%q: reloaded run predicts %s, end of training %s", texts[i], task.Labels[got[i]], want[i])
		}
	}
}
