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

// tinyBERT writes a random BERT checkpoint (hidden 32, 2 layers, with pooler) and a WordPiece
// tokenizer.json with [CLS]/[SEP] post-processing over words.
func tinyBERT(t *testing.T, words []string) string {
	t.Helper()
	dir := t.TempDir()
	writeWordPiece(t, dir, []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]"}, words, true)
	const d, inter, layers, v, pos = 32, 48, 2, 48, 64
	cfg := map[string]any{"architectures": []string{"BertModel"}, "model_type": "bert", "vocab_size": v,
		"hidden_size": d, "num_hidden_layers": layers, "num_attention_heads": 4, "intermediate_size": inter,
		"hidden_act": "gelu", "max_position_embeddings": pos, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
		"pad_token_id": 0, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
	ck := hftest.New(5)
	ln := func(p string) {
		ck.Rand(p+".weight", 1, 0.1, d)
		ck.Rand(p+".bias", 0, 0.1, d)
	}
	lin := func(p string, in, out int) {
		ck.Rand(p+".weight", 0, 1/math.Sqrt(float64(in)), out, in)
		ck.Rand(p+".bias", 0, 0.05, out)
	}
	ck.Rand("bert.embeddings.word_embeddings.weight", 0, 0.5, v, d)
	ck.Rand("bert.embeddings.position_embeddings.weight", 0, 0.1, pos, d)
	ck.Rand("bert.embeddings.token_type_embeddings.weight", 0, 0.1, 2, d)
	ln("bert.embeddings.LayerNorm")
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("bert.encoder.layer.%d.", i)
		for _, n := range []string{"query", "key", "value"} {
			lin(p+"attention.self."+n, d, d)
		}
		lin(p+"attention.output.dense", d, d)
		ln(p + "attention.output.LayerNorm")
		lin(p+"intermediate.dense", d, inter)
		lin(p+"output.dense", inter, d)
		ln(p + "output.LayerNorm")
	}
	lin("bert.pooler.dense", d, d)
	if err := ck.Write(dir, cfg, "F32", 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBERTClassification: "singlora train" on a Hugging Face BERT folder with text/label data
// learns a separable task with SingLoRA, and "classify" (LoadClassifier) reproduces the
// end-of-training predictions.
func TestBERTClassification(t *testing.T) {
	pos := []string{"great", "lovely", "superb", "fine"}
	neg := []string{"awful", "bad", "boring", "terrible"}
	fill := []string{"the", "film", "was", "really", "quite", "and"}
	var sb strings.Builder
	for i := 0; i < 64; i++ {
		w, label := pos[i%4], "pos"
		if i%2 == 1 {
			w, label = neg[(i/2)%4], "neg"
		}
		text := fmt.Sprintf("%s %s %s %s", fill[i%6], fill[(i+1)%6], w, fill[(i+3)%6])
		js, _ := json.Marshal(map[string]string{"text": text, "label": label})
		sb.Write(js)
		sb.WriteByte('\n')
	}
	modelDir := tinyBERT(t, append(append(pos, neg...), fill...))
	tmp := t.TempDir()
	trainPath := filepath.Join(tmp, "train.jsonl")
	if err := os.WriteFile(trainPath, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Model, c.Train, c.ValFraction = modelDir, trainPath, 0.25
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
	job.SetQuiet(true)
	s, err := job.Run(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("validation %v", s.Val)
	if s.Val["accuracy"] < 0.9 {
		t.Fatalf("validation accuracy %.3f on a separable task", s.Val["accuracy"])
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
	if _, err := Embeddings(task, be, texts[:2]); err != nil {
		t.Fatal(err)
	}
}
