package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/internal/varnames"
	"github.com/singlora/singlora/safetensors"
)

// State is the non-tensor part of a checkpoint.
type State struct {
	Step       int64              `json:"step"`        // optimizer steps taken
	Examples   int64              `json:"examples"`    // training examples consumed (data position)
	BestMetric *float64           `json:"best_metric"` // best evaluation metric so far (nil: none yet)
	BestStep   int64              `json:"best_step"`
	BadEvals   int                `json:"bad_evals"` // evaluations since the best (early stopping)
	Wall       float64            `json:"wall_seconds"`
	Extra      map[string]float64 `json:"extra,omitempty"`
}

var dtypeNames = map[dtypes.DType]string{
	dtypes.Float32: safetensors.F32, dtypes.Float64: safetensors.F64, dtypes.Float16: safetensors.F16,
	dtypes.BFloat16: safetensors.BF16, dtypes.Int64: safetensors.I64, dtypes.Int32: safetensors.I32,
	dtypes.Uint64: safetensors.U64, dtypes.Uint32: safetensors.U32, dtypes.Uint8: safetensors.U8,
	dtypes.Bool: safetensors.Bool,
}

// TensorToSafetensors converts a GoMLX tensor to a safetensors tensor (raw bytes, same dtype).
func TensorToSafetensors(name string, t *tensors.Tensor) (safetensors.Tensor, error) {
	dt, ok := dtypeNames[t.DType()]
	if !ok {
		return safetensors.Tensor{}, fmt.Errorf("tensor %s: dtype %s cannot be saved", name, t.DType())
	}
	out := safetensors.Tensor{Name: name, DType: dt, Shape: append([]int{}, t.Shape().Dimensions...)}
	err := t.ConstBytes(func(b []byte) { out.Data = append([]byte(nil), b...) })
	return out, err
}

// SafetensorsToTensor converts a safetensors tensor back to a GoMLX tensor.
func SafetensorsToTensor(st *safetensors.Tensor) (*tensors.Tensor, error) {
	for dt, name := range dtypeNames {
		if name == st.DType {
			t := tensors.FromShape(shapes.Make(dt, st.Shape...))
			var err error
			if cerr := t.MutableBytes(func(b []byte) {
				if len(b) != len(st.Data) {
					err = fmt.Errorf("tensor %s: %d bytes for shape %v %s", st.Name, len(st.Data), st.Shape, st.DType)
					return
				}
				copy(b, st.Data)
			}); cerr != nil {
				return nil, cerr
			}
			return t, err
		}
	}
	return nil, fmt.Errorf("tensor %s: dtype %s not supported", st.Name, st.DType)
}

// CheckpointVariables returns the variables a checkpoint holds: everything trainable, the
// optimizer's state and step counter, and the RNG state — not the frozen base weights, which are
// reloaded from the model.
func CheckpointVariables(store *model.Store) []*model.Variable {
	var vs []*model.Variable
	for v := range store.IterVariables() {
		p := v.Path()
		if v.Trainable || varnames.IsOptimizerState(p) || varnames.IsRNGState(p) {
			if strings.HasPrefix(p, accumPrefix) {
				continue // zero between updates
			}
			vs = append(vs, v)
		}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Path() < vs[j].Path() })
	return vs
}

// The files of a checkpoint folder: the variables, and the State (written last, so a folder
// with a readable state.json is a complete checkpoint).
const (
	CheckpointTensors = "checkpoint.safetensors"
	CheckpointState   = "state.json"
)

// SaveCheckpoint writes the checkpoint variables and state into dir atomically: everything is
// written into a temporary sibling folder, synced, and swapped into place (atomicfile.ReplaceDir);
// a previous checkpoint at dir is replaced only after the new one is complete, and state.json is
// written last, so a folder with a state.json is a complete checkpoint. extra files (name → writer) are
// written into the same folder (e.g. an adapter export).
func SaveCheckpoint(dir string, store *model.Store, st State, extra func(tmpDir string) error) (err error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp, err := atomicfile.TempDir(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	var ts []safetensors.Tensor
	for _, v := range CheckpointVariables(store) {
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("checkpoint: variable %s: %w", v.Path(), err)
		}
		t, err := TensorToSafetensors(v.Path(), val)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		ts = append(ts, t)
	}
	if err := safetensors.Write(filepath.Join(tmp, CheckpointTensors), ts, map[string]string{"format": "singlora-checkpoint"}); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if extra != nil {
		if err := extra(tmp); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	// state.json is written last: its presence marks a complete checkpoint (RecoverCheckpoints).
	js, _ := json.MarshalIndent(st, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(tmp, CheckpointState), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := atomicfile.ReplaceDir(tmp, dir); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// LoadCheckpoint restores a checkpoint's variables into store (creating optimizer variables that
// do not exist yet) and returns its state. A variable whose shape or dtype differs is an error.
func LoadCheckpoint(dir string, store *model.Store) (State, error) {
	var st State
	js, err := os.ReadFile(filepath.Join(dir, CheckpointState))
	if err != nil {
		return st, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return st, fmt.Errorf("checkpoint %s: state.json: %w", dir, err)
	}
	f, err := safetensors.Read(filepath.Join(dir, CheckpointTensors))
	if err != nil {
		return st, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	for i := range f.Tensors {
		ts := &f.Tensors[i]
		t, err := SafetensorsToTensor(ts)
		if err != nil {
			return st, fmt.Errorf("checkpoint %s: %w", dir, err)
		}
		v := store.GetVariable(ts.Name)
		if v == nil {
			if !varnames.IsOptimizerState(ts.Name) && !varnames.IsRNGState(ts.Name) {
				return st, fmt.Errorf("checkpoint %s: variable %s does not exist in the model", dir, ts.Name)
			}
			nv, err := store.CreateVariable(ts.Name, t)
			if err != nil {
				return st, fmt.Errorf("checkpoint %s: %w", dir, err)
			}
			nv.SetTrainable(false)
			continue
		}
		if !v.Shape().Equal(t.Shape()) {
			return st, fmt.Errorf("checkpoint %s: variable %s has shape %s in the model, %s in the checkpoint", dir, ts.Name, v.Shape(), t.Shape())
		}
		if err := v.SetValue(t); err != nil {
			return st, fmt.Errorf("checkpoint %s: %w", dir, err)
		}
	}
	return st, nil
}
