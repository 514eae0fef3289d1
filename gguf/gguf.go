// Package gguf writes and reads GGUF version 3 files, the single-file model and adapter format of
// llama.cpp (ggml's docs/gguf.md). A file is, little-endian throughout:
//
//	magic "GGUF" | version u32 = 3 | tensor count u64 | key-value count u64
//	key-values:   key (u64 length + bytes) | value type u32 | value
//	tensor infos: name (string) | n_dims u32 | dims u64 × n_dims | type u32 | offset u64
//	padding to the alignment (general.alignment, default 32) | tensor data, each tensor at its
//	offset from the start of the data section, each offset a multiple of the alignment
//
// A value is one of the scalar types (u8 … f64, bool), a string (u64 length + bytes), or an array
// (element type u32 | count u64 | elements) of scalars or strings. Tensor dims are in ggml's
// order: Dims[0] is the length of a row (the fastest-varying index), so a row-major PyTorch
// tensor of shape [out, in] has Dims [in, out] and the same bytes.
//
// The writer validates everything before creating the file and writes it atomically (temporary
// sibling, sync, rename). The reader is strict: every length, count, offset and type is checked
// against the bytes that remain before anything is allocated, and errors name the field. The
// package imports no GoMLX, so its fuzz target (FuzzRead) stays small.
package gguf

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/singlora/singlora/safetensors"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version this package writes and reads.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the key that changes the alignment (a u32, a power of two).
const KeyAlignment = "general.alignment"

// MaxNameLen is the longest tensor name llama.cpp accepts (GGML_MAX_NAME = 64, with the NUL).
const MaxNameLen = 63

// MaxDims is the most dimensions a ggml tensor has (GGML_MAX_DIMS).
const MaxDims = 4

// maxKeyLen is the longest key the GGUF spec allows.
const maxKeyLen = 65535

// ValueType is the type code of a key-value's value.
type ValueType uint32

// The value types of GGUF v3.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = map[ValueType]string{
	TypeUint8: "uint8", TypeInt8: "int8", TypeUint16: "uint16", TypeInt16: "int16", TypeUint32: "uint32",
	TypeInt32: "int32", TypeFloat32: "float32", TypeBool: "bool", TypeString: "string", TypeArray: "array",
	TypeUint64: "uint64", TypeInt64: "int64", TypeFloat64: "float64",
}

func (t ValueType) String() string {
	if s, ok := valueTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// size is the encoded size of a scalar of type t (0 for string and array, whose size varies).
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// KV is one key-value pair. Value is a Go value of one of the GGUF types: uint8, int8, uint16,
// int16, uint32, int32, float32, bool, string, uint64, int64, float64, or a slice of one of them
// (an array; []string included). Nested arrays are not supported.
type KV struct {
	Key   string
	Value any
}

// valueType returns the GGUF type of v and, for an array, its element type and length.
func valueType(v any) (t, elem ValueType, n int, err error) {
	switch x := v.(type) {
	case uint8:
		return TypeUint8, 0, 0, nil
	case int8:
		return TypeInt8, 0, 0, nil
	case uint16:
		return TypeUint16, 0, 0, nil
	case int16:
		return TypeInt16, 0, 0, nil
	case uint32:
		return TypeUint32, 0, 0, nil
	case int32:
		return TypeInt32, 0, 0, nil
	case float32:
		return TypeFloat32, 0, 0, nil
	case bool:
		return TypeBool, 0, 0, nil
	case string:
		return TypeString, 0, 0, nil
	case uint64:
		return TypeUint64, 0, 0, nil
	case int64:
		return TypeInt64, 0, 0, nil
	case float64:
		return TypeFloat64, 0, 0, nil
	case []uint8:
		return TypeArray, TypeUint8, len(x), nil
	case []int8:
		return TypeArray, TypeInt8, len(x), nil
	case []uint16:
		return TypeArray, TypeUint16, len(x), nil
	case []int16:
		return TypeArray, TypeInt16, len(x), nil
	case []uint32:
		return TypeArray, TypeUint32, len(x), nil
	case []int32:
		return TypeArray, TypeInt32, len(x), nil
	case []float32:
		return TypeArray, TypeFloat32, len(x), nil
	case []bool:
		return TypeArray, TypeBool, len(x), nil
	case []string:
		return TypeArray, TypeString, len(x), nil
	case []uint64:
		return TypeArray, TypeUint64, len(x), nil
	case []int64:
		return TypeArray, TypeInt64, len(x), nil
	case []float64:
		return TypeArray, TypeFloat64, len(x), nil
	}
	return 0, 0, 0, fmt.Errorf("value of Go type %T is not a GGUF type (use uint8…uint64, int8…int64, float32, float64, bool, string, or a slice of one of them)", v)
}

// TensorType is a ggml tensor type (ggml_type).
type TensorType uint32

// The tensor types this package writes and reads (the unquantized ggml types).
const (
	F32  TensorType = 0
	F16  TensorType = 1
	I8   TensorType = 24
	I16  TensorType = 25
	I32  TensorType = 26
	I64  TensorType = 27
	F64  TensorType = 28
	BF16 TensorType = 30
)

var tensorTypes = []struct {
	t    TensorType
	name string
	size int
}{{F32, "F32", 4}, {F16, "F16", 2}, {BF16, "BF16", 2}, {F64, "F64", 8}, {I8, "I8", 1}, {I16, "I16", 2}, {I32, "I32", 4}, {I64, "I64", 8}}

// supportedTypes lists the tensor types for error messages.
func supportedTypes() string {
	var s []string
	for _, e := range tensorTypes {
		s = append(s, e.name)
	}
	return strings.Join(s, ", ")
}

func (t TensorType) String() string {
	for _, e := range tensorTypes {
		if e.t == t {
			return e.name
		}
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// Size is the byte size of one element of type t, 0 for a type this package does not support
// (the quantized ggml types, whose elements come in blocks).
func (t TensorType) Size() int {
	for _, e := range tensorTypes {
		if e.t == t {
			return e.size
		}
	}
	return 0
}

// ParseTensorType returns the type named s ("f32", "f16", "bf16"; any case), and an error listing
// the names otherwise.
func ParseTensorType(s string) (TensorType, error) {
	for _, e := range tensorTypes {
		if strings.EqualFold(e.name, s) {
			return e.t, nil
		}
	}
	return 0, fmt.Errorf("unknown tensor type %q (supported: %s)", s, supportedTypes())
}

// TensorInfo describes one tensor: its name (at most MaxNameLen bytes), type and dims in ggml
// order (Dims[0] is the row length; 1 to MaxDims dims, each ≥ 1).
type TensorInfo struct {
	Name string
	Type TensorType
	Dims []uint64
}

// Elements is the number of elements, the product of Dims.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// ByteSize is the size of the tensor's data.
func (t *TensorInfo) ByteSize() uint64 { return t.Elements() * uint64(t.Type.Size()) }

// check validates the info; limit bounds the byte size (the reader passes the bytes left).
func (t *TensorInfo) check(limit uint64) error {
	if t.Name == "" {
		return fmt.Errorf("tensor name is empty")
	}
	if len(t.Name) > MaxNameLen {
		return fmt.Errorf("tensor name %.40q… is %d bytes, longer than llama.cpp's %d", t.Name, len(t.Name), MaxNameLen)
	}
	if len(t.Dims) < 1 || len(t.Dims) > MaxDims {
		return fmt.Errorf("tensor %s has %d dims, want 1 to %d", t.Name, len(t.Dims), MaxDims)
	}
	size := t.Type.Size()
	if size == 0 {
		return fmt.Errorf("tensor %s has %s, which this package does not read or write (supported: %s)", t.Name, t.Type, supportedTypes())
	}
	n := uint64(size)
	for i, d := range t.Dims {
		if d == 0 {
			return fmt.Errorf("tensor %s: dim %d is 0", t.Name, i)
		}
		if n > limit/d {
			return fmt.Errorf("tensor %s: dims %v of %s need more than %d bytes", t.Name, t.Dims, t.Type, limit)
		}
		n *= d
	}
	return nil
}

// Tensor is a tensor with its data (ByteSize bytes, little-endian).
type Tensor struct {
	TensorInfo
	Data []byte
}

// File is a parsed GGUF file.
type File struct {
	KVs       []KV
	Tensors   []Tensor
	Alignment int
}

// Get returns the value of key, or nil.
func (f *File) Get(key string) any {
	for _, kv := range f.KVs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// Tensor returns the tensor named name, or nil.
func (f *File) Tensor(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

// alignmentOf returns the alignment the key-values set (DefaultAlignment without
// general.alignment), and an error for a general.alignment that is not a power-of-two u32.
func alignmentOf(kvs []KV) (int, error) {
	for _, kv := range kvs {
		if kv.Key != KeyAlignment {
			continue
		}
		a, ok := kv.Value.(uint32)
		if !ok {
			return 0, fmt.Errorf("%s is a %T, want uint32", KeyAlignment, kv.Value)
		}
		if a == 0 || a&(a-1) != 0 || a > 1<<20 {
			return 0, fmt.Errorf("%s is %d, want a power of two up to 2^20", KeyAlignment, a)
		}
		return int(a), nil
	}
	return DefaultAlignment, nil
}

// pad returns n rounded up to a multiple of align.
func pad(n, align uint64) uint64 { return (n + align - 1) / align * align }

// F32Bytes encodes vals as F32 tensor data.
func F32Bytes(vals []float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		u := math.Float32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}

// Encode encodes vals as tensor data of type t (F32, F16 or BF16; F16 and BF16 round to
// nearest-even). A value that is finite in float32 but overflows F16 is an error naming its index.
func Encode(t TensorType, vals []float32) ([]byte, error) {
	switch t {
	case F32:
		return F32Bytes(vals), nil
	case F16, BF16:
		b := make([]byte, 2*len(vals))
		for i, v := range vals {
			var h uint16
			if t == F16 {
				h = safetensors.Float32ToF16(v)
				if !math.IsInf(float64(v), 0) && h&0x7fff == 0x7c00 {
					return nil, fmt.Errorf("value %d (%g) overflows F16 (largest finite 65504); use bf16 or f32", i, v)
				}
			} else {
				h = safetensors.Float32ToBF16(v)
			}
			b[2*i], b[2*i+1] = byte(h), byte(h>>8)
		}
		return b, nil
	}
	return nil, fmt.Errorf("cannot encode float32 values as %s (supported: F32, F16, BF16)", t)
}

// Decode decodes F32, F16 or BF16 tensor data into float32 values.
func Decode(t TensorType, b []byte) ([]float32, error) {
	size := t.Size()
	if t != F32 && t != F16 && t != BF16 {
		return nil, fmt.Errorf("cannot decode %s as float32 (supported: F32, F16, BF16)", t)
	}
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %s values", len(b), t)
	}
	out := make([]float32, len(b)/size)
	for i := range out {
		switch t {
		case F32:
			out[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
		case F16:
			out[i] = safetensors.F16ToFloat32(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		default:
			out[i] = safetensors.BF16ToFloat32(uint16(b[2*i]) | uint16(b[2*i+1])<<8)
		}
	}
	return out, nil
}

// checkKVs validates keys (non-empty, at most 65535 bytes, unique) and values (GGUF types).
func checkKVs(kvs []KV) error {
	seen := make(map[string]bool, len(kvs))
	for i, kv := range kvs {
		if kv.Key == "" {
			return fmt.Errorf("key-value %d has an empty key", i)
		}
		if len(kv.Key) > maxKeyLen {
			return fmt.Errorf("key-value %d: key is %d bytes, longer than %d", i, len(kv.Key), maxKeyLen)
		}
		if seen[kv.Key] {
			return fmt.Errorf("key %s appears twice", kv.Key)
		}
		seen[kv.Key] = true
		if _, _, _, err := valueType(kv.Value); err != nil {
			return fmt.Errorf("key %s: %w", kv.Key, err)
		}
	}
	_, err := alignmentOf(kvs)
	return err
}

// checkInfos validates the tensor infos and that names are unique.
func checkInfos(infos []TensorInfo) error {
	seen := make(map[string]bool, len(infos))
	for i := range infos {
		if err := infos[i].check(math.MaxInt64); err != nil {
			return fmt.Errorf("tensor %d: %w", i, err)
		}
		if seen[infos[i].Name] {
			return fmt.Errorf("tensor name %s appears twice", infos[i].Name)
		}
		seen[infos[i].Name] = true
	}
	return nil
}

// infosOf returns the infos of tensors.
func infosOf(tensors []Tensor) []TensorInfo {
	out := make([]TensorInfo, len(tensors))
	for i := range tensors {
		out[i] = tensors[i].TensorInfo
		out[i].Dims = slices.Clone(tensors[i].Dims)
	}
	return out
}
