package classify

import (
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/backend"
	"github.com/singlora/singlora/peft"
)

// toyEncoder is a tiny Encoder (and Clipper): a text's ids are its bytes, clipped to maxLen, and
// its features are the masked sum of the ids in each of dim entries.
type toyEncoder struct{ maxLen, dim int }

func (e toyEncoder) Linears() []peft.LinearSpec { return nil }
func (e toyEncoder) EmbedDim() int              { return e.dim }

func (e toyEncoder) Embed(_ *peft.Injection, _ *model.Scope, ids, mask *Node) *Node {
	s := ReduceSum(Mul(ConvertDType(ids, dtypes.Float32), mask), -1)
	return BroadcastToDims(ExpandAxes(MulScalar(s, 1e-3), -1), ids.Shape().Dim(0), e.dim)
}

func (e toyEncoder) Tokenize(texts []string) [][]int {
	rows, _ := e.TokenizeClipped(texts)
	return rows
}

func (e toyEncoder) TokenizeClipped(texts []string) ([][]int, int) {
	rows, clipped := make([][]int, len(texts)), 0
	for i, t := range texts {
		if len(t) > e.maxLen {
			t, clipped = t[:e.maxLen], clipped+1
		}
		for _, b := range []byte(t) {
			rows[i] = append(rows[i], int(b))
		}
	}
	return rows, clipped
}

func (e toyEncoder) MaxLength() int { return e.maxLen }

func (e toyEncoder) PadBatch(rows [][]int, multiple int) (ids, mask *tensors.Tensor) {
	l := 1
	for _, r := range rows {
		l = max(l, len(r))
	}
	l = (l + multiple - 1) / multiple * multiple
	iv, mv := make([]int32, len(rows)*l), make([]float32, len(rows)*l)
	for i, r := range rows {
		for j, id := range r {
			iv[i*l+j], mv[i*l+j] = int32(id), 1
		}
	}
	return tensors.FromFlatDataAndDimensions(iv, len(rows), l), tensors.FromFlatDataAndDimensions(mv, len(rows), l)
}

func toyTask(t *testing.T, classes int) *Task {
	t.Helper()
	labels := []string{"a", "b", "c", "d"}[:classes]
	task := &Task{Enc: toyEncoder{maxLen: 5, dim: 4}, Store: model.NewStore(), NumClasses: classes, Labels: labels, PadTo: 4}
	if err := task.InitHead(1); err != nil {
		t.Fatal(err)
	}
	return task
}

// TestPredictorChecksClasses: a NumClasses that disagrees with the head's outputs is an error
// naming both, not a panic (more classes) or rows read with the wrong stride (fewer).
func TestPredictorChecksClasses(t *testing.T) {
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"one", "two", "three"}
	tests := []struct {
		name       string
		numClasses int
		want       string // error substring; "" means it must work
	}{
		{"agrees", 2, ""},
		{"more classes than the head", 3, "shape [3 2] for 3 texts, but the task has NumClasses 3"},
		{"fewer classes than the head", 1, "shape [3 2] for 3 texts, but the task has NumClasses 1"},
		{"no classes", 0, "NumClasses 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := toyTask(t, 2)
			task.NumClasses = tc.numClasses
			p, err := task.NewPredictor(be)
			if err != nil {
				t.Fatal(err)
			}
			lp, err := p.LogProbs(task.Enc.Tokenize(texts))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(lp) != len(texts) || len(lp[0]) != 2 || cap(lp[0]) != 2 {
					t.Fatalf("log-probs %v: want %d rows of 2", lp, len(texts))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestScoreChecksLabels: a class id outside the head's classes is an error, not a panic.
func TestScoreChecksLabels(t *testing.T) {
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	task := toyTask(t, 2)
	task.Warnings = new(strings.Builder)
	p, err := task.NewPredictor(be)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		labels []int
		want   string
	}{
		{[]int{0, 1}, ""},
		{[]int{0, 2}, "text 1 has class 2, outside the 2 classes"},
		{[]int{0}, "1 labels for 2 texts"},
	} {
		d := task.NewData([]string{"ab", "cd"}, tc.labels)
		m, _, err := p.Score(d)
		switch {
		case tc.want == "" && (err != nil || m["accuracy"] < 0 || m["accuracy"] > 1):
			t.Errorf("labels %v: %v, %v", tc.labels, m, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("labels %v: error %v, want %q", tc.labels, err, tc.want)
		}
	}
}

// TestTokenizeNotesClippedTexts: Task.Tokenize (and so NewData) says once how many texts were
// clipped and to what limit; nothing when none was.
func TestTokenizeNotesClippedTexts(t *testing.T) {
	tests := []struct {
		texts   []string
		clipped int
		want    string // the whole warning output
	}{
		{[]string{"abc", "defgh"}, 0, ""},
		{[]string{"abc", "defghij", "klmnopq", "r"}, 2, "warning: 2 of 4 texts are longer than the encoder's limit of 5 tokens and were clipped to it\n"},
	}
	for _, tc := range tests {
		task := toyTask(t, 2)
		var w strings.Builder
		task.Warnings = &w
		rows := task.Tokenize(tc.texts)
		for i, r := range rows {
			if len(r) != min(len(tc.texts[i]), 5) {
				t.Errorf("%q: %d ids", tc.texts[i], len(r))
			}
		}
		if w.String() != tc.want {
			t.Errorf("%q: warned %q, want %q", tc.texts, w.String(), tc.want)
		}
		w.Reset()
		d := task.NewData(tc.texts, make([]int, len(tc.texts)))
		if w.String() != tc.want {
			t.Errorf("NewData(%q): warned %q, want %q", tc.texts, w.String(), tc.want)
		}
		if d.Clipped != tc.clipped {
			t.Errorf("NewData(%q).Clipped = %d, want %d", tc.texts, d.Clipped, tc.clipped)
		}
	}
}

// TestPredictorHoldsOneGraph: LogProbs computes the chunks of each padded shape together, so
// interleaved shapes compile one graph each, not one per chunk, and the Predictor holds one
// compiled graph at a time (its executor refuses a second shape: inference graphs embed the
// weights, ~70 MB each for USE-Lite). The results are those of each text alone, in order; the
// held shape is reused by the next call, and Close releases it.
func TestPredictorHoldsOneGraph(t *testing.T) {
	be, err := backend.Get()
	if err != nil {
		t.Fatal(err)
	}
	task := toyTask(t, 2)
	task.Warnings = new(strings.Builder)
	texts := []string{"a", "abcde", "b", "cdefg", "ab"} // padded to 4, 8, 4, 8, 4 (PadTo 4)
	rows := task.Tokenize(texts)
	p, err := task.NewPredictor(be)
	if err != nil {
		t.Fatal(err)
	}
	p.BatchSize = 1
	lp, err := p.LogProbs(rows)
	if err != nil {
		t.Fatal(err)
	}
	if p.builds != 2 {
		t.Errorf("%d graphs compiled for 5 chunks of 2 interleaved shapes, want 2", p.builds)
	}
	for i, r := range rows {
		one, err := task.NewPredictor(be)
		if err != nil {
			t.Fatal(err)
		}
		want, err := one.LogProbs([][]int{r})
		one.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(lp[i], want[0]) {
			t.Errorf("text %q: log-probs %v in the batch call, %v alone", texts[i], lp[i], want[0])
		}
	}
	if p.exec == nil || !p.shape.Equal(shapesOfInt32(1, 8)) {
		t.Fatalf("after LogProbs the Predictor holds the graph of %v, want the last group's [1 8]", p.shape)
	}
	ids, mask := task.Enc.PadBatch(rows[:1], 4)
	if _, err := p.exec.Call(ids, mask); err == nil || !strings.Contains(err.Error(), "maximum cache size of 1") {
		t.Errorf("a second shape on the held executor: error %v, want the cache limit of 1", err)
	}
	if _, err := p.LogProbs(rows); err != nil {
		t.Fatal(err)
	}
	if p.builds != 3 {
		t.Errorf("a second call compiled %d graphs, want 1 (the held [1 8] graph goes first)", p.builds-2)
	}
	p.Close()
	if p.exec != nil {
		t.Error("Close kept the compiled graph")
	}
}

func shapesOfInt32(dims ...int) shapes.Shape { return shapes.Make(dtypes.Int32, dims...) }
