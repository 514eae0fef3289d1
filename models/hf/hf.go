// Package hf loads Hugging Face checkpoint folders (config.json + model.safetensors, or sharded
// model-0000N-of-0000M.safetensors with model.safetensors.index.json) into a GoMLX model.Store,
// for the model definitions in models/bert, models/llama and models/gpt2.
//
// Weights in F32, F16, BF16 (or F64) become float32 variables, except the matrices (linear
// weights, embedding tables, LM heads) of a model loaded with a half-precision base (Weights.Base,
// `--base-dtype`): those stay bf16 or f16, and the models compute their products with float32
// accumulation (peft.Linear). Norm weights and biases are always float32. Only the files' headers
// are read when a checkpoint is opened; each tensor is then read from disk into its variable's
// memory, so loading peaks near the variables' own size (measured: 741 MB for a 749 MB sharded F32
// Llama, 1.86 GB before streaming). Every problem is reported before any training starts, naming what is wrong: a missing
// file, a config field the code does not support, a tensor that is missing or has the wrong shape,
// an architecture the package does not implement.
//
// A tensor named "a.b.0.c.weight" in the checkpoint becomes the variable "weight" in scope
// "/a/b/0/c" (peft.ModuleScope of the module path "a.b.0.c"), so that adapters address linear
// layers by their checkpoint module names, as PEFT does.
//
// The package only reads checkpoints: the graph building blocks the models share are in
// models/nn, the causal-LM batching and sampling in models/lm.
package hf

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// File names of a checkpoint folder.
const (
	ConfigFile  = "config.json"
	WeightsFile = "model.safetensors"
	IndexFile   = "model.safetensors.index.json"
)

// RawConfig is config.json as field name → raw JSON value.
type RawConfig struct {
	Dir    string
	Fields map[string]json.RawMessage
}

// ReadConfig reads dir/config.json.
func ReadConfig(dir string) (*RawConfig, error) {
	path := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no %s in the model folder", dir, ConfigFile)
		}
		return nil, err
	}
	rc := &RawConfig{Dir: dir}
	if err := json.Unmarshal(b, &rc.Fields); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	return rc, nil
}

func (c *RawConfig) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s", filepath.Join(c.Dir, ConfigFile), fmt.Sprintf(format, args...))
}

// IsSet reports whether field is present with a non-null value.
func (c *RawConfig) IsSet(field string) bool {
	v, ok := c.Fields[field]
	return ok && strings.TrimSpace(string(v)) != "null"
}

// Decode decodes field into dst if it is set; it returns whether it was.
func (c *RawConfig) Decode(field string, dst any) (bool, error) {
	if !c.IsSet(field) {
		return false, nil
	}
	if err := json.Unmarshal(c.Fields[field], dst); err != nil {
		return true, c.errorf("field %q: %v", field, err)
	}
	return true, nil
}

// Int returns the integer field, or def if it is absent or null; required fields pass def < 0
// and get an error when absent.
func (c *RawConfig) Int(field string, def int) (int, error) {
	var f float64
	ok, err := c.Decode(field, &f)
	if err != nil {
		return 0, err
	}
	if !ok {
		if def < 0 {
			return 0, c.errorf("required field %q is missing", field)
		}
		return def, nil
	}
	if f != math.Trunc(f) || f < 0 {
		return 0, c.errorf("field %q = %v is not a non-negative integer", field, f)
	}
	return int(f), nil
}

// Float returns the number field, or def if absent or null.
func (c *RawConfig) Float(field string, def float64) (float64, error) {
	var f float64
	ok, err := c.Decode(field, &f)
	if !ok || err != nil {
		return def, err
	}
	return f, nil
}

// String returns the string field, or def if absent or null.
func (c *RawConfig) String(field, def string) (string, error) {
	var s string
	ok, err := c.Decode(field, &s)
	if !ok || err != nil {
		return def, err
	}
	return s, nil
}

// Bool returns the boolean field, or def if absent or null.
func (c *RawConfig) Bool(field string, def bool) (bool, error) {
	var b bool
	ok, err := c.Decode(field, &b)
	if !ok || err != nil {
		return def, err
	}
	return b, nil
}

// Unsupported returns an error naming field if it is set (non-null, and not one of the allowed
// raw JSON values, e.g. "false").
func (c *RawConfig) Unsupported(field string, allowed ...string) error {
	if !c.IsSet(field) {
		return nil
	}
	v := strings.TrimSpace(string(c.Fields[field]))
	if slices.Contains(allowed, v) {
		return nil
	}
	return c.errorf("config field %q = %s is not supported by this implementation", field, v)
}

// OneOf returns the string field (def if absent) and an error naming it if the value is not one
// of allowed.
func (c *RawConfig) OneOf(field, def string, allowed ...string) (string, error) {
	s, err := c.String(field, def)
	if err != nil {
		return "", err
	}
	if !slices.Contains(allowed, s) {
		return "", c.errorf("config field %q: %q is not supported (supported: %s)", field, s, strings.Join(allowed, ", "))
	}
	return s, nil
}

// Architecture checks config.json's "model_type" and "architectures" against the supported ones
// and returns the model type and the first architecture ("" if the field is absent).
func (c *RawConfig) Architecture(modelTypes, architectures []string) (modelType, arch string, err error) {
	modelType, err = c.String("model_type", "")
	if err != nil {
		return "", "", err
	}
	var archs []string
	if _, err := c.Decode("architectures", &archs); err != nil {
		return "", "", err
	}
	if modelType == "" && len(archs) == 0 {
		return "", "", c.errorf("neither \"model_type\" nor \"architectures\" is set: cannot tell the architecture")
	}
	if modelType != "" && !slices.Contains(modelTypes, modelType) {
		return "", "", c.errorf("unknown architecture: model_type %q (this loader supports %s)", modelType, strings.Join(modelTypes, ", "))
	}
	for _, a := range archs {
		if !slices.Contains(architectures, a) {
			return "", "", c.errorf("unknown architecture %q in \"architectures\" (this loader supports %s)", a, strings.Join(architectures, ", "))
		}
	}
	if len(archs) > 0 {
		arch = archs[0]
	}
	return modelType, arch, nil
}

// Weights are a checkpoint's tensors, from one file or from the shards an index lists. Opening
// reads and checks only the files' headers; each tensor's data is read from disk when it is loaded,
// straight into its variable, so loading never holds a second copy of the checkpoint. Close it
// when done.
type Weights struct {
	Dir string
	// Base is the dtype of the matrices (rank ≥ 2 tensors) Load creates; BaseF32 (the zero
	// value) converts everything to float32. See BaseDType.
	Base    BaseDType
	tensors map[string]*safetensors.Tensor // metadata only (Data nil)
	reader  map[string]*safetensors.Reader // tensor → the open file holding it
	readers []*safetensors.Reader
}

// OpenWeights opens dir/model.safetensors, or the shards listed by dir/model.safetensors.index.json.
func OpenWeights(dir string) (*Weights, error) {
	w := &Weights{Dir: dir, tensors: map[string]*safetensors.Tensor{}, reader: map[string]*safetensors.Reader{}}
	ok := false
	defer func() {
		if !ok {
			w.Close()
		}
	}()
	single := filepath.Join(dir, WeightsFile)
	index := filepath.Join(dir, IndexFile)
	if _, err := os.Stat(single); err == nil {
		if err := w.addFile(WeightsFile, nil); err != nil {
			return nil, err
		}
		ok = true
		return w, nil
	}
	b, err := os.ReadFile(index)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no %s or %s in the model folder", dir, WeightsFile, IndexFile)
		}
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: empty or missing \"weight_map\"", index)
	}
	shards := map[string][]string{}
	for name, f := range idx.WeightMap {
		if f == "" || filepath.Base(f) != f {
			return nil, fmt.Errorf("%s: tensor %q maps to %q, not a file name in the folder", index, name, f)
		}
		shards[f] = append(shards[f], name)
	}
	files := make([]string, 0, len(shards))
	for f := range shards {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		if err := w.addFile(f, shards[f]); err != nil {
			return nil, fmt.Errorf("%s: %w", index, err)
		}
	}
	ok = true
	return w, nil
}

func (w *Weights) addFile(name string, expect []string) error {
	path := filepath.Join(w.Dir, name)
	r, err := safetensors.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("shard %s is missing", path)
		}
		return err
	}
	w.readers = append(w.readers, r)
	for i := range r.Tensors {
		t := &r.Tensors[i]
		if prev, dup := w.reader[t.Name]; dup {
			return fmt.Errorf("tensor %q is in both %s and %s", t.Name, filepath.Base(prev.Path()), name)
		}
		w.tensors[t.Name] = t
		w.reader[t.Name] = r
	}
	for _, n := range expect {
		if r := w.reader[n]; r == nil || filepath.Base(r.Path()) != name {
			return fmt.Errorf("tensor %q is listed in shard %s, which does not contain it", n, name)
		}
	}
	return nil
}

// Close closes the checkpoint's files.
func (w *Weights) Close() {
	for _, r := range w.readers {
		_ = r.Close()
	}
	w.readers = nil
}

// Has reports whether the checkpoint has tensor name.
func (w *Weights) Has(name string) bool { _, ok := w.tensors[name]; return ok }

// Prefix returns the first of prefixes p for which the checkpoint has tensor p+probe (HF stores
// a head model's base under e.g. "bert." and a bare base model without it), or an error.
func (w *Weights) Prefix(probe string, prefixes ...string) (string, error) {
	for _, p := range prefixes {
		if w.Has(p + probe) {
			return p, nil
		}
	}
	tried := make([]string, len(prefixes))
	for i, p := range prefixes {
		tried[i] = p + probe
	}
	return "", fmt.Errorf("%s: checkpoint has none of the tensors %s: not this architecture's layout", w.Dir, strings.Join(tried, ", "))
}

// check returns tensor name's header entry after checking it has the expected shape and a float dtype.
func (w *Weights) check(name string, shape []int) (*safetensors.Tensor, error) {
	t, ok := w.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: checkpoint is missing tensor %q (expected shape %v)", w.Dir, name, shape)
	}
	if !slices.Equal(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v in the checkpoint, the config implies %v", w.Dir, name, t.Shape, shape)
	}
	if !safetensors.IsFloat(t.DType) {
		return nil, fmt.Errorf("%s: tensor %q has dtype %s; only F32, F16, BF16 and F64 weights are supported", w.Dir, name, t.DType)
	}
	return t, nil
}

// raw reads tensor t's bytes from its file.
func (w *Weights) raw(t *safetensors.Tensor) ([]byte, error) {
	r := w.reader[t.Name]
	n, _ := r.ByteSize(t.Name)
	raw := make([]byte, n)
	return raw, r.ReadData(t.Name, raw)
}

// nativeLittleEndian: float32 memory has safetensors' byte order, so F32 data can be read
// into a variable's memory as it is.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// BaseDType is how a model holds its frozen base matrices (`--base-dtype`).
type BaseDType string

// The base dtypes. BaseAuto keeps each matrix in its checkpoint dtype when that is F16 or BF16
// (float32 otherwise); BaseBF16 and BaseF16 convert every matrix to that dtype (rounding to
// nearest even); BaseF32 ("" too) converts everything to float32, as before half bases existed.
const (
	BaseAuto BaseDType = "auto"
	BaseBF16 BaseDType = "bf16"
	BaseF16  BaseDType = "f16"
	BaseF32  BaseDType = "f32"
)

// BaseDTypes lists the accepted values, for messages.
var BaseDTypes = []BaseDType{BaseAuto, BaseBF16, BaseF16, BaseF32}

// ParseBaseDType parses a --base-dtype value ("" is BaseAuto).
func ParseBaseDType(s string) (BaseDType, error) {
	if s == "" {
		return BaseAuto, nil
	}
	d := BaseDType(strings.ToLower(s))
	if d == "bfloat16" {
		d = BaseBF16
	} else if d == "float16" || d == "fp16" {
		d = BaseF16
	} else if d == "float32" || d == "fp32" {
		d = BaseF32
	}
	if !slices.Contains(BaseDTypes, d) {
		return "", fmt.Errorf("base dtype %q: want one of auto, bf16, f16, f32", s)
	}
	return d, nil
}

// For returns the dtype a tensor of checkpoint dtype ckpt and the given rank is held in: float32
// for vectors and scalars, and for matrices what d says.
func (d BaseDType) For(ckpt string, rank int) dtypes.DType {
	if rank < 2 {
		return dtypes.Float32
	}
	switch d {
	case BaseBF16:
		return dtypes.BFloat16
	case BaseF16:
		return dtypes.Float16
	case BaseAuto:
		switch ckpt {
		case safetensors.BF16:
			return dtypes.BFloat16
		case safetensors.F16:
			return dtypes.Float16
		}
	}
	return dtypes.Float32
}

// Load creates (or overwrites) the variable for checkpoint tensor name ("a.b.weight" → variable
// "weight" in scope "/a/b") in store, with the given shape, in the dtype w.Base gives it (For).
// Data already in that dtype (F32 → float32, BF16 → bf16, F16 → f16) is read from its file
// straight into the variable's memory; other dtypes are converted through a buffer of the
// tensor's own size, so loading holds at most one tensor besides the variables, and never a
// float32 copy of a matrix held in 16 bits.
func (w *Weights) Load(store *model.Store, name string, shape ...int) error {
	t, err := w.check(name, shape)
	if err != nil {
		return err
	}
	dt := w.Base.For(t.DType, len(shape))
	val := tensors.FromShape(shapes.Make(dt, shape...))
	var lerr error
	same := dt == dtypes.Float32 && t.DType == safetensors.F32 ||
		dt == dtypes.BFloat16 && t.DType == safetensors.BF16 || dt == dtypes.Float16 && t.DType == safetensors.F16
	switch {
	case same && nativeLittleEndian:
		err = val.MutableBytes(func(b []byte) { lerr = w.reader[name].ReadData(name, b) })
	case dt == dtypes.Float32:
		raw, rerr := w.raw(t)
		if rerr != nil {
			return rerr
		}
		err = val.MutableFlatData(func(flat any) { lerr = safetensors.DecodeFloat32s(t.DType, raw, flat.([]float32)) })
	default: // to 16 bits, one value at a time through float32
		raw, rerr := w.raw(t)
		if rerr != nil {
			return rerr
		}
		err = val.MutableBytes(func(b []byte) { lerr = encodeHalf(dt, t.DType, raw, b) })
	}
	if err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("%s: tensor %q: %w", w.Dir, name, err)
	}
	return setVariable(store, name, val, shape)
}

// encodeHalf converts little-endian src values of checkpoint dtype ckpt into dst, the memory of a
// bf16 or f16 tensor (native byte order), rounding to nearest even.
func encodeHalf(dt dtypes.DType, ckpt string, src, dst []byte) error {
	n := len(dst) / 2
	buf := make([]float32, min(n, 1<<16))
	size := len(src) / max(n, 1)
	for start := 0; start < n; start += len(buf) {
		m := min(len(buf), n-start)
		if err := safetensors.DecodeFloat32s(ckpt, src[start*size:(start+m)*size], buf[:m]); err != nil {
			return err
		}
		for i, f := range buf[:m] {
			h := safetensors.Float32ToBF16(f)
			if dt == dtypes.Float16 {
				h = safetensors.Float32ToF16(f)
			}
			binary.NativeEndian.PutUint16(dst[2*(start+i):], h)
		}
	}
	return nil
}

// LoadLinear loads module's weight (shape [out,in], or [in,out] for layout InOut) and, if
// spec.Bias, its bias [out].
func (w *Weights) LoadLinear(store *model.Store, spec peft.LinearSpec) error {
	wshape := []int{spec.Out, spec.In}
	if spec.Layout == peft.InOut {
		wshape = []int{spec.In, spec.Out}
	}
	if err := w.Load(store, spec.Path+".weight", wshape...); err != nil {
		return err
	}
	if spec.Bias {
		return w.Load(store, spec.Path+".bias", spec.Out)
	}
	return nil
}

// VariablePath returns the store path of checkpoint tensor name: "a.b.weight" → "/a/b/weight".
func VariablePath(name string) string { return peft.ModuleScope(name) }

// SetVariable creates or overwrites the float32 variable for checkpoint tensor name (whatever
// w.Base says: tests and converters set exact values with it).
func SetVariable(store *model.Store, name string, vals []float32, shape ...int) error {
	return setVariable(store, name, tensors.FromFlatDataAndDimensions(vals, shape...), shape)
}

func setVariable(store *model.Store, name string, t *tensors.Tensor, shape []int) error {
	path := VariablePath(name)
	if v := store.GetVariable(path); v != nil {
		if !slices.Equal(v.Shape().Dimensions, shape) {
			return fmt.Errorf("variable %s exists with shape %v, cannot load %v", path, v.Shape().Dimensions, shape)
		}
		return v.SetValue(t)
	}
	if _, err := store.CreateVariable(path, t); err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return nil
}
