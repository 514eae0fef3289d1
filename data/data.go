// Package data loads training data files: classification examples (text + label) and causal-LM
// examples (prompt + completion) from JSONL, a JSON array of objects, CSV or TSV, and splits them
// into seeded, stratified train/validation/test sets.
//
// Every load error is an *Error that names the file and, where one applies, the line:
//
//	train.jsonl:17: column "label" missing; columns found: class, text
//
// Labels are class names, compared as text, with one exception: a label whose text is a JSON
// number names its class by the number (see CanonicalLabel), so 1, 1.0 and "1e0" are one class,
// "1". A file whose labels mix numbers and other text (1 and "pos"), or spell one number in
// several ways (1 and 1.0), gets a warning on Options.Warnings naming the file and line of a first
// example of each.
package data

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// Extensions lists the file name endings FormatOf recognises, for messages.
const Extensions = ".jsonl, .jsonlines, .json-lines or .ndjson (one JSON object per line), .json (an array of objects, or one per line), .csv, or .tsv or .tab (tab-separated)"

// Format is a data file format.
type Format string

// Formats. FormatAuto picks one from the file name's extension.
const (
	FormatAuto  Format = ""
	FormatJSONL Format = "jsonl" // one JSON object per line; blank lines are skipped
	FormatJSON  Format = "json"  // a JSON array of objects (a .json file holding objects one per line is read as JSONL)
	FormatCSV   Format = "csv"   // RFC 4180, header row first
	FormatTSV   Format = "tsv"   // tab-separated, header row first
)

// Default column names.
const (
	DefaultTextColumn       = "text"
	DefaultLabelColumn      = "label"
	DefaultPromptColumn     = "prompt"
	DefaultCompletionColumn = "completion"
)

// Options configures loading. The zero value picks the format from the extension and uses the
// default column names.
type Options struct {
	Format           Format
	TextColumn       string // default "text"
	LabelColumn      string // default "label" (the sentiment fixtures use "class")
	PromptColumn     string // default "prompt"
	CompletionColumn string // default "completion"
	// Warnings receives load warnings (labels that mix numbers and text, one number spelled in
	// several ways), one line each; nil means standard error, io.Discard silences them.
	Warnings io.Writer
}

// Example is one training example. A classification example has Text and Label; a causal-LM
// example has Prompt and Completion. File and Line say where it came from (Line is 1-based; for
// CSV it is the line the row starts on).
type Example struct {
	Text       string
	Label      string
	Prompt     string
	Completion string
	File       string
	Line       int
}

// Error is a load error at a place in a file. Line 0 means the whole file.
type Error struct {
	File string
	Line int
	Msg  string
	Err  error // underlying error, if any
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

func errAt(file string, line int, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// FormatOf returns the format implied by a file name's extension: .jsonl, .json-lines, .ndjson →
// JSONL; .json → JSON (array or JSONL, decided by the content); .csv → CSV; .tsv, .tab → TSV.
func FormatOf(path string) (Format, error) {
	name := strings.ToLower(filepath.Base(path))
	switch {
	case strings.HasSuffix(name, ".jsonl"), strings.HasSuffix(name, ".json-lines"),
		strings.HasSuffix(name, ".jsonlines"), strings.HasSuffix(name, ".ndjson"):
		return FormatJSONL, nil
	case strings.HasSuffix(name, ".json"):
		return FormatJSON, nil
	case strings.HasSuffix(name, ".csv"):
		return FormatCSV, nil
	case strings.HasSuffix(name, ".tsv"), strings.HasSuffix(name, ".tab"):
		return FormatTSV, nil
	}
	if ext := filepath.Ext(name); ext != "" {
		return "", errAt(path, 0, "cannot tell the format from the extension %q: data files end in %s", ext, Extensions)
	}
	return "", errAt(path, 0, "cannot tell the format of a file name without an extension: data files end in %s", Extensions)
}

// folderError explains that path is a folder, listing the data files in it (up to five).
func folderError(path string) error {
	var found []string
	if entries, err := os.ReadDir(path); err == nil {
		for _, e := range entries {
			if _, err := FormatOf(e.Name()); err == nil && !e.IsDir() {
				found = append(found, e.Name())
			}
		}
	}
	hint := "it holds no data files"
	switch n := len(found); {
	case n > 5:
		hint = fmt.Sprintf("it holds %s and %d more: give one of them", strings.Join(found[:5], ", "), n-5)
	case n > 0:
		hint = fmt.Sprintf("it holds %s: give one of them", strings.Join(found, ", "))
	}
	return errAt(path, 0, "is a folder, not a data file (%s); data files end in %s", hint, Extensions)
}

// kind says which pair of columns a load reads.
type kind int

const (
	classification kind = iota
	completion
)

// LoadClassification reads text + label examples. Labels may be JSON strings, numbers or booleans
// (kept as their JSON text: 0.5, true), except that a label that is a number is named by
// CanonicalLabel (1.0 and 1 are both "1"); text must be a non-empty string. It warns on
// opts.Warnings when the labels mix numbers and other text or spell one number in several ways.
func LoadClassification(path string, opts Options) ([]Example, error) {
	return load(path, opts, classification)
}

// LoadCompletion reads prompt + completion examples for causal-LM fine-tuning. The completion
// must be a non-empty string; the prompt must be present and a string but may be empty (plain
// language-model text).
func LoadCompletion(path string, opts Options) ([]Example, error) {
	return load(path, opts, completion)
}

func (o Options) columns(k kind) (a, b string) {
	if k == classification {
		a, b = o.TextColumn, o.LabelColumn
		if a == "" {
			a = DefaultTextColumn
		}
		if b == "" {
			b = DefaultLabelColumn
		}
		return
	}
	a, b = o.PromptColumn, o.CompletionColumn
	if a == "" {
		a = DefaultPromptColumn
	}
	if b == "" {
		b = DefaultCompletionColumn
	}
	return
}

func load(path string, opts Options, k kind) ([]Example, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, folderError(path)
	}
	format := opts.Format
	if format == FormatAuto {
		f, err := FormatOf(path)
		if err != nil {
			return nil, err
		}
		format = f
	}
	switch format {
	case FormatJSONL, FormatJSON, FormatCSV, FormatTSV:
	default:
		return nil, errAt(path, 0, "unknown format %q (want jsonl, json, csv or tsv)", format)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: err.Error(), Err: err}
	}
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // UTF-8 byte-order mark
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errAt(path, 1, "file is empty, no examples")
	}
	if format == FormatJSON {
		// A .json file may hold an array or one object per line.
		if bytes.TrimLeft(raw, " \t\r\n")[0] == '[' {
			format = FormatJSON
		} else {
			format = FormatJSONL
		}
	}
	c1, c2 := opts.columns(k)
	r := &reader{file: path, kind: k, col1: c1, col2: c2}
	var exs []Example
	switch format {
	case FormatJSONL:
		exs, err = r.jsonl(raw)
	case FormatJSON:
		exs, err = r.jsonArray(raw)
	default:
		exs, err = r.csv(raw, format == FormatTSV)
	}
	if err != nil {
		return nil, err
	}
	if len(exs) == 0 {
		return nil, errAt(path, lineCount(raw), "no examples in the file")
	}
	if k == classification {
		w := opts.Warnings
		if w == nil {
			w = os.Stderr
		}
		for _, msg := range canonicalizeLabels(exs) {
			fmt.Fprintf(w, "warning: %s\n", msg)
		}
	}
	return exs, nil
}

type reader struct {
	file       string
	kind       kind
	col1, col2 string
}

func lineCount(b []byte) int {
	n := bytes.Count(b, []byte{'\n'}) + 1
	if len(b) > 0 && b[len(b)-1] == '\n' {
		n--
	}
	return max(n, 1)
}

// lineAt returns the 1-based line number of byte offset off in b.
func lineAt(b []byte, off int) int {
	off = min(max(off, 0), len(b))
	return bytes.Count(b[:off], []byte{'\n'}) + 1
}

func (r *reader) jsonl(raw []byte) ([]Example, error) {
	var exs []Example
	br := bufio.NewReader(bytes.NewReader(raw))
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) == 0 && err == io.EOF {
			break
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if !utf8.Valid(b) {
				return nil, errAt(r.file, line, "invalid UTF-8 at byte %d of the line", firstInvalid(b)+1)
			}
			ex, err := r.object(b, line)
			if err != nil {
				return nil, err
			}
			exs = append(exs, ex)
		}
		if err == io.EOF {
			break
		}
	}
	return exs, nil
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

func (r *reader) jsonArray(raw []byte) ([]Example, error) {
	if i := firstInvalid(raw); i >= 0 {
		return nil, errAt(r.file, lineAt(raw, i), "invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // '['
		return nil, r.syntaxErr(raw, err, 0)
	}
	var exs []Example
	for dec.More() {
		start := skipSep(raw, int(dec.InputOffset()))
		var elem json.RawMessage
		if err := dec.Decode(&elem); err != nil {
			return nil, r.syntaxErr(raw, err, start)
		}
		line := lineAt(raw, start)
		ex, err := r.object(elem, line)
		if err != nil {
			return nil, err
		}
		exs = append(exs, ex)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, r.syntaxErr(raw, err, int(dec.InputOffset()))
	}
	if end := skipSep(raw, int(dec.InputOffset())); end < len(raw) {
		return nil, errAt(r.file, lineAt(raw, end), "extra data after the JSON array")
	}
	return exs, nil
}

// skipSep skips white space and commas from off.
func skipSep(b []byte, off int) int {
	for off < len(b) && strings.IndexByte(" \t\r\n,", b[off]) >= 0 {
		off++
	}
	return off
}

func (r *reader) syntaxErr(raw []byte, err error, off int) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = int(se.Offset)
	} else if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		off = len(raw)
	}
	return &Error{File: r.file, Line: lineAt(raw, off), Msg: "not valid JSON: " + err.Error(), Err: err}
}

func jsonKind(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// object decodes one JSON object into an example.
func (r *reader) object(b []byte, line int) (Example, error) {
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		return Example{}, &Error{File: r.file, Line: line, Msg: "not valid JSON: " + err.Error(), Err: err}
	}
	if k := jsonKind(b); k != "an object" {
		return Example{}, errAt(r.file, line, "want a JSON object, got %s", k)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return Example{}, &Error{File: r.file, Line: line, Msg: "not valid JSON: " + err.Error(), Err: err}
	}
	get := func(col string, label bool) (string, error) {
		v, ok := m[col]
		if !ok {
			found := make([]string, 0, len(m))
			for k := range m {
				found = append(found, k)
			}
			sort.Strings(found)
			return "", r.missing(line, col, found)
		}
		switch k := jsonKind(v); {
		case k == "a string":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", errAt(r.file, line, "column %q: %v", col, err)
			}
			return s, nil
		case label && (k == "a number" || k == "a boolean"):
			return string(bytes.TrimSpace(v)), nil
		case label:
			return "", errAt(r.file, line, "column %q is %s, want a string, number or boolean", col, k)
		default:
			return "", errAt(r.file, line, "column %q is %s, want a string", col, k)
		}
	}
	a, err := get(r.col1, false)
	if err != nil {
		return Example{}, err
	}
	b2, err := get(r.col2, r.kind == classification)
	if err != nil {
		return Example{}, err
	}
	return r.example(a, b2, line)
}

func (r *reader) missing(line int, col string, found []string) error {
	list := strings.Join(found, ", ")
	if len(found) == 0 {
		list = "(none)"
	}
	return errAt(r.file, line, "column %q missing; columns found: %s", col, list)
}

// example checks the two values and builds the example.
func (r *reader) example(a, b string, line int) (Example, error) {
	ex := Example{File: r.file, Line: line}
	if r.kind == classification {
		if strings.TrimSpace(a) == "" {
			return ex, errAt(r.file, line, "empty text in column %q", r.col1)
		}
		if strings.TrimSpace(b) == "" {
			return ex, errAt(r.file, line, "empty label in column %q", r.col2)
		}
		ex.Text, ex.Label = a, b
		return ex, nil
	}
	if strings.TrimSpace(b) == "" {
		return ex, errAt(r.file, line, "empty completion in column %q", r.col2)
	}
	ex.Prompt, ex.Completion = a, b
	return ex, nil
}

func (r *reader) csv(raw []byte, tsv bool) ([]Example, error) {
	cr := csv.NewReader(bytes.NewReader(raw))
	cr.FieldsPerRecord = -1 // checked here, for a clearer message
	if tsv {
		cr.Comma = '\t'
		cr.LazyQuotes = true
	}
	header, err := cr.Read()
	if err != nil {
		return nil, r.csvErr(err, 1)
	}
	hline, _ := cr.FieldPos(0)
	for i, h := range header {
		if !utf8.ValidString(h) {
			return nil, errAt(r.file, hline, "invalid UTF-8 in header field %d", i+1)
		}
	}
	i1, i2 := index(header, r.col1), index(header, r.col2)
	for _, c := range []struct {
		name string
		i    int
	}{{r.col1, i1}, {r.col2, i2}} {
		if c.i < 0 {
			return nil, r.missing(hline, c.name, header)
		}
	}
	var exs []Example
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, r.csvErr(err, hline)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			return nil, errAt(r.file, line, "row has %d fields, the header has %d", len(rec), len(header))
		}
		for i, f := range rec {
			if !utf8.ValidString(f) {
				fl, _ := cr.FieldPos(i)
				return nil, errAt(r.file, fl, "invalid UTF-8 in column %q", header[i])
			}
		}
		ex, err := r.example(rec[i1], rec[i2], line)
		if err != nil {
			return nil, err
		}
		exs = append(exs, ex)
	}
	return exs, nil
}

func index(cols []string, name string) int {
	for i, c := range cols {
		if strings.TrimSpace(c) == name {
			return i
		}
	}
	return -1
}

func (r *reader) csvErr(err error, line int) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &Error{File: r.file, Line: pe.Line, Msg: pe.Err.Error(), Err: err}
	}
	return &Error{File: r.file, Line: line, Msg: err.Error(), Err: err}
}
