package mmr

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const patchFile = "mmr-v1.3.8-signing-socket.patch"

// newFiles reconstructs the files the patch creates, by path in MMR's tree.
func newFiles(t *testing.T) map[string]string {
	f, err := os.Open(patchFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]string{}
	var current string
	var text strings.Builder
	inNew, inHunk := false, false
	flush := func() {
		if current != "" {
			files[current] = text.String()
		}
		current, inNew, inHunk = "", false, false
		text.Reset()
	}
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "diff --git "):
			flush()
		case strings.HasPrefix(line, "new file mode"):
			inNew = true
		case inNew && strings.HasPrefix(line, "+++ b/"):
			current = strings.TrimPrefix(line, "+++ b/")
		case inNew && strings.HasPrefix(line, "@@ "):
			inHunk = true
		case inHunk && strings.HasPrefix(line, "+"):
			text.WriteString(line[1:] + "\n")
		case inHunk && line == `\ No newline at end of file`:
			s := text.String()
			text.Reset()
			text.WriteString(strings.TrimSuffix(s, "\n"))
		}
	}
	flush()
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return files
}

func read(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The adapter and the client in the patch are this repository's, byte for byte: what is tested
// here is what MMR gets. (contrib/mmr/refresh-patch regenerates the patch after a change.)
func TestPatchCarriesThisRepositorysFiles(t *testing.T) {
	files := newFiles(t)
	if files["matrix/sidecar/sidecar.go"] != read(t, "sidecar/sidecar.go") {
		t.Error("matrix/sidecar/sidecar.go in the patch differs from contrib/mmr/sidecar/sidecar.go: run contrib/mmr/refresh-patch")
	}
	var want []string
	entries, err := os.ReadDir("../../clients/go")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, "_test.go") || !(strings.HasSuffix(name, ".go") || name == "go.mod" || name == "README.md") {
			continue
		}
		want = append(want, name)
		if files["third_party/sigil/"+name] != read(t, filepath.Join("../../clients/go", name)) {
			t.Errorf("third_party/sigil/%s in the patch differs from clients/go/%s: run contrib/mmr/refresh-patch", name, name)
		}
	}
	var got []string
	for path := range files {
		if strings.HasPrefix(path, "third_party/sigil/") {
			got = append(got, strings.TrimPrefix(path, "third_party/sigil/"))
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the patch's third_party/sigil holds %v; clients/go has %v", got, want)
	}
}

// The MMR side of the patch does what contrib/mmr/README.md says it does.
func TestPatchChangesWhatTheReadmeSays(t *testing.T) {
	patch := read(t, patchFile)
	for _, change := range []string{
		"+\tSigningKeySocket string `yaml:\"signingKeySocket\"`",              // the per-homeserver option
		"+\t\tdc.SigningKeySocket = d.SigningKeySocket",                       // copied on (re)load
		"signer SigningSource, followRedirects bool) (*http.Response, error)", // FederatedGet's source
		"+\t// Signed before the circuit breaker",                             // hoisted out of the breaker
		"+\t\t\t\tif matrix.IsSigningUnavailable(err) {",                      // not cached as a media failure
		"+\tsidecar.Reset()", // reload drops connections
		"+replace sigil.invalid/sigil => ./third_party/sigil", // the vendored client
		"+    #signingKeySocket: \"/run/sigil/sigild.sock\"",  // documented in the sample
	} {
		if !strings.Contains(patch, change) {
			t.Errorf("the patch lacks %q", change)
		}
	}
	if !strings.Contains(newFiles(t)["matrix/signing_source.go"], "func authorizeRequest(") {
		t.Error("the patch lacks matrix/signing_source.go's authorizeRequest")
	}
}
