package main

import (
	"flag"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantPos []string
		wantOut string
	}{
		{[]string{"r1", "--out", "p"}, []string{"r1"}, "p"},
		{[]string{"--out", "p", "r1", "r2"}, []string{"r1", "r2"}, "p"},
		{[]string{"r1", "--out=p", "r2"}, []string{"r1", "r2"}, "p"},
		{[]string{"r1", "--", "--out", "p"}, []string{"r1", "--out", "p"}, "."},
		{nil, nil, "."},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		out := fs.String("out", ".", "")
		pos, err := parseArgs(fs, tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !reflect.DeepEqual(pos, tc.wantPos) || *out != tc.wantOut {
			t.Errorf("%q: positional %q --out %q, want %q %q", tc.args, pos, *out, tc.wantPos, tc.wantOut)
		}
	}
}

func TestListFlag(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	l := newListFlag("a", "b")
	fs.Var(l, "method", "")
	alias(fs, "methods", "method")
	if err := fs.Parse(nil); err != nil || l.String() != "a,b" {
		t.Fatalf("default: %q %v", l, err)
	}
	if err := fs.Parse([]string{"--method", "x,y", "--methods", "z"}); err != nil {
		t.Fatal(err)
	}
	if got := l.String(); got != "x,y,z" {
		t.Fatalf("after --method x,y --methods z: %q, want x,y,z (the default replaced, then appended)", got)
	}
}

func TestWantArgs(t *testing.T) {
	if err := wantArgs([]string{"extra"}, 0, 0, ""); err == nil || !strings.Contains(err.Error(), "takes flags only") {
		t.Errorf("stray argument: %v", err)
	}
	if err := wantArgs(nil, 1, 1, "one folder"); err == nil || !strings.Contains(err.Error(), "want one folder") {
		t.Errorf("missing argument: %v", err)
	}
	if err := wantArgs([]string{"a", "b"}, 1, -1, "folders"); err != nil {
		t.Errorf("two of at least one: %v", err)
	}
}
