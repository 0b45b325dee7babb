package bcc

import "strings"

// tokKind classifies C tokens as far as the translator needs them.
type tokKind int

const (
	tokIdent tokKind = iota
	tokNumber
	tokString
	tokPunct
	tokDirective // a whole preprocessor line
)

// token is one C token of the source, by byte offset.
type token struct {
	kind       tokKind
	text       string
	start, end int
}

// lex splits C source into tokens, skipping comments and whitespace.
// Preprocessor lines (with their continuations) are single tokens.
func lex(src string) []token {
	var toks []token
	lineStart := true
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			lineStart = true
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			continue
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				i = len(src)
			} else {
				i += j + 4
			}
			continue
		case c == '#' && lineStart:
			j := i
			for j < len(src) && src[j] != '\n' {
				if src[j] == '\\' && j+1 < len(src) && src[j+1] == '\n' {
					j += 2
					continue
				}
				j++
			}
			toks = append(toks, token{tokDirective, src[i:j], i, j})
			i = j
			continue
		}
		lineStart = false
		j := i + 1
		switch {
		case isIdentStart(c):
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, src[i:j], i, j})
		case c >= '0' && c <= '9':
			for j < len(src) && (isIdentChar(src[j]) || src[j] == '.') {
				j++
			}
			toks = append(toks, token{tokNumber, src[i:j], i, j})
		case c == '"' || c == '\'':
			for j < len(src) && src[j] != c && src[j] != '\n' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j < len(src) {
				j++
			}
			toks = append(toks, token{tokString, src[i:min(j, len(src))], i, min(j, len(src))})
		default:
			if c == '-' && j < len(src) && src[j] == '>' {
				j++
			}
			toks = append(toks, token{tokPunct, src[i:j], i, j})
		}
		i = min(j, len(src))
	}
	return toks
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// lineOf is the 1-based line of offset off in src.
func lineOf(src string, off int) int {
	return strings.Count(src[:min(off, len(src))], "\n") + 1
}

// matching returns the index of the token closing the bracket at toks[i],
// or -1.
func matching(toks []token, i int) int {
	open := toks[i].text
	closer := map[string]string{"(": ")", "{": "}", "[": "]"}[open]
	depth := 0
	for j := i; j < len(toks); j++ {
		if toks[j].kind != tokPunct {
			continue
		}
		switch toks[j].text {
		case open:
			depth++
		case closer:
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}
