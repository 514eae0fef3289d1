package finetune

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/classify"
	"github.com/singlora/singlora/models"
	"github.com/singlora/singlora/peft"
)

// NamedRun is one run of LoadClassifiers: a name to choose it by and its run folder.
type NamedRun struct{ Name, Dir string }

// Classifiers are the classifiers of several adapter runs that fine-tuned the same model, on one
// loaded encoder: each run's adapter (which carries its head) is kept in an adapterio.Set, and
// Activate makes one of them the model's, without loading the encoder again.
type Classifiers struct {
	enc     models.Encoder
	store   *model.Store
	set     *adapterio.Set
	heads   map[string]HeadInfo
	weights map[string]Weights
	names   []string
}

// LoadClassifiers loads the encoder of the first run and the adapter of every run (the weights
// checkpoint names, as LoadClassifierFrom reads them). The runs must have trained an adapter
// method (full and frozen runs change the base itself: classify them one at a time) on the same
// model folder, with the same base dtype and maximum length; names must be distinct.
func LoadClassifiers(runs []NamedRun, checkpoint string) (*Classifiers, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("no runs given")
	}
	cs := &Classifiers{heads: map[string]HeadInfo{}, weights: map[string]Weights{}}
	var first Config
	dirs := map[string]string{}
	for i, r := range runs {
		if _, dup := cs.heads[r.Name]; dup {
			return nil, fmt.Errorf("two runs named %q; name them NAME=RUN", r.Name)
		}
		c, err := LoadRunConfig(r.Dir)
		if err != nil {
			return nil, err
		}
		method, err := peft.ParseMethod(c.Method)
		if err != nil {
			return nil, fmt.Errorf("run %s: %s: %w", r.Dir, ConfigFile, err)
		}
		if !method.HasAdapter() {
			return nil, fmt.Errorf("run %s trained with method %s, which changes the model itself (no adapter to switch): classify it on its own", r.Dir, method)
		}
		h, err := readHead(r.Dir)
		if err != nil {
			return nil, err
		}
		w, err := resolveWeights(r.Dir, checkpoint, true)
		if err != nil {
			return nil, err
		}
		if w.Checkpoint {
			adir := filepath.Join(w.Dir, AdapterDir)
			if !isAdapter(adir) {
				return nil, fmt.Errorf("checkpoint %s has no %s/ folder (%s): give RUN/adapter or another checkpoint", w.Dir, AdapterDir, adapterio.ConfigFile)
			}
			w.Dir = adir
		}
		if i == 0 {
			first = c
		} else if err := sameBase(runs[0].Dir, first, r.Dir, c); err != nil {
			return nil, err
		}
		cs.heads[r.Name], cs.weights[r.Name], dirs[r.Name] = h, w, w.Dir
		cs.names = append(cs.names, r.Name)
	}
	enc, store, _, err := loadEncoder(first)
	if err != nil {
		return nil, err
	}
	cs.enc, cs.store = enc, store
	cs.set = adapterio.NewSet(store, enc.Linears())
	for _, name := range cs.names {
		if err := cs.set.Add(name, dirs[name]); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// sameBase refuses a run that fine-tuned another model, or the same one held differently.
func sameBase(dirA string, a Config, dirB string, b Config) error {
	pa, pb := absOr(a.Model), absOr(b.Model)
	switch {
	case pa != pb:
		return fmt.Errorf("runs %s and %s fine-tuned different models (%s, %s): several runs share one base only when it is the same", dirA, dirB, a.Model, b.Model)
	case a.BaseDType != b.BaseDType || a.MaxLength != b.MaxLength:
		return fmt.Errorf("runs %s and %s hold the model differently (base_dtype %q/%q, max_length %d/%d): classify them separately", dirA, dirB, a.BaseDType, b.BaseDType, a.MaxLength, b.MaxLength)
	}
	return nil
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Names returns the runs' names in the order given.
func (cs *Classifiers) Names() []string { return append([]string(nil), cs.names...) }

// Weights returns which weights the run called name was loaded from.
func (cs *Classifiers) Weights(name string) Weights { return cs.weights[name] }

// Activate makes the run called name the model's (its adapter and head) and returns its
// classifier. Tasks returned earlier must not be used after another Activate.
func (cs *Classifiers) Activate(name string) (*classify.Task, error) {
	h, ok := cs.heads[name]
	if !ok {
		return nil, fmt.Errorf("no run %q loaded (loaded: %s)", name, strings.Join(cs.names, ", "))
	}
	inj, err := cs.set.Activate(name)
	if err != nil {
		return nil, err
	}
	w := cs.weights[name]
	v := cs.store.GetVariable("/" + classify.HeadScope + "/weight")
	if v == nil {
		return nil, fmt.Errorf("run %q: the adapter %s holds no classification head (/%s/weight)", name, w.Dir, classify.HeadScope)
	}
	file := filepath.Join(w.Dir, adapterio.WeightsFile)
	if err := checkHeadShape(w.Dir, h, file, v.Shape().Dimensions); err != nil {
		return nil, err
	}
	if d := v.Shape().Dimensions; d[1] != cs.enc.EmbedDim() {
		return nil, fmt.Errorf("run %q: the head weight in %s has shape %v, but the encoder gives %d features", name, file, d, cs.enc.EmbedDim())
	}
	return &classify.Task{Enc: cs.enc, Store: cs.store, Inj: inj, NumClasses: len(h.Labels), Labels: h.Labels, FeatureScale: h.FeatureScale, PadTo: 16}, nil
}
