package finetune

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/train"
)

// HeadInfo is RUN/head.json: the label set of a classifier (index = class id), the factor the
// encoder's features are scaled by before the head, and the model.
type HeadInfo struct {
	Labels       []string `json:"labels"`
	FeatureScale float64  `json:"feature_scale"`
	Model        string   `json:"model"`
}

// The checkpoint choices of LoadClassifierFrom besides a folder.
const (
	CheckpointAuto = ""     // RUN/adapter when present, else checkpoints/best, else checkpoints/last
	CheckpointBest = "best" // RUN/checkpoints/best: the best evaluation so far
	CheckpointLast = "last" // RUN/checkpoints/last: the latest checkpoint
)

// Weights says which saved weights a classifier was loaded from.
type Weights struct {
	Dir        string // the folder read: an adapter folder, or a checkpoint folder
	Checkpoint bool   // Dir is a checkpoint folder (checkpoint.safetensors + state.json)
	Step       int64  // the checkpoint's optimizer step (Checkpoint only)
	Note       string // why the default choice fell back to a checkpoint, if it did
}

// String describes the weights in one line, for a log.
func (w Weights) String() string {
	s := w.Dir
	if w.Checkpoint {
		s += fmt.Sprintf(" (checkpoint of step %d)", w.Step)
	}
	if w.Note != "" {
		s += ": " + w.Note
	}
	return s
}

// LoadClassifier is LoadClassifierFrom(runDir, CheckpointAuto) without the Weights.
func LoadClassifier(runDir string) (*classify.Task, error) {
	task, _, err := LoadClassifierFrom(runDir, CheckpointAuto)
	return task, err
}

// LoadClassifierFrom rebuilds a trained classifier from a run folder: the encoder and run
// settings from RUN/config.json, the label set from RUN/head.json, and the weights checkpoint
// names: CheckpointAuto (RUN/adapter, written when a run finishes, when present; else the best
// checkpoint; else the last one), CheckpointBest, CheckpointLast, or a folder (a checkpoint
// folder, or for adapter methods an adapter folder; a relative path not found from the working
// directory is looked up in runDir). Adapter methods read the adapter (which carries the head);
// full and frozen read the checkpoint's tensors. head.json's labels must match the head's
// output width. It returns the weights it read.
func LoadClassifierFrom(runDir, checkpoint string) (*classify.Task, Weights, error) {
	c, err := LoadRunConfig(runDir)
	if err != nil {
		return nil, Weights{}, err
	}
	method, err := peft.ParseMethod(c.Method)
	if err != nil {
		return nil, Weights{}, fmt.Errorf("run %s: %s: %w", runDir, ConfigFile, err)
	}
	h, err := readHead(runDir)
	if err != nil {
		return nil, Weights{}, err
	}
	w, err := resolveWeights(runDir, checkpoint, method.HasAdapter())
	if err != nil {
		return nil, Weights{}, err
	}
	headFile := filepath.Join(w.Dir, train.CheckpointTensors)
	if method.HasAdapter() {
		adir := w.Dir
		if w.Checkpoint {
			adir = filepath.Join(w.Dir, AdapterDir)
			if !isAdapter(adir) {
				return nil, w, fmt.Errorf("checkpoint %s has no %s/ folder (%s): give RUN/adapter or another checkpoint", w.Dir, AdapterDir, adapterio.ConfigFile)
			}
		}
		headFile = filepath.Join(adir, adapterio.WeightsFile)
		w.Dir = adir
	} else {
		// Check the saved head against head.json before the store is built with it.
		shape, err := savedShape(headFile, "/"+classify.HeadScope+"/weight")
		if err != nil {
			return nil, w, err
		}
		if shape == nil {
			return nil, w, fmt.Errorf("run %s: the saved weights %s hold no classification head (/%s/weight)", runDir, headFile, classify.HeadScope)
		}
		if err := checkHeadShape(runDir, h, headFile, shape); err != nil {
			return nil, w, err
		}
	}
	enc, store, _, err := loadEncoder(c)
	if err != nil {
		return nil, w, err
	}
	task := &classify.Task{Enc: enc, Store: store, NumClasses: len(h.Labels), Labels: h.Labels, FeatureScale: h.FeatureScale, PadTo: 16}
	if method.HasAdapter() {
		inj, err := adapterio.LoadIntoStore(w.Dir, store, enc.Linears())
		if err != nil {
			return nil, w, err
		}
		task.Inj = inj
	} else {
		pc, err := c.PeftConfig(1)
		if err != nil {
			return nil, w, err
		}
		pc.ModulesToSave = []string{classify.HeadScope}
		if task.Inj, err = peft.Inject(pc, enc.Linears()); err != nil {
			return nil, w, err
		}
		if err := task.InitHead(c.Seed); err != nil {
			return nil, w, err
		}
		if err := task.Inj.Attach(store); err != nil {
			return nil, w, err
		}
		if _, err := train.LoadCheckpoint(w.Dir, store); err != nil {
			return nil, w, err
		}
	}
	v := task.Store.GetVariable("/" + classify.HeadScope + "/weight")
	if v == nil {
		return nil, w, fmt.Errorf("run %s: the saved weights %s hold no classification head (/%s/weight)", runDir, headFile, classify.HeadScope)
	}
	if err := checkHeadShape(runDir, h, headFile, v.Shape().Dimensions); err != nil {
		return nil, w, err
	}
	if d := v.Shape().Dimensions; d[1] != enc.EmbedDim() {
		return nil, w, fmt.Errorf("run %s: the head weight /%s/weight in %s has shape %v, but the encoder gives %d features: the weights are not from this model (%s)",
			runDir, classify.HeadScope, headFile, d, enc.EmbedDim(), c.Model)
	}
	return task, w, nil
}

// readHead reads and checks RUN/head.json.
func readHead(runDir string) (HeadInfo, error) {
	var h HeadInfo
	path := filepath.Join(runDir, HeadFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return h, fmt.Errorf("run %s: %w", runDir, err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("run %s: %s: %w", runDir, HeadFile, err)
	}
	if len(h.Labels) == 0 {
		return h, fmt.Errorf("%s: no labels", path)
	}
	seen := map[string]bool{}
	for _, l := range h.Labels {
		if seen[l] {
			return h, fmt.Errorf("%s: label %q is listed twice", path, l)
		}
		seen[l] = true
	}
	return h, nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// checkHeadShape checks that the head weight of shape shape, saved in file, has one output per
// label of head.json.
func checkHeadShape(runDir string, h HeadInfo, file string, shape []int) error {
	if len(shape) != 2 || shape[0] != len(h.Labels) {
		out := "no"
		if len(shape) > 0 {
			out = fmt.Sprint(shape[0])
		}
		return fmt.Errorf("%s lists %s %q, but the head weight /%s/weight in %s has %s outputs (shape %v): head.json and the weights do not belong together",
			filepath.Join(runDir, HeadFile), plural(len(h.Labels), "label"), h.Labels, classify.HeadScope, file, out, shape)
	}
	return nil
}

func isAdapter(dir string) bool { return fileExists(filepath.Join(dir, adapterio.ConfigFile)) }

func isCheckpoint(dir string) bool {
	return fileExists(filepath.Join(dir, train.CheckpointState)) && fileExists(filepath.Join(dir, train.CheckpointTensors))
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}

// checkpointStep reads the step of a checkpoint folder (-1 when state.json cannot be read).
func checkpointStep(dir string) int64 {
	if st, ok := train.ReadState(dir); ok {
		return st.Step
	}
	return -1
}

func checkpointWeights(dir, note string) Weights {
	return Weights{Dir: dir, Checkpoint: true, Step: checkpointStep(dir), Note: note}
}

// resolveWeights picks the folder LoadClassifierFrom reads (see there).
func resolveWeights(runDir, choice string, adapter bool) (Weights, error) {
	ckDir := filepath.Join(runDir, train.CheckpointDir)
	best, last := filepath.Join(ckDir, train.BestDir), filepath.Join(ckDir, train.LastDir)
	switch choice {
	case CheckpointAuto:
		ad := filepath.Join(runDir, AdapterDir)
		switch {
		case adapter && isAdapter(ad):
			return Weights{Dir: ad}, nil
		case isCheckpoint(best):
			note := ""
			if adapter {
				note = fmt.Sprintf("no %s (singlora train writes it when a run finishes), so the best checkpoint", ad)
			}
			return checkpointWeights(best, note), nil
		case isCheckpoint(last):
			return checkpointWeights(last, fmt.Sprintf("no %s, so the last checkpoint", best)), nil
		}
		what := "checkpoints/best or checkpoints/last"
		if adapter {
			what = "adapter/, " + what
		}
		return Weights{}, fmt.Errorf("run %s has no saved weights: no %s (did the run stop before its first checkpoint?)", runDir, what)
	case CheckpointBest, CheckpointLast:
		dir := filepath.Join(ckDir, choice)
		if !isCheckpoint(dir) {
			return Weights{}, fmt.Errorf("checkpoint %q: %s is not a checkpoint (%s + %s); the run has: %s",
				choice, dir, train.CheckpointTensors, train.CheckpointState, available(runDir, adapter))
		}
		return checkpointWeights(dir, ""), nil
	}
	dir := choice
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && !filepath.IsAbs(dir) {
		if _, err := os.Stat(filepath.Join(runDir, dir)); err == nil {
			dir = filepath.Join(runDir, dir)
		}
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Weights{}, fmt.Errorf("checkpoint %q: no such folder (want best, last, or a checkpoint or adapter folder; the run has: %s)", choice, available(runDir, adapter))
	case err != nil:
		return Weights{}, fmt.Errorf("checkpoint %q: %w", choice, err)
	case !fi.IsDir():
		return Weights{}, fmt.Errorf("checkpoint %q is a file: want best, last, or a checkpoint folder (%s + %s) or an adapter folder (%s)",
			choice, train.CheckpointTensors, train.CheckpointState, adapterio.ConfigFile)
	case isCheckpoint(dir):
		return checkpointWeights(dir, ""), nil
	case isAdapter(dir) && adapter:
		return Weights{Dir: dir}, nil
	case isAdapter(dir):
		return Weights{}, fmt.Errorf("checkpoint %q is an adapter folder, but the run's method saves no adapter: give a checkpoint folder (%s + %s)",
			choice, train.CheckpointTensors, train.CheckpointState)
	}
	return Weights{}, fmt.Errorf("checkpoint %q: %s is neither a checkpoint folder (%s + %s) nor an adapter folder (%s)",
		choice, dir, train.CheckpointTensors, train.CheckpointState, adapterio.ConfigFile)
}

// available lists the weights a run folder holds, for messages.
func available(runDir string, adapter bool) string {
	var have []string
	if adapter && isAdapter(filepath.Join(runDir, AdapterDir)) {
		have = append(have, filepath.Join(runDir, AdapterDir))
	}
	for _, name := range []string{train.BestDir, train.LastDir} {
		if d := filepath.Join(runDir, train.CheckpointDir, name); isCheckpoint(d) {
			have = append(have, fmt.Sprintf("%s (step %d)", name, checkpointStep(d)))
		}
	}
	if len(have) == 0 {
		return "no saved weights"
	}
	return strings.Join(have, ", ")
}

// savedShape returns the shape of tensor name in a safetensors file, reading only its header;
// nil when the file has no such tensor.
func savedShape(path, name string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("%s: reading the safetensors header: %w", path, err)
	}
	if fi, err := f.Stat(); err == nil && n > uint64(fi.Size()) {
		return nil, fmt.Errorf("%s: the safetensors header claims %d bytes, more than the file holds", path, n)
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(f, header); err != nil {
		return nil, fmt.Errorf("%s: reading the safetensors header: %w", path, err)
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(header, &entries); err != nil {
		return nil, fmt.Errorf("%s: the safetensors header is not valid JSON: %w", path, err)
	}
	raw, ok := entries[name]
	if !ok {
		return nil, nil
	}
	var e struct {
		Shape []int `json:"shape"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", path, name, err)
	}
	return e.Shape, nil
}

// Embeddings returns the encoder's sentence features (with the run's adapter) for texts. Texts
// longer than the encoder reads are noted on task.Warnings (see classify.Task.Tokenize).
func Embeddings(task *classify.Task, backend compute.Backend, texts []string) ([][]float32, error) {
	exec, err := train.NewInference(backend, task.Store, func(scope *model.Scope, ids, mask *Node) *Node {
		return ConvertDType(task.Enc.Embed(task.Inj, scope, ids, mask), dtypes.Float32)
	})
	if err != nil {
		return nil, err
	}
	rows := task.Tokenize(texts)
	d := task.Enc.EmbedDim()
	var out [][]float32
	for start := 0; start < len(rows); start += 64 {
		chunk := rows[start:min(start+64, len(rows))]
		ids, mask := task.Enc.PadBatch(chunk, 16)
		res, err := exec.Call(ids, mask)
		if err != nil {
			return nil, err
		}
		if dims := res[0].Shape().Dimensions; len(dims) != 2 || dims[0] != len(chunk) || dims[1] != d {
			return nil, fmt.Errorf("embedding batch at %d: the encoder gave shape %v for %d texts, want [%d %d]", start, dims, len(chunk), len(chunk), d)
		}
		flat, err := tensors.CopyFlatData[float32](res[0])
		if err != nil {
			return nil, err
		}
		for i := range chunk {
			out = append(out, flat[i*d:(i+1)*d:(i+1)*d])
		}
	}
	return out, nil
}
