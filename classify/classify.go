// Package classify fine-tunes a sentence encoder with a linear classification head: the task the
// demo and "singlora train" run on text/label data. The encoder's linear layers take adapters
// through peft; the head is a plain trainable linear layer at scope "/head".
package classify

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/fastops"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// Encoder is a sentence encoder whose variables live in a model.Store.
type Encoder interface {
	// Linears lists the adaptable linear layers.
	Linears() []peft.LinearSpec
	// Embed returns sentence features [batch, EmbedDim()] for padded token ids and mask.
	Embed(inj *peft.Injection, scope *model.Scope, ids, mask *Node) *Node
	// EmbedDim is the feature width.
	EmbedDim() int
	// Tokenize returns token ids per text.
	Tokenize(texts []string) [][]int
	// PadBatch packs rows into ids and mask tensors.
	PadBatch(rows [][]int, multiple int) (ids, mask *tensors.Tensor)
}

// Clipper is implemented by an Encoder whose Tokenize keeps only the first MaxLength tokens of a
// text; Task.Tokenize uses it to say how many texts were clipped.
type Clipper interface {
	// TokenizeClipped is Tokenize that also returns how many texts had more than MaxLength tokens.
	TokenizeClipped(texts []string) (rows [][]int, clipped int)
	// MaxLength is the number of tokens per text the encoder reads.
	MaxLength() int
}

// DefaultStreams is the Streams value the demo and `singlora train` use: two chains let the
// pure-Go backend keep both cores of a laptop busy (see PERFORMANCE.md, change 11).
const DefaultStreams = 2

// HeadScope is the scope of the classification head; list it in peft.Config.ModulesToSave.
const HeadScope = "head"

// Task is an encoder + linear head over NumClasses labels.
type Task struct {
	Enc        Encoder
	Inj        *peft.Injection
	Store      *model.Store
	NumClasses int
	Labels     []string // label names, index = class id
	// FeatureScale multiplies the encoder's features before the head (USE-Lite's embeddings have
	// unit norm, so their entries are ~1/√512; scaling them by √dim gives the head unit-scale inputs).
	FeatureScale float64
	// PadTo is the multiple sequence lengths are padded to (fewer distinct compiled shapes).
	PadTo int
	// Streams splits each batch into this many equal parts computed as independent chains of
	// ops (fastops.Streams), which the pure-Go backend overlaps on its cores; 0 or 1: one chain.
	// The logits are the same; gradient sums may differ in the last bits (summation order).
	Streams int
	// Warnings receives Tokenize's note on texts longer than the encoder reads; nil means
	// standard error, io.Discard silences it.
	Warnings io.Writer
}

// Tokenize returns the token ids of each text. When the encoder is a Clipper and clipped some
// texts, it says so in one line on t.Warnings, with the count and the limit.
func (t *Task) Tokenize(texts []string) [][]int {
	rows, _ := t.tokenize(texts)
	return rows
}

func (t *Task) tokenize(texts []string) ([][]int, int) {
	c, ok := t.Enc.(Clipper)
	if !ok {
		return t.Enc.Tokenize(texts), 0
	}
	rows, clipped := c.TokenizeClipped(texts)
	if clipped > 0 {
		w := t.Warnings
		if w == nil {
			w = os.Stderr
		}
		fmt.Fprintf(w, "warning: %d of %d texts are longer than the encoder's limit of %d tokens and were clipped to it\n",
			clipped, len(texts), c.MaxLength())
	}
	return rows, clipped
}

// InitHead creates the head variables (small random weights from seed, zero bias) if absent.
func (t *Task) InitHead(seed uint64) error {
	d := t.Enc.EmbedDim()
	if t.Store.GetVariable("/"+HeadScope+"/weight") != nil {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x4ead))
	w := make([]float32, t.NumClasses*d)
	bound := 1 / math.Sqrt(float64(d))
	for i := range w {
		w[i] = float32((rng.Float64()*2 - 1) * bound)
	}
	if _, err := t.Store.CreateVariable("/"+HeadScope+"/weight", tensors.FromFlatDataAndDimensions(w, t.NumClasses, d)); err != nil {
		return err
	}
	_, err := t.Store.CreateVariable("/"+HeadScope+"/bias", tensors.FromShape(shapesOf(t.NumClasses)))
	return err
}

// Logits computes [batch, NumClasses] logits.
func (t *Task) Logits(scope *model.Scope, ids, mask *Node) *Node {
	return fastops.Streams(t.Streams, []*Node{ids, mask}, func(in []*Node) *Node { return t.logits(scope, in[0], in[1]) })
}

func (t *Task) logits(scope *model.Scope, ids, mask *Node) *Node {
	f := t.Enc.Embed(t.Inj, scope, ids, mask)
	if t.FeatureScale != 0 && t.FeatureScale != 1 {
		f = MulScalar(f, t.FeatureScale)
	}
	return peft.Linear(nil, scope.At(HeadScope), f)
}

// CrossEntropy returns the mean cross-entropy of logits [B, C] against int labels [B].
func CrossEntropy(logits, labels *Node) *Node {
	logp := LogSoftmax(logits, -1)
	onehot := OneHot(labels, logits.Shape().Dim(-1), logits.DType())
	return Neg(ReduceAllMean(ReduceSum(Mul(logp, onehot), -1)))
}

// Loss is the train.LossFn: inputs are ids, mask, labels.
func (t *Task) Loss(scope *model.Scope, in []*Node) *Node {
	return CrossEntropy(t.Logits(scope, in[0], in[1]), in[2])
}

// Data is a tokenised labelled split.
type Data struct {
	Texts  []string
	Rows   [][]int
	Labels []int
	// Clipped is the number of texts longer than the encoder reads (0 when the encoder is not a
	// Clipper).
	Clipped int
	task    *Task
}

// NewData tokenises texts with t.Tokenize (which notes clipped texts).
func (t *Task) NewData(texts []string, labels []int) *Data {
	rows, clipped := t.tokenize(texts)
	return &Data{Texts: texts, Rows: rows, Labels: labels, Clipped: clipped, task: t}
}

// Len implements train.Dataset.
func (d *Data) Len() int { return len(d.Rows) }

// NumTokens implements train.TokenCounter.
func (d *Data) NumTokens(idx []int) int {
	n := 0
	for _, i := range idx {
		n += len(d.Rows[i])
	}
	return n
}

// Batch implements train.Dataset.
func (d *Data) Batch(idx []int) ([]*tensors.Tensor, error) {
	rows := make([][]int, len(idx))
	labels := make([]int32, len(idx))
	for i, j := range idx {
		if j < 0 || j >= len(d.Rows) || j >= len(d.Labels) {
			return nil, fmt.Errorf("example %d out of range", j)
		}
		rows[i], labels[i] = d.Rows[j], int32(d.Labels[j])
	}
	ids, mask := d.task.Enc.PadBatch(rows, d.task.padTo())
	return []*tensors.Tensor{ids, mask, tensors.FromFlatDataAndDimensions(labels, len(idx))}, nil
}

func (t *Task) padTo() int {
	if t.PadTo > 0 {
		return t.PadTo
	}
	return 16
}

// Predictor classifies with the store's weights (create it after training; see NewPredictor).
//
// On the pure-Go backend an inference graph embeds every variable's value as a constant and
// keeps packed copies of the weight matrices beside them: about 70 MB per compiled graph for
// USE-Lite, and one graph per padded batch shape. A Predictor therefore holds at most one
// compiled graph: LogProbs computes the batches of one shape together and releases that graph
// before it compiles the next, so scoring a split costs one graph's memory, not one per shape.
// A Predictor is not safe for concurrent use.
type Predictor struct {
	task    *Task
	backend compute.Backend
	exec    *model.Exec  // compiles the graph of shape; nil when none is held
	shape   shapes.Shape // the ids shape exec's graph was compiled for
	builds  int          // graphs compiled so far (what the tests count)
	// BatchSize is the number of sentences per call (default 64).
	BatchSize int
}

// NewPredictor returns a Predictor for the store's current weights. Each graph embeds the
// weights it was compiled with, so create it after the variables reach their final values
// (and a new one after they change).
func (t *Task) NewPredictor(backend compute.Backend) (*Predictor, error) {
	if backend == nil {
		return nil, fmt.Errorf("classify: NewPredictor needs a backend")
	}
	return &Predictor{task: t, backend: backend, BatchSize: 64}, nil
}

// Close releases the compiled graph the Predictor holds. The Predictor stays usable: a later
// call compiles again.
func (p *Predictor) Close() {
	if p.exec != nil {
		p.exec.Finalize()
		p.exec = nil
	}
}

// execFor returns an executor holding (at most) the graph for ids of shape s, releasing the
// graph of another shape first.
func (p *Predictor) execFor(s shapes.Shape) (*model.Exec, error) {
	if p.exec != nil && p.shape.Equal(s) {
		return p.exec, nil
	}
	p.Close()
	exec, err := train.NewInference(p.backend, p.task.Store, func(scope *model.Scope, ids, mask *Node) *Node {
		p.builds++
		return ConvertDType(LogSoftmax(p.task.Logits(scope, ids, mask), -1), dtypes.Float32)
	})
	if err != nil {
		return nil, fmt.Errorf("classify: building inference for shape %s: %w", s, err)
	}
	// One graph per executor: compiling a second shape on it is an error, not a silent copy of
	// the weights.
	p.exec, p.shape = exec.SetMaxCache(1), s
	return exec, nil
}

// chunk is one BatchSize slice of LogProbs' rows and the shape PadBatch gives its ids.
type chunk struct {
	start, n int
	shape    shapes.Shape
}

// LogProbs returns log-probabilities [n][NumClasses] for tokenised rows, in the rows' order.
// The rows are cut into BatchSize chunks as they come; the chunks of one padded shape are
// computed together (the shape of the graph the Predictor holds first, then in order of first
// appearance), so each shape's graph is compiled once per call and released before the next.
// Logits of another shape than [rows, NumClasses] (a head that disagrees with the label set)
// are an error.
func (p *Predictor) LogProbs(rows [][]int) ([][]float32, error) {
	if c := p.task.NumClasses; c < 1 {
		return nil, fmt.Errorf("classify: the task has NumClasses %d, want ≥ 1", c)
	}
	bs := max(p.BatchSize, 1)
	var groups [][]chunk // chunks by ids shape
	for start := 0; start < len(rows); start += bs {
		n := min(bs, len(rows)-start)
		ids, _ := p.task.Enc.PadBatch(rows[start:start+n], p.task.padTo()) // padded again in run: only the shape is kept
		ch := chunk{start: start, n: n, shape: ids.Shape()}
		i := slices.IndexFunc(groups, func(g []chunk) bool { return g[0].shape.Equal(ch.shape) })
		switch {
		case i < 0 && p.exec != nil && p.shape.Equal(ch.shape):
			groups, i = slices.Insert(groups, 0, []chunk(nil)), 0
		case i < 0:
			groups, i = append(groups, nil), len(groups)
		}
		groups[i] = append(groups[i], ch)
	}
	out := make([][]float32, len(rows))
	for _, g := range groups {
		exec, err := p.execFor(g[0].shape)
		if err != nil {
			return nil, err
		}
		for _, ch := range g {
			if err := p.run(exec, rows, ch, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// run computes the log-probabilities of one chunk of rows into out.
func (p *Predictor) run(exec *model.Exec, rows [][]int, ch chunk, out [][]float32) error {
	c := p.task.NumClasses
	ids, mask := p.task.Enc.PadBatch(rows[ch.start:ch.start+ch.n], p.task.padTo())
	res, err := exec.Call(ids, mask)
	if err != nil {
		return fmt.Errorf("classifying batch at %d: %w", ch.start, err)
	}
	if len(res) == 0 {
		return fmt.Errorf("classifying batch at %d: the model returned no logits", ch.start)
	}
	if dims := res[0].Shape().Dimensions; len(dims) != 2 || dims[0] != ch.n || dims[1] != c {
		return fmt.Errorf("classifying batch at %d: the head gives logits of shape %v for %d texts, but the task has NumClasses %d (%d labels): the head weights and the label set disagree",
			ch.start, dims, ch.n, c, len(p.task.Labels))
	}
	flat, err := tensors.CopyFlatData[float32](res[0])
	if err != nil {
		return fmt.Errorf("classifying batch at %d: %w", ch.start, err)
	}
	for i := range ch.n {
		out[ch.start+i] = flat[i*c : (i+1)*c : (i+1)*c]
	}
	return nil
}

// Predict returns the arg-max class per row.
func (p *Predictor) Predict(rows [][]int) ([]int, error) {
	lp, err := p.LogProbs(rows)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(lp))
	for i, row := range lp {
		out[i] = Best(row)
	}
	return out, nil
}

// Evaluate returns accuracy and mean cross-entropy ("accuracy", "loss") on d with the store's
// current weights.
func (t *Task) Evaluate(backend compute.Backend, d *Data) (map[string]float64, error) {
	p, err := t.NewPredictor(backend)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	m, _, err := p.Score(d)
	return m, err
}

// Score returns accuracy and mean cross-entropy ("accuracy", "loss") on d and the predicted
// class of each example.
func (p *Predictor) Score(d *Data) (map[string]float64, []int, error) {
	if len(d.Labels) != len(d.Rows) {
		return nil, nil, fmt.Errorf("score: %d labels for %d texts", len(d.Labels), len(d.Rows))
	}
	lp, err := p.LogProbs(d.Rows)
	if err != nil {
		return nil, nil, err
	}
	preds := make([]int, len(lp))
	correct, loss := 0, 0.0
	for i, row := range lp {
		if d.Labels[i] < 0 || d.Labels[i] >= len(row) {
			return nil, nil, fmt.Errorf("score: text %d has class %d, outside the %d classes", i, d.Labels[i], len(row))
		}
		preds[i] = Best(row)
		if preds[i] == d.Labels[i] {
			correct++
		}
		loss -= float64(row[d.Labels[i]])
	}
	n := float64(len(lp))
	return map[string]float64{"accuracy": float64(correct) / n, "loss": loss / n}, preds, nil
}

// Best returns the index of the largest value.
func Best(row []float32) int {
	best := 0
	for j := range row {
		if row[j] > row[best] {
			best = j
		}
	}
	return best
}
