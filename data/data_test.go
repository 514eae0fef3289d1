package data

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type pair struct{ a, b string }

func pairs(exs []Example, completion bool) []pair {
	out := make([]pair, len(exs))
	for i, e := range exs {
		if completion {
			out[i] = pair{e.Prompt, e.Completion}
		} else {
			out[i] = pair{e.Text, e.Label}
		}
	}
	return out
}

func lines(exs []Example) []int {
	out := make([]int, len(exs))
	for i, e := range exs {
		out[i] = e.Line
	}
	return out
}

func TestLoadClassification(t *testing.T) {
	tests := []struct {
		name, file, content string
		opts                Options
		want                []pair
		lines               []int
	}{
		{"jsonl", "a.jsonl", "{\"text\":\"good\",\"label\":\"pos\"}\n\n  \n{\"text\":\"bad\",\"label\":\"neg\",\"x\":1}\n",
			Options{}, []pair{{"good", "pos"}, {"bad", "neg"}}, []int{1, 4}},
		{"jsonl no final newline, CRLF", "a.ndjson", "{\"text\":\"a\",\"label\":1}\r\n{\"text\":\"b\",\"label\":0}",
			Options{}, []pair{{"a", "1"}, {"b", "0"}}, []int{1, 2}},
		{"json-lines ext, bool and float labels", "a.json-lines", `{"text":"a","label":true}` + "\n" + `{"text":"b","label":-0.5}`,
			Options{}, []pair{{"a", "true"}, {"b", "-0.5"}}, []int{1, 2}},
		{"custom columns", "a.jsonl", `{"sentence":"hi","y":"q"}`,
			Options{TextColumn: "sentence", LabelColumn: "y"}, []pair{{"hi", "q"}}, []int{1}},
		{"json array (sentiment fixture)", "fixture.json", "[\n  {\"text\": \"I love it\", \"class\": 3},\n  {\"text\": \"awful\",\n   \"class\": -3}\n]\n",
			Options{LabelColumn: "class"}, []pair{{"I love it", "3"}, {"awful", "-3"}}, []int{2, 3}},
		{"json file with objects per line", "x.json", `{"text":"a","label":"b"}` + "\n" + `{"text":"c","label":"d"}`,
			Options{}, []pair{{"a", "b"}, {"c", "d"}}, []int{1, 2}},
		{"explicit format overrides extension", "data.txt", "text,label\nhi,1\n",
			Options{Format: FormatCSV}, []pair{{"hi", "1"}}, []int{2}},
		{"csv quoted multi-line, blank lines, BOM", "a.csv", "\ufefftext,label\n\"hello, \"\"world\"\"\",pos\n\n\"two\nlines\",neg\nthird,pos\n",
			Options{}, []pair{{`hello, "world"`, "pos"}, {"two\nlines", "neg"}, {"third", "pos"}}, []int{2, 4, 6}},
		{"csv column order", "a.csv", "id,label,text\n1,x,foo\n",
			Options{}, []pair{{"foo", "x"}}, []int{2}},
		{"tsv", "a.tsv", "text\tlabel\nsome \"quoted\" text\tneg\n",
			Options{}, []pair{{`some "quoted" text`, "neg"}}, []int{2}},
		{"unicode", "a.jsonl", `{"text":"héllo \u00e9 日本","label":"ok"}`,
			Options{}, []pair{{"héllo é 日本", "ok"}}, []int{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.file, tc.content)
			exs, err := LoadClassification(p, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := pairs(exs, false); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if got := lines(exs); !reflect.DeepEqual(got, tc.lines) {
				t.Errorf("lines %v, want %v", got, tc.lines)
			}
			for _, e := range exs {
				if e.File != p {
					t.Errorf("File %q, want %q", e.File, p)
				}
			}
		})
	}
}

func TestLoadCompletion(t *testing.T) {
	tests := []struct {
		name, file, content string
		opts                Options
		want                []pair
	}{
		{"jsonl", "c.jsonl", `{"prompt":"Q: 2+2?","completion":" 4"}` + "\n" + `{"prompt":"","completion":"free text"}`,
			Options{}, []pair{{"Q: 2+2?", " 4"}, {"", "free text"}}},
		{"csv custom columns", "c.csv", "input,output\nhi,there\n",
			Options{PromptColumn: "input", CompletionColumn: "output"}, []pair{{"hi", "there"}}},
		{"json array", "c.json", `[{"prompt":"a","completion":"b"}]`, Options{}, []pair{{"a", "b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exs, err := LoadCompletion(write(t, tc.file, tc.content), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := pairs(exs, true); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, file, content string
		opts                Options
		completion          bool
		line                int      // want file:line in the message (0: file only)
		want                []string // substrings of the message
	}{
		{"empty file", "e.jsonl", "", Options{}, false, 1, []string{"empty"}},
		{"blank lines only", "e.jsonl", "\n  \n\n", Options{}, false, 1, []string{"empty"}},
		{"csv header only", "e.csv", "text,label\n", Options{}, false, 1, []string{"no examples"}},
		{"json empty array", "e.json", "[\n]\n", Options{}, false, 2, []string{"no examples"}},
		{"missing label column", "m.jsonl", `{"text":"a","label":"x"}` + "\n" + `{"text":"b","class":"y"}`,
			Options{}, false, 2, []string{`"label" missing`, "columns found: class, text"}},
		{"missing text column csv", "m.csv", "sentence,label\na,b\n", Options{}, false, 1,
			[]string{`"text" missing`, "columns found: sentence, label"}},
		{"missing completion", "m.jsonl", `{"prompt":"a"}`, Options{}, true, 1, []string{`"completion" missing`, "prompt"}},
		{"not json", "n.jsonl", `{"text":"a","label":"x"}` + "\n\n" + `{"text": "b", label: 1}`, Options{}, false, 3, []string{"not valid JSON"}},
		{"truncated object", "n.jsonl", `{"text":"a","label":"x"`, Options{}, false, 1, []string{"not valid JSON"}},
		{"two objects on a line", "n.jsonl", `{"text":"a","label":"x"} {"text":"b","label":"y"}`, Options{}, false, 1, []string{"not valid JSON"}},
		{"array line", "n.jsonl", `["a","x"]`, Options{}, false, 1, []string{"want a JSON object, got an array"}},
		{"string line", "n.jsonl", `{"text":"a","label":"x"}` + "\n" + `"hello"`, Options{}, false, 2, []string{"got a string"}},
		{"text is a number", "t.jsonl", `{"text":12,"label":"x"}`, Options{}, false, 1, []string{`column "text" is a number, want a string`}},
		{"text is null", "t.jsonl", `{"text":null,"label":"x"}`, Options{}, false, 1, []string{`column "text" is null`}},
		{"label is an object", "t.jsonl", `{"text":"a","label":{"v":1}}`, Options{}, false, 1, []string{`column "label" is an object`}},
		{"label is null", "t.jsonl", `{"text":"a","label":null}`, Options{}, false, 1, []string{`column "label" is null`}},
		{"completion is a number", "t.jsonl", `{"prompt":"a","completion":3}`, Options{}, true, 1, []string{`column "completion" is a number`}},
		{"empty text", "t.jsonl", `{"text":"a","label":"x"}` + "\n" + `{"text":"  ","label":"x"}`, Options{}, false, 2, []string{"empty text"}},
		{"empty label csv", "t.csv", "text,label\na,x\nb,\n", Options{}, false, 3, []string{"empty label"}},
		{"empty completion", "t.jsonl", `{"prompt":"a","completion":""}`, Options{}, true, 1, []string{"empty completion"}},
		{"invalid utf-8 jsonl", "u.jsonl", "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\xff\",\"label\":\"x\"}\n", Options{}, false, 2, []string{"invalid UTF-8"}},
		{"invalid utf-8 csv", "u.csv", "text,label\na,x\nb\xfe,x\n", Options{}, false, 3, []string{"invalid UTF-8", `"text"`}},
		{"invalid utf-8 json array", "u.json", "[\n{\"text\":\"a\",\"label\":1},\n{\"text\":\"\xc3\",\"label\":1}]", Options{}, false, 3, []string{"invalid UTF-8"}},
		{"csv ragged row", "r.csv", "text,label\na,x\nb,y,z\n", Options{}, false, 3, []string{"3 fields", "header has 2"}},
		{"csv short row", "r.csv", "text,label,id\na,x,1\n\nb,y\n", Options{}, false, 4, []string{"2 fields", "header has 3"}},
		{"csv bare quote", "q.csv", "text,label\na,x\nb\"c,y\n", Options{}, false, 3, []string{"quote"}},
		{"json array syntax error", "s.json", "[\n{\"text\":\"a\",\"label\":1},\n{\"text\":\"b\" \"label\":1}\n]", Options{}, false, 3, []string{"not valid JSON"}},
		{"json array unterminated", "s.json", "[\n{\"text\":\"a\",\"label\":1},\n", Options{}, false, 3, []string{"not valid JSON"}},
		{"json array of numbers", "s.json", "[\n1,\n2]", Options{}, false, 2, []string{"want a JSON object, got a number"}},
		{"json array trailing data", "s.json", "[{\"text\":\"a\",\"label\":1}]\n{}", Options{}, false, 2, []string{"extra data"}},
		{"json array bad element", "s.json", "[{\"text\":\"a\",\"label\":1},\n\n {\"text\":5,\"label\":1}]", Options{}, false, 3, []string{`"text" is a number`}},
		{"unknown extension", "d.txt", "x", Options{}, false, 0, []string{`extension ".txt"`, ".jsonl", ".ndjson", ".json ", ".csv", ".tsv"}},
		{"no extension", "data", "x", Options{}, false, 0, []string{"without an extension", ".jsonl", ".csv"}},
		{"unknown format", "d.csv", "x", Options{Format: "xml"}, false, 0, []string{`unknown format "xml"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.file, tc.content)
			var err error
			if tc.completion {
				_, err = LoadCompletion(p, tc.opts)
			} else {
				_, err = LoadClassification(p, tc.opts)
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			prefix := p + ":"
			if tc.line > 0 {
				prefix = p + ":" + strconv.Itoa(tc.line) + ": "
			}
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "set the format") || strings.Contains(msg, "--format") {
				t.Errorf("error %q suggests a format flag that does not exist", msg)
			}
			var de *Error
			if !errors.As(err, &de) || de.File != p || de.Line != tc.line {
				t.Errorf("error %#v: want *Error at %s:%d", err, p, tc.line)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.jsonl")
	_, err := LoadClassification(p, Options{})
	if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v", err)
	}
}

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]Format{
		"a.jsonl": FormatJSONL, "A.JSONL": FormatJSONL, "x.ndjson": FormatJSONL, "x.json-lines": FormatJSONL,
		"x.json": FormatJSON, "dir.d/x.csv": FormatCSV, "x.tsv": FormatTSV,
	} {
		if got, err := FormatOf(name); err != nil || got != want {
			t.Errorf("FormatOf(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := FormatOf("x.parquet"); err == nil {
		t.Error("FormatOf(x.parquet): no error")
	}
}

func TestLabelSetAndEncode(t *testing.T) {
	mk := func(labels ...string) []Example {
		exs := make([]Example, len(labels))
		for i, l := range labels {
			exs[i] = Example{Text: "t", Label: l, File: "f.jsonl", Line: i + 1}
		}
		return exs
	}
	tests := []struct {
		labels []string
		want   []string
	}{
		{[]string{"pos", "neg", "pos", "neutral"}, []string{"neg", "neutral", "pos"}},
		{[]string{"10", "2", "-3", "2", "0.5"}, []string{"-3", "0.5", "2", "10"}},
		{[]string{"10", "2", "b"}, []string{"10", "2", "b"}},
		{[]string{"true", "false"}, []string{"false", "true"}},
		{nil, nil},
	}
	for _, tc := range tests {
		got := LabelSet(mk(tc.labels...))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("LabelSet(%q) = %q, want %q", tc.labels, got, tc.want)
		}
		// Order of examples does not matter.
		rev := append([]string(nil), tc.labels...)
		for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
			rev[i], rev[j] = rev[j], rev[i]
		}
		if got2 := LabelSet(mk(rev...)); !reflect.DeepEqual(got2, got) {
			t.Errorf("LabelSet depends on order: %q vs %q", got2, got)
		}
	}

	exs := mk("pos", "neg", "pos")
	ids, err := EncodeLabels(exs, []string{"neg", "pos"})
	if err != nil || !reflect.DeepEqual(ids, []int{1, 0, 1}) {
		t.Errorf("EncodeLabels = %v, %v", ids, err)
	}
	_, err = EncodeLabels(mk("pos", "neg", "meh"), []string{"neg", "pos"})
	if err == nil || !strings.HasPrefix(err.Error(), "f.jsonl:3: ") ||
		!strings.Contains(err.Error(), `"meh"`) || !strings.Contains(err.Error(), `["neg", "pos"]`) {
		t.Errorf("unknown label error: %v", err)
	}
	if _, err := EncodeLabels(exs, []string{"neg", "neg"}); err == nil {
		t.Error("duplicate label set: no error")
	}
}

func TestLoadFolder(t *testing.T) {
	empty := t.TempDir()
	full := t.TempDir()
	for _, n := range []string{"train.jsonl", "val.csv", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(full, n), []byte(`{"text":"a","label":"b"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, dir string
		opts      Options
		want      []string
		not       string
	}{
		{"empty folder", empty, Options{}, []string{"is a folder, not a data file", "holds no data files", ".jsonl"}, `extension ""`},
		{"folder with data files", full, Options{}, []string{"is a folder", "holds train.jsonl, val.csv: give one of them"}, "notes.txt"},
		{"folder with an explicit format", full, Options{Format: FormatJSONL}, []string{"is a folder"}, "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadClassification(tc.dir, tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.dir+": ") {
				t.Errorf("error %q does not start with the folder's name", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, tc.not) {
				t.Errorf("error %q contains %q", msg, tc.not)
			}
		})
	}
}

func TestCanonicalLabel(t *testing.T) {
	for in, want := range map[string]string{
		"1": "1", "1.0": "1", "1e0": "1", "1.000": "1", " 1 ": "1", "-0": "0", "-0.0": "0", "0.50": "0.5",
		"-3": "-3", "2.5e-1": "0.25", "1e-7": "1e-07", "12345678901234567890": "12345678901234567890",
		"pos": "pos", "true": "true", "007": "007", "+1": "+1", "1.": "1.", "[1]": "[1]", "NaN": "NaN", "": "",
	} {
		if got := CanonicalLabel(in); got != want {
			t.Errorf("CanonicalLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLabelKinds: numbers equal as numbers are one class (with a warning when spelled
// differently); numbers mixed with text stay separate classes, with a warning naming a first
// example of each.
func TestLabelKinds(t *testing.T) {
	tests := []struct {
		name, file, content string
		labels              []string // the examples' labels after loading
		warn                []string // substrings of the warnings; none when empty
	}{
		{"strings only", "a.jsonl", `{"text":"a","label":"pos"}` + "\n" + `{"text":"b","label":"neg"}`,
			[]string{"pos", "neg"}, nil},
		{"numbers only, one spelling each", "a.jsonl", `{"text":"a","label":1}` + "\n" + `{"text":"b","label":0}`,
			[]string{"1", "0"}, nil},
		{"a JSON string holding a number is that number", "a.jsonl", `{"text":"a","label":"1"}` + "\n" + `{"text":"b","label":1}`,
			[]string{"1", "1"}, nil},
		{"1 and 1.0 are one class", "a.jsonl", `{"text":"a","label":1}` + "\n" + `{"text":"b","label":0}` + "\n" + `{"text":"c","label":1.0}` + "\n" + `{"text":"d","label":1}`,
			[]string{"1", "0", "1", "1"}, []string{"labels 1 at ", "a.jsonl:1, 1.0 at ", "a.jsonl:3 are the same number and one class, \"1\""}},
		{"csv 1 and 1.0", "a.csv", "text,label\na,1\nb,1.0\nc,2\n",
			[]string{"1", "1", "2"}, []string{"a.csv:2", "a.csv:3", "one class"}},
		{"numbers and strings", "a.jsonl", `{"text":"a","label":1}` + "\n" + `{"text":"b","label":1}` + "\n" + `{"text":"c","label":"pos"}`,
			[]string{"1", "1", "pos"}, []string{"mix numbers and text", "1 at ", "a.jsonl:1 is a number", `"pos" at `, "a.jsonl:3 is not"}},
		{"numbers and booleans", "a.jsonl", `{"text":"a","label":true}` + "\n" + `{"text":"b","label":0}`,
			[]string{"true", "0"}, []string{"mix numbers and text", "a.jsonl:2 is a number", `"true" at `, "a.jsonl:1 is not"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var warn strings.Builder
			exs, err := LoadClassification(write(t, tc.file, tc.content), Options{Warnings: &warn})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range exs {
				got = append(got, e.Label)
			}
			if !reflect.DeepEqual(got, tc.labels) {
				t.Errorf("labels %q, want %q", got, tc.labels)
			}
			w := warn.String()
			if len(tc.warn) == 0 && w != "" {
				t.Errorf("unexpected warning %q", w)
			}
			for _, s := range tc.warn {
				if !strings.Contains(w, s) {
					t.Errorf("warning %q does not contain %q", w, s)
				}
			}
			if len(tc.warn) > 0 && (!strings.HasPrefix(w, "warning: ") || strings.Count(w, "\n") != 1) {
				t.Errorf("warning %q: want one line starting with \"warning: \"", w)
			}
		})
	}
	// The label set of a file mixing 1 and 1.0 has one class for them.
	exs, err := LoadClassification(write(t, "m.jsonl", `{"text":"a","label":1}`+"\n"+`{"text":"b","label":1.0}`+"\n"+`{"text":"c","label":2}`), Options{Warnings: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if got := LabelSet(exs); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("LabelSet = %q, want [1 2]", got)
	}
}
