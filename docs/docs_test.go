package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// pages are the Markdown files whose links are checked, relative to the
// repository root (globs).
var pages = []string{"README.md", "docs/*.md", "bench/README.md", "examples/README.md"}

// TestLinks fails for every relative link of the pages that names a file
// that does not exist or a #anchor that no heading of its page makes.
func TestLinks(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, g := range pages {
		m, err := filepath.Glob(filepath.Join(root, g))
		if err != nil || len(m) == 0 {
			t.Fatalf("no page matches %s (err %v)", g, err)
		}
		files = append(files, m...)
	}
	c := newChecker(root)
	for _, f := range files {
		for _, p := range c.check(f) {
			t.Error(p)
		}
	}
}

// TestCheckerFinds proves the checker fails on what it must: a missing
// file, a missing anchor in another page and in the same page, and a link
// out of the repository; and accepts GitHub's anchors, duplicates
// included, and ignores links in code.
func TestCheckerFinds(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/b.md", "# B\n\n## Kernels proven in CI: `make test-kernels`\n\n## Same\n\n## Same\n")
	write("x.go", "package x\n")
	tests := []struct {
		name, text string
		problems   int
	}{
		{"good file and anchors", "[a](docs/b.md) [b](docs/b.md#kernels-proven-in-ci-make-test-kernels) [c](docs/b.md#same-1) [d](x.go) [e](docs/)", 0},
		{"absolute and mail links are not checked", "[a](https://example.com/x#y) [b](mailto:a@b)", 0},
		{"own anchor", "## Here it is\n\n[a](#here-it-is)", 0},
		{"reference definition", "[a][r]\n\n[r]: docs/b.md#b", 0},
		{"links in code are ignored", "```\n[a](nope.md)\n```\n\n`[b](nope.md)`", 0},
		{"missing file", "[a](docs/nope.md)", 1},
		{"missing anchor", "[a](docs/b.md#nope)", 1},
		{"third duplicate that is not there", "[a](docs/b.md#same-2)", 1},
		{"missing own anchor", "## Here\n\n[a](#there)", 1},
		{"anchor into a non-Markdown file", "[a](x.go#l1)", 1},
		{"out of the repository", "[a](../outside.md)", 1},
		{"broken reference definition", "[r]: docs/nope.md", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			write("page.md", tc.text+"\n")
			got := newChecker(root).check(filepath.Join(root, "page.md"))
			if len(got) != tc.problems {
				t.Errorf("%d problems, want %d: %q", len(got), tc.problems, got)
			}
		})
	}
}

func TestAnchor(t *testing.T) {
	tests := []struct{ heading, want string }{
		{"Threat model", "threat-model"},
		{"Kernels proven in CI: `make test-kernels`", "kernels-proven-in-ci-make-test-kernels"},
		{"10. Inline code: compiling at load vs the compiler cache (issue 20)", "10-inline-code-compiling-at-load-vs-the-compiler-cache-issue-20"},
		{"ebpf_exporter compatibility", "ebpf_exporter-compatibility"},
		{"config.Config -> loader.Object", "configconfig---loaderobject"},
		{"**Bold** and *em* [link](x.md)", "bold-and-em-link"},
		{"Multi-value maps", "multi-value-maps"},
		{"/ingest bounds", "ingest-bounds"},
		{"Grüße", "grüße"},
	}
	for _, tc := range tests {
		if got := anchor(tc.heading); got != tc.want {
			t.Errorf("anchor(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}

// checker checks the links of pages inside root, reading each linked
// page's anchors once.
type checker struct {
	root    string
	anchors map[string][]string
}

func newChecker(root string) *checker {
	return &checker{root: root, anchors: map[string][]string{}}
}

var (
	// inline links and images: [text](target "title")
	inlineLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// reference definitions: [name]: target
	refDef     = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$`)
	heading    = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	fence      = regexp.MustCompile("^\\s{0,3}(```|~~~)")
)

// check returns one problem per broken relative link of the page.
func (c *checker) check(page string) []string {
	data, err := os.ReadFile(page)
	if err != nil {
		return []string{err.Error()}
	}
	rel, _ := filepath.Rel(c.root, page)
	var problems []string
	for n, line := range proseLines(data) {
		if line == "" {
			continue
		}
		prose := codeSpan.ReplaceAllString(line, "")
		var targets []string
		for _, m := range inlineLink.FindAllStringSubmatch(prose, -1) {
			targets = append(targets, m[1])
		}
		if m := refDef.FindStringSubmatch(prose); m != nil {
			targets = append(targets, m[1])
		}
		for _, target := range targets {
			if p := c.checkTarget(page, target); p != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: link %s: %s", rel, n+1, target, p))
			}
		}
	}
	return problems
}

// checkTarget says what is wrong with one link target of page, or "".
func (c *checker) checkTarget(page, target string) string {
	if u, err := url.Parse(target); err == nil && u.Scheme != "" {
		return "" // absolute: not this test's business
	}
	path, frag, _ := strings.Cut(target, "#")
	path, err := url.PathUnescape(path)
	if err != nil {
		return err.Error()
	}
	dest := page
	if path != "" {
		dest = filepath.Join(filepath.Dir(page), filepath.FromSlash(path))
		if r, err := filepath.Rel(c.root, dest); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return "points out of the repository"
		}
		if _, err := os.Stat(dest); err != nil {
			return "no such file"
		}
	}
	if frag == "" {
		return ""
	}
	if !strings.HasSuffix(dest, ".md") {
		return "an anchor into a file that is not Markdown"
	}
	as, err := c.anchorsOf(dest)
	if err != nil {
		return err.Error()
	}
	if !slices.Contains(as, frag) {
		return fmt.Sprintf("no heading makes anchor #%s", frag)
	}
	return ""
}

// anchorsOf lists the anchors GitHub makes for a page's headings, with
// "-1", "-2"... for repeated ones, and its explicit <a id> anchors.
func (c *checker) anchorsOf(page string) ([]string, error) {
	if as, ok := c.anchors[page]; ok {
		return as, nil
	}
	data, err := os.ReadFile(page)
	if err != nil {
		return nil, err
	}
	var as []string
	seen := map[string]int{}
	for _, line := range proseLines(data) {
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			as = append(as, m[1])
		}
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		a := anchor(m[2])
		if n := seen[a]; n > 0 {
			as = append(as, fmt.Sprintf("%s-%d", a, n))
		} else {
			as = append(as, a)
		}
		seen[a]++
	}
	c.anchors[page] = as
	return as, nil
}

// proseLines returns the page's lines with those of fenced code blocks
// (and the fences) blanked, so line numbers stay right.
func proseLines(data []byte) []string {
	var out []string
	var open string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := fence.FindStringSubmatch(line); m != nil {
			switch {
			case open == "":
				open = m[1]
			case open == m[1]:
				open = ""
			}
			out = append(out, "")
			continue
		}
		if open != "" {
			out = append(out, "")
			continue
		}
		out = append(out, line)
	}
	return out
}

var (
	mdLink  = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTag = regexp.MustCompile(`<[^>]+>`)
)

// anchor is GitHub's anchor of a heading: its text without markup,
// lowercased, every character but letters, digits, '_', '-' and spaces
// dropped, spaces turned into '-'.
func anchor(text string) string {
	text = mdLink.ReplaceAllString(text, "$1")
	text = htmlTag.ReplaceAllString(text, "")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
