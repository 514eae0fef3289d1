// Package safetensors reads and writes the safetensors tensor format strictly.
//
// A file is: an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON (the header,
// possibly padded with trailing spaces), then the byte buffer. The header maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the buffer) and may hold a
// "__metadata__" object of string → string. Parse rejects every malformed file with an error (never
// a panic): truncation, a header length past the end of the file or over [MaxHeaderSize], a header
// that is not UTF-8 or not a JSON object, duplicate keys at any level of the header, unknown dtypes,
// negative or non-integer dimensions, a byte size that disagrees with the shape, offsets out of
// range, overlapping, or not covering the buffer contiguously. A file that is not framed as
// safetensors at all (a text, JSON or image file, a file truncated inside its header) gets an
// error wrapping [ErrNotSafetensors] that says what the file looks like. Write is atomic.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/singlora/singlora/internal/atomicfile"
)

// MaxHeaderSize bounds the JSON header (the reference implementation's limit is 100 MB).
const MaxHeaderSize = 100 << 20

// MetadataKey is the reserved header key holding the file's string metadata.
const MetadataKey = "__metadata__"

// Data types, as the format names them.
const (
	F64  = "F64"
	F32  = "F32"
	F16  = "F16"
	BF16 = "BF16"
	I64  = "I64"
	I32  = "I32"
	I16  = "I16"
	I8   = "I8"
	U64  = "U64"
	U32  = "U32"
	U16  = "U16"
	U8   = "U8"
	Bool = "BOOL"
	F8E4 = "F8_E4M3"
	F8E5 = "F8_E5M2"
)

var dtypeSizes = map[string]int{
	F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1,
	U64: 8, U32: 4, U16: 2, U8: 1, Bool: 1, F8E4: 1, F8E5: 1,
}

// Tensor is one named tensor: its dtype, shape and raw little-endian row-major bytes.
type Tensor struct {
	Name  string
	DType string
	Shape []int
	Data  []byte
}

// NumElements returns the product of the tensor's dimensions (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is a parsed safetensors file: its tensors in buffer order and its metadata (nil if none).
type File struct {
	Tensors  []Tensor
	Metadata map[string]string
}

// Get returns the tensor called name, or nil.
func (f *File) Get(name string) *Tensor {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i]
		}
	}
	return nil
}

// Names returns the tensor names in buffer order.
func (f *File) Names() []string {
	out := make([]string, len(f.Tensors))
	for i, t := range f.Tensors {
		out[i] = t.Name
	}
	return out
}

// Read reads and parses the safetensors file at path.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

type entry struct {
	DType   *string  `json:"dtype"`
	Shape   *[]int64 `json:"shape"`
	Offsets *[]int64 `json:"data_offsets"`
}

// ErrNotSafetensors is wrapped by the error Parse returns when b is not framed as a safetensors
// file at all (too short, an implausible header length, a header that is not a JSON object): a
// text, JSON or image file, a Git LFS pointer, or a file truncated inside its header.
var ErrNotSafetensors = errors.New("not a safetensors file")

// Parse parses a whole safetensors file held in b. The tensors' Data alias b.
func Parse(b []byte) (*File, error) {
	f, offs, start, err := parse(b, uint64(len(b)))
	if err != nil {
		return nil, err
	}
	for i := range f.Tensors {
		f.Tensors[i].Data = b[start+offs[i][0] : start+offs[i][1] : start+offs[i][1]]
	}
	return f, nil
}

// headerLength reads and checks the 8-byte header length of a file of size bytes whose first
// bytes are b.
func headerLength(b []byte, size uint64) (uint64, error) {
	if size < 8 || len(b) < 8 {
		return 0, notSafetensors(b, "%d bytes, too short for the 8-byte header length; truncated?", size)
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > MaxHeaderSize {
		return 0, notSafetensors(b, "its first 8 bytes give a header length of %d, over the %d-byte limit", n, MaxHeaderSize)
	}
	if n > size-8 {
		return 0, notSafetensors(b, "its first 8 bytes give a header length of %d but only %d bytes follow; truncated?", n, size-8)
	}
	if n < 2 {
		return 0, notSafetensors(b, "header length %d is too short for a JSON object", n)
	}
	return n, nil
}

// parse validates a file of size bytes from its first bytes b (at least the 8-byte length and the
// header): every check Parse documents, with the data buffer known only by its length. It returns
// the tensors (Data nil) in buffer order, each one's [begin, end) in the buffer, and the file
// offset where the buffer starts.
func parse(b []byte, size uint64) (*File, [][2]uint64, uint64, error) {
	n, err := headerLength(b, size)
	if err != nil {
		return nil, nil, 0, err
	}
	if uint64(len(b)) < 8+n {
		return nil, nil, 0, fmt.Errorf("safetensors: internal error: %d bytes given for an %d-byte header", len(b), 8+n)
	}
	header := b[8 : 8+n]
	bufLen := size - 8 - n
	if !utf8.Valid(header) {
		return nil, nil, 0, notSafetensors(b, "the %d-byte header is not valid UTF-8", n)
	}
	if header[0] != '{' {
		return nil, nil, 0, notSafetensors(b, "the %d-byte header does not start with a JSON object '{'", n)
	}
	if err := CheckJSON(header); err != nil {
		return nil, nil, 0, notSafetensors(b, "the %d-byte header: %v", n, err)
	}
	keys, raws, err := topLevel(header)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("safetensors: header: %w", err)
	}
	f := &File{}
	type located struct {
		t          Tensor
		begin, end uint64
	}
	var ts []located
	var offs [][2]uint64
	for i, k := range keys {
		if k == MetadataKey {
			var md map[string]string
			if err := json.Unmarshal(raws[i], &md); err != nil {
				return nil, nil, 0, fmt.Errorf("safetensors: %s must be an object of strings: %v", MetadataKey, err)
			}
			if md == nil {
				md = map[string]string{}
			}
			f.Metadata = md
			continue
		}
		if k == "" {
			return nil, nil, 0, errors.New("safetensors: tensor with an empty name")
		}
		var e entry
		if err := json.Unmarshal(raws[i], &e); err != nil {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: bad entry: %v", k, err)
		}
		if e.DType == nil || e.Shape == nil || e.Offsets == nil {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: entry needs dtype, shape and data_offsets", k)
		}
		size, ok := dtypeSizes[*e.DType]
		if !ok {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", k, *e.DType)
		}
		shape := make([]int, len(*e.Shape))
		nbytes := uint64(size)
		for j, d := range *e.Shape {
			if d < 0 {
				return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: negative dimension %d in shape %v", k, d, *e.Shape)
			}
			hi, lo := bits.Mul64(nbytes, uint64(d))
			if hi != 0 || lo > bufLen && d != 0 {
				return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: shape %v is larger than the %d-byte buffer", k, *e.Shape, bufLen)
			}
			nbytes = lo
			shape[j] = int(d)
		}
		if len(*e.Offsets) != 2 {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: data_offsets must be [begin, end], got %v", k, *e.Offsets)
		}
		begin, end := (*e.Offsets)[0], (*e.Offsets)[1]
		if begin < 0 || end < begin {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: invalid data_offsets [%d, %d]", k, begin, end)
		}
		if uint64(end) > bufLen {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: data_offsets [%d, %d] out of range of the %d-byte buffer (truncated file?)", k, begin, end, bufLen)
		}
		if uint64(end-begin) != nbytes {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q: %s%v needs %d bytes but data_offsets [%d, %d] span %d", k, *e.DType, *e.Shape, nbytes, begin, end, end-begin)
		}
		ts = append(ts, located{Tensor{Name: k, DType: *e.DType, Shape: shape}, uint64(begin), uint64(end)})
	}
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].begin != ts[j].begin {
			return ts[i].begin < ts[j].begin
		}
		return ts[i].end < ts[j].end
	})
	var pos uint64
	for i, t := range ts {
		if t.begin < pos {
			return nil, nil, 0, fmt.Errorf("safetensors: tensor %q [%d, %d] overlaps tensor %q", t.t.Name, t.begin, t.end, ts[i-1].t.Name)
		}
		if t.begin > pos {
			return nil, nil, 0, fmt.Errorf("safetensors: gap in the buffer: bytes [%d, %d) belong to no tensor (before %q)", pos, t.begin, t.t.Name)
		}
		pos = t.end
		f.Tensors = append(f.Tensors, t.t)
		offs = append(offs, [2]uint64{t.begin, t.end})
	}
	if pos != bufLen {
		return nil, nil, 0, fmt.Errorf("safetensors: buffer has %d bytes but the tensors cover %d", bufLen, pos)
	}
	return f, offs, 8 + n, nil
}

// notSafetensors builds an ErrNotSafetensors error with reason, prefixed by what b looks like
// when its first bytes are recognisable.
func notSafetensors(b []byte, format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	if kind := sniff(b); kind != "" {
		reason = kind + "; " + reason
	}
	return fmt.Errorf("%w (%s)", ErrNotSafetensors, reason)
}

// signatures are the leading bytes of files often given in place of a safetensors file.
var signatures = []struct{ prefix, kind string }{
	{"version https://git-lfs", "it is a Git LFS pointer, not the file's content (run git lfs pull)"},
	{"\x89PNG\r\n\x1a\n", "it is a PNG image"},
	{"\xff\xd8\xff", "it is a JPEG image"},
	{"PK\x03\x04", "it is a zip archive (a PyTorch .bin/.pt checkpoint is one)"},
	{"\x1f\x8b", "it is gzip-compressed"},
	{"GGUF", "it is a GGUF file"},
	{"\x93NUMPY", "it is a NumPy .npy file"},
}

// sniff names what b looks like when that is recognisable, or returns "".
func sniff(b []byte) string {
	for _, s := range signatures {
		if bytes.HasPrefix(b, []byte(s.prefix)) {
			return s.kind
		}
	}
	if len(b) >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5 {
		return "it is a Python pickle (a PyTorch .bin checkpoint?)"
	}
	head := b[:min(len(b), 512)]
	for len(head) > 0 && !utf8.Valid(head) { // a multi-byte character cut at the end of head
		head = head[:len(head)-1]
	}
	if len(head) == 0 || bytes.ContainsFunc(head, func(r rune) bool { return r < ' ' && r != '\n' && r != '\r' && r != '\t' }) {
		return ""
	}
	trimmed := bytes.TrimLeft(head, " \t\r\n")
	lower := bytes.ToLower(trimmed[:min(len(trimmed), 16)])
	switch {
	case len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '['):
		return "it looks like JSON text"
	case bytes.HasPrefix(lower, []byte("<!doctype html")) || bytes.HasPrefix(lower, []byte("<html")):
		return "it looks like an HTML page (a failed download?)"
	}
	return "it looks like text"
}

// CheckJSON verifies that b is one JSON value (plus trailing whitespace) with no duplicate key in
// any object, nested at most 64 deep. encoding/json would silently keep the last of duplicated
// keys; the safetensors header and adapter configs use this before decoding.
func CheckJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := checkValue(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func checkValue(dec *json.Decoder, depth int) error {
	if depth > 64 {
		return errors.New("nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid JSON: %v", err)
			}
			k, ok := kt.(string)
			if !ok {
				return fmt.Errorf("invalid JSON: object key %v", kt)
			}
			if seen[k] {
				return fmt.Errorf("duplicate key %q", k)
			}
			seen[k] = true
			if err := checkValue(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := checkValue(dec, depth+1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("invalid JSON: unexpected %v", d)
	}
	if _, err := dec.Token(); err != nil { // closing delimiter
		return fmt.Errorf("invalid JSON: %v", err)
	}
	return nil
}

// topLevel returns the keys of the (already checked) JSON object in header order with their raw values.
func topLevel(header []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	var keys []string
	var raws []json.RawMessage
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, err
		}
		keys = append(keys, kt.(string))
		raws = append(raws, raw)
	}
	return keys, raws, nil
}

// Marshal encodes tensors (in the given order, which is also their buffer order) and metadata as a
// safetensors file. The header is padded with spaces to a multiple of 8 bytes.
func Marshal(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	first := true
	comma := func() {
		if !first {
			hdr.WriteByte(',')
		}
		first = false
	}
	if metadata != nil {
		mk := make([]string, 0, len(metadata))
		for k := range metadata {
			mk = append(mk, k)
		}
		sort.Strings(mk)
		comma()
		hdr.WriteString(`"` + MetadataKey + `":{`)
		for i, k := range mk {
			if i > 0 {
				hdr.WriteByte(',')
			}
			if !utf8.ValidString(k) || !utf8.ValidString(metadata[k]) {
				return nil, fmt.Errorf("safetensors: metadata %q is not valid UTF-8", k)
			}
			writeJSONString(&hdr, k)
			hdr.WriteByte(':')
			writeJSONString(&hdr, metadata[k])
		}
		hdr.WriteByte('}')
	}
	seen := map[string]bool{}
	var offset uint64
	for i := range tensors {
		t := &tensors[i]
		if err := t.check(); err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("safetensors: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		comma()
		writeJSONString(&hdr, t.Name)
		fmt.Fprintf(&hdr, `:{"dtype":"%s","shape":[`, t.DType)
		for j, d := range t.Shape {
			if j > 0 {
				hdr.WriteByte(',')
			}
			fmt.Fprintf(&hdr, "%d", d)
		}
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, offset, offset+uint64(len(t.Data)))
		offset += uint64(len(t.Data))
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit", hdr.Len(), MaxHeaderSize)
	}
	out := make([]byte, 8, 8+hdr.Len()+int(offset))
	binary.LittleEndian.PutUint64(out, uint64(hdr.Len()))
	out = append(out, hdr.Bytes()...)
	for i := range tensors {
		out = append(out, tensors[i].Data...)
	}
	return out, nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // strings always marshal
	b.Write(enc)
}

func (t *Tensor) check() error {
	if t.Name == "" {
		return errors.New("safetensors: tensor with an empty name")
	}
	if t.Name == MetadataKey {
		return fmt.Errorf("safetensors: tensor name %q is reserved", MetadataKey)
	}
	if !utf8.ValidString(t.Name) {
		return fmt.Errorf("safetensors: tensor name %q is not valid UTF-8", t.Name)
	}
	size, ok := dtypeSizes[t.DType]
	if !ok {
		return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
	}
	n := uint64(size)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 {
			return fmt.Errorf("safetensors: tensor %q: shape %v overflows", t.Name, t.Shape)
		}
		n = lo
	}
	if n != uint64(len(t.Data)) {
		return fmt.Errorf("safetensors: tensor %q: %s%v needs %d bytes, has %d", t.Name, t.DType, t.Shape, n, len(t.Data))
	}
	return nil
}

// Write writes tensors and metadata to path atomically: the file is written to a temporary file in
// the same directory, synced and renamed over path. On any error path is left as it was and no
// temporary file remains.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	b, err := Marshal(tensors, metadata)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b, 0o644)
}

// CheckOutputPath reports whether a file can be created at path: its folder must exist and be a
// folder, and path itself must not be a folder. The error names path.
func CheckOutputPath(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a folder; give the path of a file to write", path)
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: the folder %s does not exist (create it first)", path, dir)
	case err != nil:
		return fmt.Errorf("%s: cannot use the folder %s: %v", path, dir, pathErr(err))
	case !st.IsDir():
		return fmt.Errorf("%s: %s is not a folder", path, dir)
	}
	return nil
}

// pathErr strips the *fs.PathError around err, whose path may be a temporary file the caller
// never named.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// WriteFileAtomic writes data to path via a synced temporary file in the same directory and a
// rename, so that readers see either the old file or the complete new one. Errors name path
// (not the temporary file); path's folder must exist (see CheckOutputPath).
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := CheckOutputPath(path); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("writing %s: %v", path, pathErr(err))
	}
	return nil
}

// SyncDir fsyncs a directory (best effort) so that a rename into it is durable.
func SyncDir(dir string) { atomicfile.SyncDir(dir) }

// IsFloat reports whether dtype is one of the float types the float32 helpers convert.
func IsFloat(dtype string) bool {
	return dtype == F32 || dtype == F16 || dtype == BF16 || dtype == F64
}

// Float32s decodes a F32, F16, BF16 or F64 tensor to float32 values.
func (t *Tensor) Float32s() ([]float32, error) {
	out := make([]float32, t.NumElements())
	if err := DecodeFloat32s(t.DType, t.Data, out); err != nil {
		return nil, fmt.Errorf("tensor %q: %s%v: %w", t.Name, t.DType, t.Shape, err)
	}
	return out, nil
}

// DecodeFloat32s decodes little-endian F32, F16, BF16 or F64 bytes src into dst (len(dst) values),
// without an intermediate buffer.
func DecodeFloat32s(dtype string, src []byte, dst []float32) error {
	size, ok := dtypeSizes[dtype]
	if !ok || !IsFloat(dtype) {
		return fmt.Errorf("dtype %s is not a float type", dtype)
	}
	if len(dst)*size != len(src) {
		return fmt.Errorf("%d bytes do not hold %d %s values", len(src), len(dst), dtype)
	}
	d := src
	switch dtype {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
	}
	return nil
}

// Float64s decodes a F32, F16, BF16 or F64 tensor to float64 values (exactly).
func (t *Tensor) Float64s() ([]float64, error) {
	if t.DType == F64 {
		n := t.NumElements()
		if 8*n != len(t.Data) {
			return nil, fmt.Errorf("tensor %q: %s%v does not match its %d bytes", t.Name, t.DType, t.Shape, len(t.Data))
		}
		out := make([]float64, n)
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return out, nil
	}
	f, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(f))
	for i, x := range f {
		out[i] = float64(x)
	}
	return out, nil
}

// FromFloat32s builds a tensor of dtype (F32, F16, BF16 or F64) from float32 values, rounding to
// nearest even for F16 and BF16.
func FromFloat32s(name, dtype string, shape []int, vals []float32) (Tensor, error) {
	t := Tensor{Name: name, DType: dtype, Shape: copyShape(shape)}
	if t.NumElements() != len(vals) {
		return t, fmt.Errorf("tensor %q: shape %v has %d elements, got %d values", name, shape, t.NumElements(), len(vals))
	}
	switch dtype {
	case F32:
		t.Data = make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
		}
	case F16:
		t.Data = make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(t.Data[2*i:], Float32ToF16(v))
		}
	case BF16:
		t.Data = make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(t.Data[2*i:], Float32ToBF16(v))
		}
	case F64:
		t.Data = make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(float64(v)))
		}
	default:
		return t, fmt.Errorf("tensor %q: cannot encode float values as %s", name, dtype)
	}
	return t, nil
}

// FromFloat64s builds a tensor of dtype from float64 values: F64 keeps them exactly, the other
// float dtypes round through float32.
func FromFloat64s(name, dtype string, shape []int, vals []float64) (Tensor, error) {
	if dtype == F64 {
		t := Tensor{Name: name, DType: dtype, Shape: copyShape(shape)}
		if t.NumElements() != len(vals) {
			return t, fmt.Errorf("tensor %q: shape %v has %d elements, got %d values", name, shape, t.NumElements(), len(vals))
		}
		t.Data = make([]byte, 8*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(v))
		}
		return t, nil
	}
	f := make([]float32, len(vals))
	for i, v := range vals {
		f[i] = float32(v)
	}
	return FromFloat32s(name, dtype, shape, f)
}

// String describes the tensor as NAME DTYPE[shape].
func (t *Tensor) String() string {
	ds := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		ds[i] = fmt.Sprint(d)
	}
	return fmt.Sprintf("%s %s[%s]", t.Name, t.DType, strings.Join(ds, ","))
}

func copyShape(s []int) []int {
	out := make([]int, len(s))
	copy(out, s)
	return out
}
