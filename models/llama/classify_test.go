package llama

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/optim"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// classifierFolder writes a random checkpoint for config m (edited by edit) with the layout of
// arch: a *ForSequenceClassification one has score.weight [3, hidden] and no lm_head. It adds
// a tokenizer.json over words (see writeLlamaTokenizer).
func classifierFolder(t *testing.T, arch, dtype string, edit func(m map[string]any), words []string) (string, *hftest.Checkpoint) {
	t.Helper()
	m := tinyConfig()
	m["architectures"] = []string{arch}
	if edit != nil {
		edit(m)
	}
	ck := tinyCheckpoint(m, 11)
	if m["model_type"] == "qwen2" { // Qwen2 has q/k/v biases only
		for i := 0; i < cfgInt(m, "num_hidden_layers"); i++ {
			ck.Delete(fmt.Sprintf("model.layers.%d.self_attn.o_proj.bias", i))
		}
	}
	if strings.HasSuffix(arch, "ForSequenceClassification") {
		ck.Delete("lm_head.weight")
		ck.Rand("score.weight", 0, 0.1, 3, cfgInt(m, "hidden_size"))
	}
	dir := t.TempDir()
	if err := ck.Write(dir, m, dtype, 1); err != nil {
		t.Fatal(err)
	}
	writeLlamaTokenizer(t, dir, words)
	return dir, ck
}

// writeLlamaTokenizer writes a WordPiece tokenizer.json over <unk> <s> </s> <pad> (ids 0-3) and
// words (ids from 4), whose post-processor puts <s> first as Llama's does.
func writeLlamaTokenizer(t *testing.T, dir string, words []string) {
	t.Helper()
	special := []string{"<unk>", "<s>", "</s>", "<pad>"}
	vocab := map[string]int{}
	var added []any
	for i, w := range append(slices.Clone(special), words...) {
		vocab[w] = i
		if i < len(special) {
			added = append(added, map[string]any{"id": i, "content": w, "special": true})
		}
	}
	tj := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added,
		"normalizer":    map[string]any{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": nil, "lowercase": true},
		"pre_tokenizer": map[string]any{"type": "BertPreTokenizer"},
		"model": map[string]any{"type": "WordPiece", "unk_token": "<unk>", "continuing_subword_prefix": "##",
			"max_input_chars_per_word": 100, "vocab": vocab},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}}},
	}
	b, err := json.Marshal(tj)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// refHidden is the float64 reference of the final normalised hidden states [L, hidden] of one
// unpadded sequence: refLogits with an identity LM head (hidden×hidden), whose logits are the
// hidden states themselves.
func refHidden(c *Config, ck *hftest.Checkpoint, ids []int) []float64 {
	d := c.Hidden
	eye := make([]float64, d*d)
	for i := 0; i < d; i++ {
		eye[i*d+i] = 1
	}
	idc := &hftest.Checkpoint{Values: maps.Clone(ck.Values)}
	idc.Values["lm_head.weight"] = eye
	cc := *c
	cc.VocabSize = d
	return refLogits(&cc, idc, ids, nil)
}

// runEmbed runs enc.Embed on rows padded by enc.PadBatch (to a multiple of 8) and returns the
// features [B·hidden] and the padded length.
func runEmbed(t *testing.T, enc *Encoder, store *model.Store, rows [][]int) ([]float32, int) {
	t.Helper()
	ids, mask := enc.PadBatch(rows, 8)
	exec, err := model.NewExec(be(t), store, func(scope *model.Scope, ids, mask *Node) *Node {
		return enc.Embed(nil, scope, ids, mask)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Call(ids, mask)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float32](out[0]), ids.Shape().Dim(1)
}

// wantPooled is the reference features: each row's hidden state at its last token.
func wantPooled(c *Config, ck *hftest.Checkpoint, rows [][]int) []float64 {
	var want []float64
	for _, r := range rows {
		h := refHidden(c, ck, r)
		want = append(want, h[(len(r)-1)*c.Hidden:]...)
	}
	return want
}

var classifyWords = []string{"the", "film", "was", "great", "awful", "a", "really", "quite", "bad", "fine", "and", "plot"}

// TestEncoderPoolsLastRealToken: the features of a right-padded batch are the float64
// reference's final normalised hidden state at each text's last real token (not at the padded
// end), for sequence-classification and causal checkpoints of the three model types.
func TestEncoderPoolsLastRealToken(t *testing.T) {
	texts := []string{"the film was great", "awful", "a really quite bad film and the plot was fine", "the plot"}
	for _, tc := range []struct {
		name, arch string
		edit       func(m map[string]any)
	}{
		{"llama-seqcls", "LlamaForSequenceClassification", nil},
		{"qwen2-seqcls-tied", "Qwen2ForSequenceClassification", func(m map[string]any) {
			m["model_type"], m["tie_word_embeddings"] = "qwen2", true
			m["attention_bias"] = true // tinyCheckpoint writes the q/k/v biases Qwen2 has
		}},
		{"mistral-causal-mha", "MistralForCausalLM", func(m map[string]any) {
			m["model_type"], m["num_key_value_heads"] = "mistral", 4
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, ck := classifierFolder(t, tc.arch, "F32", tc.edit, classifyWords)
			store := model.NewStore()
			enc, err := LoadEncoder(dir, store, hf.BaseF32, 0)
			if err != nil {
				t.Fatal(err)
			}
			for v := range store.IterVariables() {
				if strings.HasPrefix(v.Path(), "/score/") {
					t.Errorf("the checkpoint's score head was loaded: %s", v.Path())
				}
			}
			rows := enc.Tokenize(texts)
			got, l := runEmbed(t, enc, store, rows)
			if l <= len(rows[1]) {
				t.Fatalf("padded length %d: the test needs padding", l)
			}
			rel, abs := hftest.MaxRelErr(got, wantPooled(enc.Config, ck, rows))
			t.Logf("rows of %d..%d tokens padded to %d: max |Δ| %.3g, relative %.3g", len(rows[1]), len(rows[2]), l, abs, rel)
			if rel > 1e-4 {
				t.Fatalf("pooled features differ from the reference at the last real token: relative error %.3g", rel)
			}
		})
	}
}

// TestEncoderHalfBase: a BF16 sequence-classification checkpoint loads with a 16-bit base (its
// matrices stay bfloat16, the norms float32; no lm_head is needed), and in widen mode its pooled
// features match the float64 reference on the checkpoint's bf16 values.
func TestEncoderHalfBase(t *testing.T) {
	defer func(m fastops.HalfMode) { fastops.DefaultHalfMode = m }(fastops.DefaultHalfMode)
	fastops.DefaultHalfMode = fastops.HalfWiden
	dir, ck := classifierFolder(t, "LlamaForSequenceClassification", "BF16", nil, classifyWords)
	store := model.NewStore()
	enc, err := LoadEncoder(dir, store, hf.BaseAuto, 0)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Config.TieEmbeddings || store.GetVariable("/lm_head/weight") != nil {
		t.Fatalf("a sequence classifier got an LM head (tied %v)", enc.Config.TieEmbeddings)
	}
	for path, want := range map[string]dtypes.DType{
		"/model/layers/1/mlp/down_proj/weight": dtypes.BFloat16, "/model/embed_tokens/weight": dtypes.BFloat16,
		"/model/norm/weight": dtypes.Float32,
	} {
		if got := store.GetVariable(path).Shape().DType; got != want {
			t.Errorf("%s held as %s, want %s", path, got, want)
		}
	}
	rows := enc.Tokenize([]string{"the film was great", "bad"})
	got, _ := runEmbed(t, enc, store, rows)
	rel, abs := hftest.MaxRelErr(got, wantPooled(enc.Config, ck, rows))
	t.Logf("bf16 base: max |Δ| %.3g, relative %.3g", abs, rel)
	if rel > 1e-4 {
		t.Fatalf("bf16-base features differ from the reference: relative error %.3g", rel)
	}
}

// TestEncoderTokenizes: texts get the post-processor's <s> first and are clipped to the first
// MaxLength tokens, MaxLength is clipped to max_position_embeddings, clipped texts are counted,
// and PadBatch right-pads with <pad> under a 0 mask.
func TestEncoderTokenizes(t *testing.T) {
	dir, _ := classifierFolder(t, "LlamaForSequenceClassification", "F32", nil, classifyWords)
	texts := []string{"the film was great", "awful", "a really quite bad film"}
	for _, tc := range []struct {
		maxLen, want int
		rows         [][]int
		clipped      int
	}{
		{0, 64, [][]int{{1, 4, 5, 6, 7}, {1, 8}, {1, 9, 10, 11, 12, 5}}, 0}, // the default 128, clipped to the 64 positions
		{4, 4, [][]int{{1, 4, 5, 6}, {1, 8}, {1, 9, 10, 11}}, 2},
		{1000, 64, [][]int{{1, 4, 5, 6, 7}, {1, 8}, {1, 9, 10, 11, 12, 5}}, 0},
	} {
		enc, err := LoadEncoder(dir, model.NewStore(), hf.BaseF32, tc.maxLen)
		if err != nil {
			t.Fatal(err)
		}
		if enc.MaxLength() != tc.want {
			t.Errorf("max length %d: reads %d tokens, want %d", tc.maxLen, enc.MaxLength(), tc.want)
		}
		rows, clipped := enc.TokenizeClipped(texts)
		if fmt.Sprint(rows) != fmt.Sprint(tc.rows) || clipped != tc.clipped {
			t.Errorf("max length %d: rows %v (%d clipped), want %v (%d)", tc.maxLen, rows, clipped, tc.rows, tc.clipped)
		}
		if fmt.Sprint(enc.Tokenize(texts)) != fmt.Sprint(rows) {
			t.Errorf("max length %d: Tokenize and TokenizeClipped disagree", tc.maxLen)
		}
	}
	enc, err := LoadEncoder(dir, model.NewStore(), hf.BaseF32, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids, mask := enc.PadBatch([][]int{{1, 4, 5}, {1}}, 4)
	if got := fmt.Sprint(tensors.MustCopyFlatData[int32](ids), tensors.MustCopyFlatData[float32](mask)); got != "[1 4 5 3 1 3 3 3] [1 1 1 0 1 0 0 0]" {
		t.Errorf("PadBatch: ids, mask %s", got)
	}
}

// TestSequenceClassifierIsNoCausalLM: the causal-LM loader refuses an untied
// sequence-classification folder (it has score.weight, no lm_head) and names the way to train it.
func TestSequenceClassifierIsNoCausalLM(t *testing.T) {
	arch, err := models.Lookup("llama")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := classifierFolder(t, "LlamaForSequenceClassification", "F32", nil, classifyWords)
	if _, err := arch.LoadCausalLM(dir, model.NewStore(), models.LoadOptions{}); err == nil || !strings.Contains(err.Error(), "LlamaForSequenceClassification is a sequence classifier") {
		t.Fatalf("a sequence classifier as a causal LM: %v", err)
	}
	causal, _ := classifierFolder(t, "LlamaForCausalLM", "F32", nil, classifyWords)
	if _, err := arch.LoadCausalLM(causal, model.NewStore(), models.LoadOptions{}); err != nil {
		t.Fatalf("a causal checkpoint: %v", err)
	}
}

// TestEncoderClassifierTrains: SingLoRA on every projection plus classify.Task's head (a module
// to save) on the pooled features lowers the classification loss of a tiny separable task (the
// label is the second word, the pooled token the last) and moves the adapters: the gradient
// reaches the layers through the last-token pooling and the padding mask.
func TestEncoderClassifierTrains(t *testing.T) {
	dir, _ := classifierFolder(t, "LlamaForSequenceClassification", "F32", nil, classifyWords)
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(7); err != nil {
		t.Fatal(err)
	}
	enc, err := LoadEncoder(dir, store, hf.BaseF32, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.Rank, cfg.Alpha, cfg.RampSteps, cfg.Seed = 4, 4, 5, 3
	cfg.Targets = []string{"all-linear"}
	cfg.ModulesToSave = []string{classify.HeadScope}
	inj, err := peft.Inject(cfg, enc.Linears())
	if err != nil {
		t.Fatal(err)
	}
	task := &classify.Task{Enc: enc, Inj: inj, Store: store, NumClasses: 2, Labels: []string{"neg", "pos"}, FeatureScale: enc.FeatureScale(), PadTo: 8}
	if err := task.InitHead(1); err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(store); err != nil {
		t.Fatal(err)
	}
	adapters := map[string][]float32{}
	for v := range store.IterVariables() {
		if peft.IsAdapterVariable(v.Path()) {
			adapters[v.Path()] = tensors.MustCopyFlatData[float32](v.MustValue())
		}
	}
	texts := []string{"the great film", "the awful film and plot", "a great plot was fine", "a awful film",
		"really great and quite fine", "really awful plot", "the great", "quite awful the film was"}
	labels := []int{1, 0, 1, 0, 1, 0, 1, 0}
	batch, err := task.NewData(texts, labels).Batch([]int{0, 1, 2, 3, 4, 5, 6, 7})
	if err != nil {
		t.Fatal(err)
	}
	opt := optim.DefaultAdamW(1e-2)
	opt.WeightDecay = 0
	opt.GroupOf = inj.OptimizerGroups(0)
	st, err := train.NewStepper(be(t), store, task.Loss, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	var first, last float64
	const steps = 40
	for s := 0; s < steps; s++ {
		res, err := st.Step(batch)
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			first = res.Loss
		}
		last = res.Loss
	}
	moved := 0.0
	for v := range store.IterVariables() {
		if before, ok := adapters[v.Path()]; ok {
			for i, x := range tensors.MustCopyFlatData[float32](v.MustValue()) {
				moved = math.Max(moved, math.Abs(float64(x-before[i])))
			}
		}
	}
	t.Logf("classification loss %.4f → %.4f after %d steps; %d adapter tensors, largest change %.3g", first, last, steps, len(adapters), moved)
	if len(adapters) == 0 || moved < 1e-3 {
		t.Fatalf("the adapters did not train: %d tensors, largest change %.3g", len(adapters), moved)
	}
	if !(last < 0.2*first) {
		t.Fatalf("classification loss did not fall: %.4f → %.4f", first, last)
	}
}
