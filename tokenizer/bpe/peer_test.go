package bpe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenizersPeer checks the written tokenizer.json against Hugging Face's tokenizers (the
// Rust library, through its npm binding; tools/tokenizers/install.sh installs it): the same ids
// with and without the BOS post-processor, and the same decoded text, on real held-out text.
// It runs when SINGLORA_TOKENIZERS_NODE_PATH names the node_modules folder holding tokenizers.
func TestTokenizersPeer(t *testing.T) {
	nodePath := os.Getenv("SINGLORA_TOKENIZERS_NODE_PATH")
	if nodePath == "" {
		t.Skip("set SINGLORA_TOKENIZERS_NODE_PATH to a node_modules folder with tokenizers@0.23.2 (tools/tokenizers/install.sh)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on PATH")
	}
	train, test := realTexts(t)
	tok, err := Train(train, 1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := tok.JSON()
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, text := range test {
		lines = append(lines, strings.SplitAfter(text, "\n")...)
	}
	in, _ := json.Marshal(lines)
	cmd := exec.Command(node, "../../tools/tokenizers/encode.js", path)
	cmd.Env = append(os.Environ(), "NODE_PATH="+nodePath)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tokenizers: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	n, tokens := 0, 0
	for ; sc.Scan(); n++ {
		var r struct {
			IDs         []int  `json:"ids"`
			WithSpecial []int  `json:"with_special"`
			Decoded     string `json:"decoded"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		line := lines[n]
		ids := tok.Encode(line)
		tokens += len(ids)
		if !equalInts(r.IDs, ids) {
			t.Fatalf("line %d %.60q: tokenizers %v…, bpe %v…", n, line, head(r.IDs), head(ids))
		}
		if len(r.WithSpecial) != len(ids)+1 || r.WithSpecial[0] != 0 {
			t.Fatalf("line %d: tokenizers with specials %v…, want BOS (0) then the ids", n, head(r.WithSpecial))
		}
		if r.Decoded != line {
			t.Fatalf("line %d: tokenizers decodes %.60q, want %.60q", n, r.Decoded, line)
		}
	}
	if n != len(lines) {
		t.Fatalf("tokenizers answered %d lines of %d", n, len(lines))
	}
	t.Logf("%d lines, %d tokens: identical ids and text in tokenizers and singlora", n, tokens)
}
