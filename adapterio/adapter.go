package adapterio

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/peft/tuner"
	"github.com/singlora/singlora/safetensors"
)

// Matrix is a row-major float32 tensor.
type Matrix struct {
	Shape []int
	Data  []float32
}

// Module is one adapted linear layer of an adapter.
type Module struct {
	Path    string
	In, Out int
	Layout  peft.Layout // layout of the base weight this module adapts
	// Tensors by adapter tensor name, as the method lists them (tuner.Tuner.Tensors; e.g.
	// peft.NameSingLoRAA, or peft.NameLoRAA and peft.NameLoRAB).
	Tensors map[string]*Matrix
}

// Spec returns the module as a peft.LinearSpec.
func (m *Module) Spec() peft.LinearSpec {
	return peft.LinearSpec{Path: m.Path, In: m.In, Out: m.Out, Layout: m.Layout}
}

// Params is the module's number of adapter parameters.
func (m *Module) Params() int {
	n := 0
	for _, t := range m.Tensors {
		n += len(t.Data)
	}
	return n
}

// SavedTensor is a tensor of a modules_to_save variable. Name is the variable path with dots
// (e.g. "classifier.weight"); the store path is "/" + Name with '.' → '/'.
type SavedTensor struct {
	Name string
	Matrix
}

// Adapter is an adapter folder loaded on the host.
type Adapter struct {
	Config  *Config
	Modules []*Module // in the order of the weights file
	Saved   []SavedTensor
}

// Module returns the adapted module with path p, or nil.
func (a *Adapter) Module(p string) *Module {
	for _, m := range a.Modules {
		if m.Path == p {
			return m
		}
	}
	return nil
}

// Method returns the method the adapter's config describes ("" if no registered method claims
// it; Load and FromTensors refuse such a config).
func (a *Adapter) Method() peft.Method {
	t, err := a.tuner()
	if err != nil {
		return ""
	}
	return t.Name()
}

// tuner returns the registered method the adapter's config describes.
func (a *Adapter) tuner() (tuner.Tuner, error) {
	t, _, err := tuner.ForFile(a.Config)
	return t, err
}

// Params is the total number of adapter parameters (modules_to_save excluded).
func (a *Adapter) Params() int {
	n := 0
	for _, m := range a.Modules {
		n += m.Params()
	}
	return n
}

// TensorName returns the file name of adapter tensor name of module (PEFT's convention):
// TensorPrefix + "<module>.<name>.weight", without ".weight" for the tensors whose method says so
// (tuner.TensorSpec.NoWeightSuffix: DoRA's magnitude).
func TensorName(module, name string) string {
	if tuner.AdapterTensorNames()[name] {
		return TensorPrefix + module + "." + name
	}
	return TensorPrefix + module + "." + name + ".weight"
}

// splitTensorName parses a file tensor name into (module, adapter tensor name) for the adapter
// tensor names of the registered methods; ok is false for other names (modules_to_save).
func splitTensorName(full string) (module, name string, ok bool) {
	rest := strings.TrimPrefix(full, TensorPrefix)
	names := tuner.AdapterTensorNames()
	for _, n := range sortedKeys(names) {
		if s, found := strings.CutSuffix(rest, "."+n+".weight"); found {
			return s, n, true
		}
	}
	for _, n := range sortedKeys(names) {
		if s, found := strings.CutSuffix(rest, "."+n); found && names[n] {
			return s, n, true
		}
	}
	return "", "", false
}

// ErrNoModuleShape is wrapped by the error Load returns for a SingLoRA module whose [out, in] is
// not in module_shapes and that no ShapeSource gives.
var ErrNoModuleShape = errors.New("a SingLoRA module's [out, in] must come from module_shapes when no base checkpoint or model is at hand (A is [max(in,out), r], which does not say which of in and out is the larger)")

// ShapeSource gives the [out, in] of an adapted module, whose base weight is stored in layout,
// when the adapter's module_shapes does not list it; the error says why it cannot.
type ShapeSource func(module string, layout peft.Layout) (outIn [2]int, err error)

// BaseShapes reads each module's [out, in] from the shape of the base checkpoint's tensor
// "<module>.weight" ([out, in], or [in, out] for the InOut layout).
func BaseShapes(base []safetensors.Tensor) ShapeSource {
	return func(module string, layout peft.Layout) ([2]int, error) {
		name := module + ".weight"
		for i := range base {
			if base[i].Name != name {
				continue
			}
			sh := base[i].Shape
			if len(sh) != 2 {
				return [2]int{}, fmt.Errorf("the base tensor %s has shape %v, not a matrix", name, sh)
			}
			if layout == peft.InOut {
				return [2]int{sh[1], sh[0]}, nil
			}
			return [2]int{sh[0], sh[1]}, nil
		}
		return [2]int{}, fmt.Errorf("the base checkpoint has no tensor %s to read [out, in] from", name)
	}
}

// ModelShapes reads each module's [out, in] from the model's linear layers.
func ModelShapes(modules []peft.LinearSpec) ShapeSource {
	return func(module string, _ peft.Layout) ([2]int, error) {
		for _, s := range modules {
			if s.Path == module {
				return [2]int{s.Out, s.In}, nil
			}
		}
		return [2]int{}, fmt.Errorf("the model has no linear layer %s", module)
	}
}

// Load reads and validates the adapter folder dir. Every SingLoRA module must be listed in
// module_shapes (see LoadWith for commands that have the base or the model at hand).
func Load(dir string) (*Adapter, error) { return LoadWith(dir, nil) }

// LoadWith is Load with shapes giving the [out, in] of SingLoRA modules that module_shapes does
// not list (shapes may be nil).
func LoadWith(dir string, shapes ShapeSource) (*Adapter, error) {
	cb, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", dir, err)
	}
	cfg, err := ParseConfig(cb)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", dir, err)
	}
	f, err := safetensors.Read(filepath.Join(dir, WeightsFile))
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", dir, err)
	}
	a, err := FromTensorsWith(cfg, f.Tensors, shapes)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", dir, err)
	}
	return a, nil
}

// FromTensors builds and validates an adapter from its config and its file's tensors; every
// SingLoRA module must be listed in module_shapes.
func FromTensors(cfg *Config, ts []safetensors.Tensor) (*Adapter, error) {
	return FromTensorsWith(cfg, ts, nil)
}

// FromTensorsWith is FromTensors with shapes giving the [out, in] of SingLoRA modules that
// module_shapes does not list (shapes may be nil). Adapter tensors are read as float32, the
// precision they are applied in, and must be finite there.
func FromTensorsWith(cfg *Config, ts []safetensors.Tensor, shapes ShapeSource) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	method, _, err := tuner.ForFile(cfg)
	if err != nil {
		return nil, err
	}
	a := &Adapter{Config: cfg}
	byPath := map[string]*Module{}
	for i := range ts {
		t := &ts[i]
		if !safetensors.IsFloat(t.DType) {
			return nil, fmt.Errorf("tensor %s: dtype %s is not a float type", t.Name, t.DType)
		}
		if !strings.HasPrefix(t.Name, TensorPrefix) {
			return nil, fmt.Errorf("tensor %s: name does not start with %q", t.Name, TensorPrefix)
		}
		vals, err := t.Float32s()
		if err != nil {
			return nil, err
		}
		if j := nonFinite32(vals); j >= 0 {
			if t.DType == safetensors.F64 {
				orig, _ := t.Float64s()
				if !math.IsNaN(orig[j]) && !math.IsInf(orig[j], 0) {
					return nil, fmt.Errorf("tensor %s: value %v at flat index %d is outside float32's range (adapters are applied in float32)", t.Name, orig[j], j)
				}
			}
			return nil, fmt.Errorf("tensor %s: non-finite value %v at flat index %d", t.Name, vals[j], j)
		}
		mat := &Matrix{Shape: slices.Clone(t.Shape), Data: vals}
		mod, name, ok := splitTensorName(t.Name)
		if !ok {
			if len(cfg.ModulesToSave) == 0 && (cfg.Bias == "" || cfg.Bias == BiasNone) {
				return nil, fmt.Errorf("tensor %s is not an adapter tensor and the config has no modules_to_save (nor a bias setting that saves biases)", t.Name)
			}
			a.Saved = append(a.Saved, SavedTensor{Name: strings.TrimPrefix(t.Name, TensorPrefix), Matrix: *mat})
			continue
		}
		m := byPath[mod]
		if m == nil {
			m = &Module{Path: mod, Layout: cfg.Layout(mod), Tensors: map[string]*Matrix{}}
			byPath[mod] = m
			a.Modules = append(a.Modules, m)
		}
		if m.Tensors[name] != nil {
			return nil, fmt.Errorf("module %s: tensor %s given twice", mod, name)
		}
		m.Tensors[name] = mat
	}
	if len(a.Modules) == 0 {
		return nil, errors.New("the weights file holds no adapter tensors")
	}
	for _, m := range a.Modules {
		if err := m.resolve(cfg, method, cfg.ModuleRank(m.Path), shapes); err != nil {
			return nil, err
		}
	}
	for p := range cfg.ModuleShapes {
		if byPath[p] == nil {
			return nil, fmt.Errorf("module_shapes lists %s, which has no adapter tensors", p)
		}
	}
	return a, nil
}

// nonFinite32 returns the index of the first NaN or ±Inf in v, or -1.
func nonFinite32(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}

// resolve checks the module's tensors against the method and rank and sets In and Out: from
// the tensors' shapes (tuner.Tuner.LayerShape, checked against module_shapes when it lists the
// module), or for a method whose tensors do not determine them (SingLoRA) from module_shapes,
// else from shapes.
func (m *Module) resolve(cfg *Config, method tuner.Tuner, r int, shapes ShapeSource) error {
	want := map[string]bool{}
	for _, t := range method.Tensors(m.Spec(), r) {
		want[t.Name] = true
	}
	for name := range m.Tensors {
		if !want[name] {
			return fmt.Errorf("module %s: tensor %s does not belong to a %s adapter", m.Path, name, method.Name())
		}
	}
	for _, name := range sortedKeys(want) {
		if m.Tensors[name] == nil {
			return fmt.Errorf("module %s: missing tensor %s", m.Path, TensorName(m.Path, name))
		}
	}
	got := map[string][]int{}
	for name, t := range m.Tensors {
		got[name] = t.Shape
	}
	outIn, err := method.LayerShape(got)
	switch {
	case errors.Is(err, tuner.ErrShapeNotInTensors):
		s, ok := cfg.ModuleShapes[m.Path]
		if !ok && shapes == nil {
			return fmt.Errorf("module %s: not listed in module_shapes: %w", m.Path, ErrNoModuleShape)
		}
		if !ok {
			if s, err = shapes(m.Path, m.Layout); err != nil {
				return fmt.Errorf("module %s: not listed in module_shapes, and %v", m.Path, err)
			}
		}
		m.Out, m.In = s[0], s[1]
	case err != nil:
		return fmt.Errorf("module %s: %w", m.Path, err)
	default:
		m.Out, m.In = outIn[0], outIn[1]
		if s, ok := cfg.ModuleShapes[m.Path]; ok && s != outIn {
			return fmt.Errorf("module %s: module_shapes says [out,in]=%v but its tensors give [%d,%d]", m.Path, s, m.Out, m.In)
		}
	}
	if m.In <= 0 || m.Out <= 0 {
		return fmt.Errorf("module %s: invalid layer size in=%d out=%d", m.Path, m.In, m.Out)
	}
	for _, t := range method.Tensors(m.Spec(), r) {
		got := m.Tensors[t.Name].Shape
		if !slices.Equal(got, t.Shape) {
			return fmt.Errorf("module %s: %s has shape %v, want %v for r=%d, in=%d, out=%d", m.Path, t.Name, got, t.Shape, r, m.In, m.Out)
		}
	}
	return nil
}

// Tensors returns the adapter's tensors as float32 safetensors tensors, modules first.
func (a *Adapter) Tensors() ([]safetensors.Tensor, error) {
	method, err := a.tuner()
	if err != nil {
		return nil, err
	}
	var out []safetensors.Tensor
	for _, m := range a.Modules {
		for _, t := range method.Tensors(m.Spec(), a.Config.ModuleRank(m.Path)) {
			mat := m.Tensors[t.Name]
			if mat == nil {
				return nil, fmt.Errorf("module %s: missing tensor %s", m.Path, t.Name)
			}
			st, err := safetensors.FromFloat32s(TensorName(m.Path, t.Name), safetensors.F32, mat.Shape, mat.Data)
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
	}
	for _, s := range a.Saved {
		st, err := safetensors.FromFloat32s(TensorPrefix+s.Name, safetensors.F32, s.Shape, s.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Save writes the adapter to the folder dir (created if needed; its parent folder must exist). The config and the tensors are
// validated first (as Load would validate them); nothing is written if they are invalid. If dir
// does not exist, both files are written into a temporary folder beside it that is then renamed
// to dir, so dir appears complete or not at all. If dir exists, each file is written to a synced
// temporary file, and only when both are complete are they renamed over the old ones; on any
// error the previous adapter is left as it was and the temporary files are removed.
func Save(dir string, a *Adapter) error {
	ts, err := a.Tensors()
	if err != nil {
		return err
	}
	if err := a.recordShapes(); err != nil {
		return err
	}
	cb, err := a.Config.MarshalJSON()
	if err != nil {
		return err
	}
	// Validate exactly what will be read back.
	cfg2, err := ParseConfig(cb)
	if err != nil {
		return fmt.Errorf("refusing to save an invalid adapter: %w", err)
	}
	if _, err := FromTensors(cfg2, ts); err != nil {
		return fmt.Errorf("refusing to save an invalid adapter: %w", err)
	}
	wb, err := safetensors.Marshal(ts, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	return writeFolder(dir, map[string][]byte{ConfigFile: cb, WeightsFile: wb})
}

// recordShapes sets module_shapes to the [out, in] of the modules whose tensors do not determine
// it (tuner.ErrShapeNotInTensors: all modules of a SingLoRA adapter), when there are such
// modules; otherwise the config's module_shapes is left as it is.
func (a *Adapter) recordShapes() error {
	method, err := a.tuner()
	if err != nil {
		return err
	}
	shapes := map[string][2]int{}
	for _, m := range a.Modules {
		got := map[string][]int{}
		for name, t := range m.Tensors {
			got[name] = t.Shape
		}
		if _, err := method.LayerShape(got); errors.Is(err, tuner.ErrShapeNotInTensors) {
			shapes[m.Path] = [2]int{m.Out, m.In}
		}
	}
	if len(shapes) > 0 {
		a.Config.ModuleShapes = shapes
	}
	return nil
}

// writeFolder writes files into dir (see Save). Errors name dir, not the temporary files.
func writeFolder(dir string, files map[string][]byte) (err error) {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if st, err := os.Stat(parent); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("adapter folder %s: the folder %s does not exist (create it first)", dir, parent)
	} else if err == nil && !st.IsDir() {
		return fmt.Errorf("adapter folder %s: %s is not a folder", dir, parent)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("writing adapter folder %s: %w", dir, err)
		}
	}()
	st, statErr := os.Stat(dir)
	if statErr == nil && !st.IsDir() {
		return fmt.Errorf("%s exists and is not a folder", dir)
	}
	// The new version is built complete beside dir — the new files, plus hard links to any other
	// files an existing dir holds — and swapped in at once (atomicfile.ReplaceDir): a kill at any
	// instant leaves the old adapter or the new one, never new weights with an old config.
	tmp, err := atomicfile.TempDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if statErr == nil {
		if err = linkOthers(dir, tmp, files); err != nil {
			return err
		}
	}
	// Weights first, config last (a folder with the config has its weights).
	names := sortedKeys(files)
	sort.SliceStable(names, func(i, j int) bool { return names[j] == ConfigFile && names[i] != ConfigFile })
	for _, name := range names {
		if err = safetensors.WriteFileAtomic(filepath.Join(tmp, name), files[name], 0o644); err != nil {
			return err
		}
	}
	return atomicfile.ReplaceDir(tmp, dir)
}

// linkOthers hard-links (or, across devices, copies) the entries of dir that files does not
// replace into tmp, so that replacing the folder keeps them.
func linkOthers(dir, tmp string, files map[string][]byte) error {
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if _, replaced := files[rel]; replaced || atomicfile.IsTemp(info.Name()) {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(tmp, rel)
		switch {
		case info.IsDir():
			return os.MkdirAll(dst, info.Mode().Perm()|0o700)
		case !info.Mode().IsRegular():
			return nil // sockets, devices, links: not part of an adapter
		}
		if os.Link(p, dst) == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
}
