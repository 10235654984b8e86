// Command mmrtypecheck type-checks packages of an MMR source tree with go/types, offline.
// MMR's third-party modules are not there, so their imports become empty packages and every
// use of them is an error; the program prints all errors, one per line, sorted. Run on MMR
// v1.3.8 and on v1.3.8 with the patch, the two lists differ exactly by the errors the patch
// brings (a wrong field, type or argument count in its code, or in MMR's code it calls).
//
//	mmrtypecheck MMR_DIR PACKAGE_DIR...
package main

import (
	"fmt"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const mod = "github.com/t2bot/matrix-media-repo"

var (
	root  string
	fset  = token.NewFileSet()
	std   = importer.ForCompiler(fset, "source", nil)
	cache = map[string]*types.Package{}
	errs  = map[string]bool{}
)

type imp struct{}

func (imp) Import(path string) (*types.Package, error) {
	if p, ok := cache[path]; ok {
		return p, nil
	}
	var dir string
	switch {
	case strings.HasPrefix(path, mod+"/"):
		dir = filepath.Join(root, strings.TrimPrefix(path, mod+"/"))
	case path == "sigil.invalid/sigil":
		dir = filepath.Join(root, "third_party/sigil")
	case !strings.Contains(strings.Split(path, "/")[0], "."):
		p, err := std.Import(path)
		cache[path] = p
		return p, err
	default:
		p := types.NewPackage(path, packageName(path))
		p.MarkComplete()
		cache[path] = p
		return p, nil
	}
	return check(path, dir)
}

// packageName guesses a missing module's package name from its path, as Go's convention
// goes, with the exceptions MMR imports.
func packageName(path string) string {
	if name, ok := map[string]string{
		"github.com/rubyist/circuitbreaker":                       "circuit",
		"github.com/t2bot/go-typed-singleflight":                  "typedsf",
		"github.com/lestrrat/go-file-rotatelogs":                  "rotatelogs",
		"github.com/go-redsync/redsync/v4/redis":                  "redis",
		"github.com/DavidHuie/gomigrate":                          "gomigrate",
		"github.com/prometheus/client_golang/prometheus/promhttp": "promhttp",
	}[path]; ok {
		return name
	}
	elems := strings.Split(path, "/")
	name := elems[len(elems)-1]
	if len(elems) > 1 && len(name) <= 3 && strings.HasPrefix(name, "v") {
		name = elems[len(elems)-2] // a major-version suffix: .../go-redis/v9
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "go-"), "-go")
	if i := strings.Index(name, ".v"); i > 0 {
		name = name[:i] // gopkg.in/yaml.v3
	}
	return strings.ReplaceAll(name, "-", "")
}

func check(path, dir string) (*types.Package, error) {
	bp, err := build.Default.ImportDir(dir, 0) // the files this platform builds (build tags)
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, name := range append(bp.GoFiles, bp.CgoFiles...) {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	conf := types.Config{Importer: imp{}, Error: func(e error) {
		te := e.(types.Error)
		msg := te.Msg
		pos := fset.Position(te.Pos)
		rel, _ := filepath.Rel(root, pos.Filename)
		errs[fmt.Sprintf("%s: %s", rel, msg)] = true
	}, FakeImportC: true}
	p, _ := conf.Check(path, fset, files, nil)
	cache[path] = p
	return p, nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: mmrtypecheck MMR_DIR PACKAGE_DIR...")
		os.Exit(2)
	}
	root = os.Args[1]
	for _, p := range os.Args[2:] {
		if _, err := (imp{}).Import(mod + "/" + p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	var out []string
	for e := range errs {
		out = append(out, e)
	}
	sort.Strings(out)
	fmt.Println(strings.Join(out, "\n"))
}
