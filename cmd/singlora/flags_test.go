package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/singlora/singlora/internal/fetch"
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

// TestUseCache: --cache becomes $SINGLORA_CACHE (absolute, so that child processes and
// fetch.CacheDir agree); without --cache the environment is left alone.
func TestUseCache(t *testing.T) {
	t.Setenv("SINGLORA_CACHE", "/before")
	for _, tc := range []struct {
		args []string
		want string // $SINGLORA_CACHE afterwards
		err  string
	}{
		{nil, "/before", ""},
		{[]string{"--cache", "/data/c"}, "/data/c", ""},
		{[]string{"--cache", "rel"}, filepath.Join(mustGetwd(t), "rel"), ""},
		{[]string{"--cache", " "}, "/before", "--cache is empty"},
	} {
		os.Setenv("SINGLORA_CACHE", "/before")
		fs := newFlags("fetch")
		dir := cacheFlag(fs)
		if _, err := parseArgs(fs, tc.args); err != nil {
			t.Fatal(err)
		}
		err := useCache(fs, *dir)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
		}
		if got := os.Getenv("SINGLORA_CACHE"); got != tc.want || fetch.CacheDir() != tc.want {
			t.Errorf("%q: $SINGLORA_CACHE %q, fetch.CacheDir %q; want %q", tc.args, got, fetch.CacheDir(), tc.want)
		}
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
