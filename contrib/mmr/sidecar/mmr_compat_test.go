package sidecar

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMatchesMMRsCreateXMatrixHeader compares Sign's headers with those of MMR's own
// CreateXMatrixHeader, built from an MMR source tree ($MMR_SRC, for example a checkout of
// v1.3.8), for the same keys and requests. MMR's module needs third-party modules that an
// offline machine does not have, so the test takes from it only what the standard library
// compiles: the function itself (matrix/xmatrix.go) and the two files of package util it calls
// (util/canonical_json.go, util/unpadded_base64.go), unchanged. It needs the MMR source, which
// CI does not have: without MMR_SRC it skips.
func TestMatchesMMRsCreateXMatrixHeader(t *testing.T) {
	src := os.Getenv("MMR_SRC")
	if src == "" {
		t.Skip("MMR_SRC is not set (an MMR source tree, such as a checkout of v1.3.8)")
	}
	t.Cleanup(Reset)
	build := scratch(t)
	writeMMRProgram(t, src, build)

	dir := scratch(t)
	keys := []key{newKey(t, "domain", "a_RVfN"), newKey(t, "example.org", "e5d0oC")}
	startDaemon(t, dir, keys...)
	type input struct {
		Seed, Version, Origin, Destination, Method, URI string
	}
	var inputs []input
	var want []string
	log := &recorder{}
	for _, k := range keys {
		for _, destination := range []string{"matrix.org", "remote.example:8448", "[2001:db8::1]:8448", "xn--bcher-kva.example"} {
			for _, mediaID := range []string{"abc123", "AbCdEfGhIjKlMnOpQrStUvWx", "a b&c<d>e\"f\\g", "ü日本", "x/y?z=1#f", "%2e%2e"} {
				u, err := url.Parse("https://h/_matrix/federation/v1/media/download/" + url.PathEscape(mediaID))
				if err != nil {
					t.Fatal(err)
				}
				uri := u.RequestURI()
				inputs = append(inputs, input{base64.StdEncoding.EncodeToString(k.private.Seed()), k.version, k.server, destination, "GET", uri})
				header, err := Sign(context.Background(), filepath.Join(dir, "s.sock"), k.server, destination, "GET", uri, log)
				if err != nil {
					t.Fatalf("%s %s: %v", k.server, uri, err)
				}
				want = append(want, header)
			}
		}
	}
	in, _ := json.Marshal(inputs)
	run := exec.Command("go", "run", ".")
	run.Dir = build
	run.Stdin = bytes.NewReader(in)
	run.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("MMR's CreateXMatrixHeader: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d headers from MMR, %d from sigild:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%+v:\n  MMR    %s\n  sigild %s", inputs[i], got[i], want[i])
		}
	}
	t.Logf("%d headers from sigild identical to MMR's CreateXMatrixHeader (%s)", len(want), src)
}

// writeMMRProgram lays out a module that calls MMR's CreateXMatrixHeader on each input.
func writeMMRProgram(t *testing.T, src, build string) {
	write := func(name, text string) {
		path := filepath.Join(build, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module mmrcopy\n\ngo 1.19\n")
	for _, name := range []string{"canonical_json.go", "unpadded_base64.go"} {
		text, err := os.ReadFile(filepath.Join(src, "util", name))
		if err != nil {
			t.Fatal(err)
		}
		write("util/"+name, string(text))
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, filepath.Join(src, "matrix", "xmatrix.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var fn bytes.Buffer
	for _, decl := range file.Decls {
		if f, ok := decl.(*ast.FuncDecl); ok && f.Name.Name == "CreateXMatrixHeader" {
			printer.Fprint(&fn, fset, f)
		}
	}
	if fn.Len() == 0 {
		t.Fatalf("%s/matrix/xmatrix.go has no CreateXMatrixHeader", src)
	}
	write("matrix/xmatrix.go", "package matrix\n\nimport (\n\t\"crypto/ed25519\"\n\t\"fmt\"\n\n\t\"mmrcopy/util\"\n)\n\n"+fn.String()+"\n")
	write("main.go", `package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"mmrcopy/matrix"
)

func main() {
	var inputs []struct{ Seed, Version, Origin, Destination, Method, URI string }
	if err := json.NewDecoder(os.Stdin).Decode(&inputs); err != nil {
		panic(err)
	}
	for _, in := range inputs {
		seed, err := base64.StdEncoding.DecodeString(in.Seed)
		if err != nil {
			panic(err)
		}
		header, err := matrix.CreateXMatrixHeader(in.Origin, in.Destination, in.Method, in.URI, nil, ed25519.NewKeyFromSeed(seed), in.Version)
		if err != nil {
			panic(err)
		}
		fmt.Println(header)
	}
}
`)
}
