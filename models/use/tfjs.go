package use

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// TFJSModel is a TensorFlow.js graph model as stored on disk: model.json (a GraphDef-like
// "modelTopology" and a "weightsManifest") plus binary weight shards.
type TFJSModel struct {
	// Nodes are the graph's nodes by name.
	Nodes map[string]TFJSNode
	// Weights are the manifest's tensors by name, in manifest order in Order.
	Weights map[string]*TFJSTensor
	Order   []string
}

// TFJSNode is one node of the graph.
type TFJSNode struct {
	Name  string   `json:"name"`
	Op    string   `json:"op"`
	Input []string `json:"input"`
}

// TFJSTensor is one weight. Exactly one of F32 and I32 is set, by DType.
type TFJSTensor struct {
	Name  string
	Shape []int
	DType string
	F32   []float32
	I32   []int32
}

// Size is the number of elements.
func (t *TFJSTensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

type tfjsManifestGroup struct {
	Paths   []string `json:"paths"`
	Weights []struct {
		Name         string          `json:"name"`
		Shape        []int           `json:"shape"`
		DType        string          `json:"dtype"`
		Quantization json.RawMessage `json:"quantization"`
	} `json:"weights"`
}

// LoadTFJS reads dir/model.json and its weight shards. Each manifest group's shards are read in
// order as one little-endian byte stream holding the group's weights one after another.
// Supported dtypes are float32 and int32; quantized weights are rejected.
func LoadTFJS(dir string) (*TFJSModel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "model.json"))
	if err != nil {
		return nil, err
	}
	var raw struct {
		ModelTopology struct {
			Node []TFJSNode `json:"node"`
		} `json:"modelTopology"`
		WeightsManifest []tfjsManifestGroup `json:"weightsManifest"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "model.json"), err)
	}
	m := &TFJSModel{Nodes: map[string]TFJSNode{}, Weights: map[string]*TFJSTensor{}}
	for _, n := range raw.ModelTopology.Node {
		m.Nodes[n.Name] = n
	}
	for gi, g := range raw.WeightsManifest {
		files := make([]io.Reader, 0, len(g.Paths))
		var closers []*os.File
		for _, p := range g.Paths {
			if filepath.IsAbs(p) || filepath.Clean(p) != filepath.Base(p) {
				return nil, fmt.Errorf("weights manifest group %d: unsupported shard path %q", gi, p)
			}
			f, err := os.Open(filepath.Join(dir, p))
			if err != nil {
				for _, c := range closers {
					c.Close()
				}
				return nil, fmt.Errorf("weights shard: %w", err)
			}
			closers = append(closers, f)
			files = append(files, f)
		}
		r := io.MultiReader(files...)
		err := func() error {
			for _, w := range g.Weights {
				if len(w.Quantization) > 0 && string(w.Quantization) != "null" {
					return fmt.Errorf("weight %s is quantized; only float32/int32 weights are supported", w.Name)
				}
				t := &TFJSTensor{Name: w.Name, Shape: w.Shape, DType: w.DType}
				n := t.Size()
				buf := make([]byte, 4*n)
				if _, err := io.ReadFull(r, buf); err != nil {
					return fmt.Errorf("reading weight %s (%d bytes): shards too short: %w", w.Name, len(buf), err)
				}
				switch w.DType {
				case "float32":
					t.F32 = make([]float32, n)
					for i := range t.F32 {
						t.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
					}
				case "int32":
					t.I32 = make([]int32, n)
					for i := range t.I32 {
						t.I32[i] = int32(binary.LittleEndian.Uint32(buf[4*i:]))
					}
				default:
					return fmt.Errorf("weight %s has unsupported dtype %q", w.Name, w.DType)
				}
				if _, dup := m.Weights[w.Name]; dup {
					return fmt.Errorf("weight %s listed twice", w.Name)
				}
				m.Weights[w.Name] = t
				m.Order = append(m.Order, w.Name)
			}
			if n, _ := io.Copy(io.Discard, r); n != 0 {
				return fmt.Errorf("weights manifest group %d: %d bytes left over after its weights", gi, n)
			}
			return nil
		}()
		for _, c := range closers {
			c.Close()
		}
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Float32 returns the float32 weight name with the given shape.
func (m *TFJSModel) Float32(name string, shape ...int) ([]float32, error) {
	t, ok := m.Weights[name]
	if !ok {
		return nil, fmt.Errorf("model.json has no weight %q", name)
	}
	if t.DType != "float32" {
		return nil, fmt.Errorf("weight %q is %s, want float32", name, t.DType)
	}
	if !sameDims(t.Shape, shape) {
		return nil, fmt.Errorf("weight %q has shape %v, want %v", name, t.Shape, shape)
	}
	return t.F32, nil
}

// Scalar returns a scalar (or one-element) weight as float64, whatever its dtype.
func (m *TFJSModel) Scalar(name string) (float64, error) {
	t, ok := m.Weights[name]
	if !ok {
		return 0, fmt.Errorf("model.json has no weight %q", name)
	}
	if t.Size() != 1 {
		return 0, fmt.Errorf("weight %q has shape %v, want a scalar", name, t.Shape)
	}
	if t.DType == "int32" {
		return float64(t.I32[0]), nil
	}
	return float64(t.F32[0]), nil
}

// Ints returns an int32 weight as ints.
func (m *TFJSModel) Ints(name string) ([]int, error) {
	t, ok := m.Weights[name]
	if !ok {
		return nil, fmt.Errorf("model.json has no weight %q", name)
	}
	if t.DType != "int32" {
		return nil, fmt.Errorf("weight %q is %s, want int32", name, t.DType)
	}
	out := make([]int, len(t.I32))
	for i, v := range t.I32 {
		out[i] = int(v)
	}
	return out, nil
}

func sameDims(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// transpose returns the row-major [cols, rows] transpose of the row-major [rows, cols] matrix w.
func transpose(w []float32, rows, cols int) []float32 {
	out := make([]float32, len(w))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = w[r*cols+c]
		}
	}
	return out
}
