package yamlfile

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

type aliasRequest struct {
	Path string `yaml:"path"`
}

type aliasExecutor struct {
	Name     string         `yaml:"name"`
	Requests []aliasRequest `yaml:"requests"`
}

type aliasFile struct {
	Defaults *aliasRequest   `yaml:"defaults"`
	Load     []aliasExecutor `yaml:"load"`
}

// aliasedLoad is n aliases of an executor that holds n aliases of a
// request: a file of a few KB that decodes into n² requests.
func aliasedLoad(n int) string {
	var b strings.Builder
	b.WriteString("load:\n  - &e {name: a, requests: [&r {path: /}")
	b.WriteString(strings.Repeat(", *r", n))
	b.WriteString("]}\n")
	b.WriteString(strings.Repeat("  - *e\n", n))
	return b.String()
}

// An alias of a list of aliases multiplies: refused at the alias that
// crosses the bound, before anything works on the copies (a scenario of
// 5,000 × 5,000 took validate 79 s and 6 GB).
func TestAliasesThatMultiplyAreRefused(t *testing.T) {
	start := time.Now()
	var f aliasFile
	_, err := Decode("f.yaml", []byte(aliasedLoad(1000)), &f)
	if err == nil || !strings.Contains(err.Error(), "aliases expand this file past") {
		t.Fatalf("decoded %d executors, err %v", len(f.Load), err)
	}
	if !strings.HasPrefix(err.Error(), "f.yaml:") || strings.HasPrefix(err.Error(), "f.yaml:1:") {
		t.Errorf("not located at the alias: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v to refuse", d)
	}
}

// Aliases that reuse a block, even many times, decode as before.
func TestAliasesThatReuseDecode(t *testing.T) {
	var f aliasFile
	src := "defaults: &d {path: /x}\n" + aliasedLoad(100)
	if _, err := Decode("f.yaml", []byte(src), &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Load) != 101 || len(f.Load[100].Requests) != 101 || f.Defaults.Path != "/x" {
		t.Fatalf("decoded %d executors", len(f.Load))
	}
	if got := fmt.Sprint(f.Load[50].Requests[7]); got != "{/}" {
		t.Fatalf("request %s", got)
	}
}
