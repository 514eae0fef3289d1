package finetune

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gomlx/compute"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/models/use"
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
	if c.Model != "use" {
		return nil, fmt.Errorf("run %s: model %q is not supported here", runDir, c.Model)
	}
	m, err := use.New("")
	if err != nil {
		return nil, err
	}
	method, err := peft.ParseMethod(c.Method)
	if err != nil {
		return nil, err
	}
	task := &classify.Task{Enc: m, Store: m.Store, NumClasses: len(h.Labels), Labels: h.Labels, FeatureScale: h.FeatureScale, PadTo: 16}
	if method.HasAdapter() {
		inj, err := adapterio.LoadIntoStore(filepath.Join(runDir, AdapterDir), m.Store, m.Linears())
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
		if task.Inj, err = peft.Inject(pc, m.Linears()); err != nil {
			return nil, err
		}
		if err := task.InitHead(c.Seed); err != nil {
			return nil, err
		}
		if err := task.Inj.Attach(m.Store); err != nil {
			return nil, err
		}
		ck := filepath.Join(runDir, train.CheckpointDir, train.BestDir)
		if _, err := os.Stat(ck); err != nil {
			ck = filepath.Join(runDir, train.CheckpointDir, train.LastDir)
		}
		if _, err := train.LoadCheckpoint(ck, m.Store); err != nil {
			return nil, err
		}
	}
	if task.Store.GetVariable("/"+classify.HeadScope+"/weight") == nil {
		return nil, fmt.Errorf("run %s: the saved weights hold no classification head", runDir)
	}
	return task, nil
}

// Embeddings returns the encoder's sentence embeddings (with the run's adapter) for texts.
func Embeddings(task *classify.Task, backend compute.Backend, texts []string) ([][]float32, error) {
	m, ok := task.Enc.(*use.Model)
	if !ok {
		return nil, fmt.Errorf("embeddings: encoder %T not supported", task.Enc)
	}
	e, err := m.NewEmbedder(backend, task.Inj)
	if err != nil {
		return nil, err
	}
	return e.EmbedTexts(texts)
}
