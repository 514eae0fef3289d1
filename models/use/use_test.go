package use

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft"
)

type refSentence struct {
	Text      string `json:"text"`
	IDs       []int  `json:"ids"`
	Embedding string `json:"embedding"`
}

func loadReference(t *testing.T) []refSentence {
	t.Helper()
	b, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Sentences []refSentence `json:"sentences"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Sentences) < 50 {
		t.Fatalf("reference fixture has %d sentences, want ≥ 50", len(ref.Sentences))
	}
	return ref.Sentences
}

func decodeEmbedding(t *testing.T, s string) []float32 {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 4*OutputDim {
		t.Fatalf("bad embedding in fixture: %d bytes, %v", len(b), err)
	}
	out := make([]float32, OutputDim)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

var (
	sharedOnce  sync.Once
	sharedModel *Model
	sharedErr   error
)

func loadModel(t *testing.T) *Model {
	t.Helper()
	if !Available() {
		t.Skip("USE-Lite weights not fetched: run singlora fetch")
	}
	sharedOnce.Do(func() { sharedModel, sharedErr = New("") })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedModel
}

func TestTokenIDsMatchReference(t *testing.T) {
	m := loadModel(t)
	for _, s := range loadReference(t) {
		got := m.Tokenizer.Encode(s.Text)
		if len(got) == 0 && len(s.IDs) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, s.IDs) {
			t.Errorf("%q: ids %v, reference %v", s.Text, got, s.IDs)
		}
	}
}

func TestStructure(t *testing.T) {
	m := loadModel(t)
	// 8002·256 embeddings + layer 0 (2,036,992) + layer 1 (2,627,584) + pooler (262,656). The
	// published 6,975,914 also counts the graph's 170 scalar/shape constants stored as weights.
	if got, want := m.NumParameters(), 6_975_744; got != want {
		t.Errorf("NumParameters = %d, want %d", got, want)
	}
	specs := m.Linears()
	if len(specs) != 14 {
		t.Errorf("%d linears, want 14", len(specs))
	}
	for _, s := range specs {
		w := m.Store.GetVariable(s.ScopePath() + "/weight")
		b := m.Store.GetVariable(s.ScopePath() + "/bias")
		if w == nil || b == nil {
			t.Errorf("%s: weight or bias missing", s.Path)
			continue
		}
		if !reflect.DeepEqual(w.Shape().Dimensions, []int{s.Out, s.In}) || !reflect.DeepEqual(b.Shape().Dimensions, []int{s.Out}) {
			t.Errorf("%s: weight %v bias %v, spec in=%d out=%d", s.Path, w.Shape(), b.Shape(), s.In, s.Out)
		}
	}
	if _, err := peft.Inject(peft.DefaultConfig(peft.SingLoRA), specs); err != nil {
		t.Errorf("injecting SingLoRA on all-linear: %v", err)
	}
}

// TestParityWithReference embeds the fixture's sentences and compares them with the reference
// runtime's embeddings (TF.js, @energetic-ai/embeddings 0.2.0).
func TestParityWithReference(t *testing.T) {
	m := loadModel(t)
	ref := loadReference(t)
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	emb, err := m.NewEmbedder(be, nil)
	if err != nil {
		t.Fatal(err)
	}
	rows := make([][]int, len(ref))
	for i, s := range ref {
		rows[i] = s.IDs
		if len(rows[i]) > MaxLength {
			rows[i] = rows[i][:MaxLength]
		}
	}
	start := time.Now()
	got, err := emb.EmbedIDs(rows)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("embedded %d sentences in %v", len(rows), time.Since(start))
	minCos, maxAbs := 1.0, 0.0
	for i, s := range ref {
		want := decodeEmbedding(t, s.Embedding)
		var dot, na, nb, diff float64
		for j := range want {
			a, b := float64(got[i][j]), float64(want[j])
			dot += a * b
			na += a * a
			nb += b * b
			diff = math.Max(diff, math.Abs(a-b))
		}
		cos := dot / math.Sqrt(na*nb)
		// Measured: cosine 1 − O(1e-13), max |diff| 7.2e-7 (float32 rounding, wasm vs Go kernels).
		if cos < 0.9999 || diff > 1e-5 || math.IsNaN(cos) {
			t.Errorf("%q: cosine %.7f, max |diff| %.3g vs the reference", s.Text, cos, diff)
		}
		minCos = math.Min(minCos, cos)
		maxAbs = math.Max(maxAbs, diff)
	}
	t.Logf("min cosine %.9f, max |diff| %.3g over %d sentences", minCos, maxAbs, len(ref))

	// Padding must not change a sentence's embedding: embed one alone.
	emb.PadTo = 1
	alone, err := emb.EmbedIDs(rows[:1])
	if err != nil {
		t.Fatal(err)
	}
	for j := range alone[0] {
		if d := math.Abs(float64(alone[0][j] - got[0][j])); d > 1e-5 {
			t.Fatalf("embedding of %q changes with padding: |diff| %.3g at %d", ref[0].Text, d, j)
		}
	}
}

// TestTokenizeClipped: texts over MaxLength tokens are clipped to their first MaxLength tokens
// and counted; shorter ones are untouched.
func TestTokenizeClipped(t *testing.T) {
	m := loadModel(t)
	long := strings.Repeat("word ", 3*MaxLength)
	tests := []struct {
		texts   []string
		clipped int
	}{
		{[]string{"a short one", "another"}, 0},
		{[]string{"short", long, long + "more"}, 2},
	}
	for _, tc := range tests {
		rows, clipped := m.TokenizeClipped(tc.texts)
		if clipped != tc.clipped {
			t.Errorf("%d texts: clipped %d, want %d", len(tc.texts), clipped, tc.clipped)
		}
		for i, text := range tc.texts {
			full := m.Tokenizer.Encode(text)
			want := full[:min(len(full), MaxLength)]
			if !reflect.DeepEqual(rows[i], want) {
				t.Errorf("text %d: %d ids, want the first %d of %d", i, len(rows[i]), len(want), len(full))
			}
		}
		if plain := m.Tokenize(tc.texts); !reflect.DeepEqual(plain, rows) {
			t.Errorf("Tokenize and TokenizeClipped disagree")
		}
	}
}
