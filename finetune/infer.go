package finetune

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

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

// headInfo is RUN/head.json.
type headInfo struct {
	Labels       []string `json:"labels"`
	FeatureScale float64  `json:"feature_scale"`
	Model        string   `json:"model"`
}

// LoadClassifier rebuilds a trained classifier from a run folder: the encoder, the adapter from
// RUN/adapter (adapter methods; it carries the head) or the best checkpoint (full, frozen), and
// the label set from RUN/head.json.
func LoadClassifier(runDir string) (*classify.Task, error) {
	c, err := LoadRunConfig(runDir)
	if err != nil {
		return nil, err
	}
	var h headInfo
	b, err := os.ReadFile(filepath.Join(runDir, HeadFile))
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", runDir, err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("run %s: %s: %w", runDir, HeadFile, err)
	}
	enc, store, _, err := loadEncoder(c)
	if err != nil {
		return nil, err
	}
	method, err := peft.ParseMethod(c.Method)
	if err != nil {
		return nil, err
	}
	task := &classify.Task{Enc: enc, Store: store, NumClasses: len(h.Labels), Labels: h.Labels, FeatureScale: h.FeatureScale, PadTo: 16}
	if method.HasAdapter() {
		inj, err := adapterio.LoadIntoStore(filepath.Join(runDir, AdapterDir), store, enc.Linears())
		if err != nil {
			return nil, err
		}
		task.Inj = inj
	} else {
		pc, err := c.PeftConfig(1)
		if err != nil {
			return nil, err
		}
		pc.ModulesToSave = []string{classify.HeadScope}
		if task.Inj, err = peft.Inject(pc, enc.Linears()); err != nil {
			return nil, err
		}
		if err := task.InitHead(c.Seed); err != nil {
			return nil, err
		}
		if err := task.Inj.Attach(store); err != nil {
			return nil, err
		}
		ck := filepath.Join(runDir, train.CheckpointDir, train.BestDir)
		if _, err := os.Stat(ck); err != nil {
			ck = filepath.Join(runDir, train.CheckpointDir, train.LastDir)
		}
		if _, err := train.LoadCheckpoint(ck, store); err != nil {
			return nil, err
		}
	}
	if task.Store.GetVariable("/"+classify.HeadScope+"/weight") == nil {
		return nil, fmt.Errorf("run %s: the saved weights hold no classification head", runDir)
	}
	return task, nil
}

// Embeddings returns the encoder's sentence features (with the run's adapter) for texts.
func Embeddings(task *classify.Task, backend compute.Backend, texts []string) ([][]float32, error) {
	exec, err := train.NewInference(backend, task.Store, func(scope *model.Scope, ids, mask *Node) *Node {
		return ConvertDType(task.Enc.Embed(task.Inj, scope, ids, mask), dtypes.Float32)
	})
	if err != nil {
		return nil, err
	}
	rows := task.Enc.Tokenize(texts)
	d := task.Enc.EmbedDim()
	var out [][]float32
	for start := 0; start < len(rows); start += 64 {
		chunk := rows[start:min(start+64, len(rows))]
		ids, mask := task.Enc.PadBatch(chunk, 16)
		res, err := exec.Call(ids, mask)
		if err != nil {
			return nil, err
		}
		flat := tensors.MustCopyFlatData[float32](res[0])
		for i := range chunk {
			out = append(out, flat[i*d:(i+1)*d])
		}
	}
	return out, nil
}
