package targets

import (
	"regexp/syntax"
	"sort"
	"strings"
	"unicode/utf8"
)

// The kernel cannot run an RE2 regexp, so a cmdline selector is decided at
// exec in two steps: the exec program scans the new process's arguments
// (at most cmdlineMax bytes) with a small automaton that finds any of a set
// of literals, one of which every match of the regexp contains (a
// prefilter, as RE2's FilteredRE2 and Google Code Search build them). A
// process without any of them is not selected and never held; one with
// one is a candidate: held at exec until userspace has matched the full
// regexp against its command line.

const (
	// cmdlineMax is how many bytes of arguments the kernel scans; a
	// process with longer arguments and no literal in the first
	// cmdlineMax bytes is left to userspace (selected late, not held).
	cmdlineMax = 4096
	// dfaStates bounds the automaton: state dfaAccept is the absorbing
	// "found" state, the others are prefixes of the literals.
	dfaStates = 32
	dfaAccept = dfaStates - 1
	// minLiteral is the shortest literal worth filtering on: shorter
	// ones would hold too many unrelated processes.
	minLiteral = 2
	// maxLiterals bounds the alternatives looked for.
	maxLiterals = 16
)

// cmdlineDFA is the kernel's automaton: next[state*256+byte]. NUL (the
// separator of arguments in memory) moves as a space does, since
// userspace matches the arguments joined by spaces.
type cmdlineDFA struct {
	Next [dfaStates * 256]uint8
}

// literalSet is a set of strings one of which every match contains; any
// means no such set is known.
type literalSet struct {
	any  bool
	lits []string
	fold bool // ASCII letters match either case
}

var anyLiterals = literalSet{any: true}

// cmdlinePrefilter returns the literals the kernel filters on for the RE2
// pattern, false when the pattern has no usable set (then userspace
// decides after exec, as for any process it cannot hold).
func cmdlinePrefilter(pattern string) (literalSet, bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return anyLiterals, false
	}
	set := required(re.Simplify())
	if set.any || len(set.lits) == 0 {
		return anyLiterals, false
	}
	if len(set.lits) > maxLiterals {
		return anyLiterals, false
	}
	set = fitTrie(set)
	for _, l := range set.lits {
		if len(l) < minLiteral {
			return anyLiterals, false
		}
	}
	return set, true
}

// required computes a literal set for re (regexp/syntax after Simplify).
func required(re *syntax.Regexp) literalSet {
	switch re.Op {
	case syntax.OpLiteral:
		return literal(re)
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
	case syntax.OpConcat:
		best := anyLiterals
		for _, sub := range re.Sub {
			if s := required(sub); better(s, best) {
				best = s
			}
		}
		return best
	case syntax.OpAlternate:
		var out literalSet
		for _, sub := range re.Sub {
			s := required(sub)
			if s.any {
				return anyLiterals
			}
			out.lits = append(out.lits, s.lits...)
			out.fold = out.fold || s.fold
		}
		return out
	}
	return anyLiterals
}

// literal is the set of one literal node. Case-insensitive literals keep
// only their ASCII pieces without k and s, which RE2 also folds to
// non-ASCII runes (K to the Kelvin sign, s to the long s).
func literal(re *syntax.Regexp) literalSet {
	if re.Flags&syntax.FoldCase == 0 {
		return literalSet{lits: []string{string(re.Rune)}}
	}
	best, cur := "", []byte{}
	flush := func() {
		if len(cur) > len(best) {
			best = string(cur)
		}
		cur = cur[:0]
	}
	for _, r := range re.Rune {
		lr := r | 0x20
		if r >= utf8.RuneSelf || lr == 'k' || lr == 's' {
			flush()
			continue
		}
		if 'a' <= lr && lr <= 'z' {
			r = lr
		}
		cur = append(cur, byte(r))
	}
	flush()
	if best == "" {
		return anyLiterals
	}
	return literalSet{lits: []string{best}, fold: true}
}

// better prefers a set whose shortest literal is longer, then one with
// fewer literals.
func better(a, b literalSet) bool {
	if a.any {
		return false
	}
	if b.any {
		return true
	}
	ma, mb := shortest(a.lits), shortest(b.lits)
	if ma != mb {
		return ma > mb
	}
	return len(a.lits) < len(b.lits)
}

func shortest(lits []string) int {
	n := -1
	for _, l := range lits {
		if n < 0 || len(l) < n {
			n = len(l)
		}
	}
	return n
}

// fitTrie shortens the longest literals until their trie fits the
// automaton (a prefix of a required literal is required too).
func fitTrie(set literalSet) literalSet {
	lits := append([]string(nil), set.lits...)
	for i, l := range lits {
		if len(l) > dfaAccept {
			lits[i] = l[:dfaAccept]
		}
	}
	for trieNodes(lits) > dfaAccept {
		longest := 0
		for i, l := range lits {
			if len(l) > len(lits[longest]) {
				longest = i
			}
		}
		lits[longest] = lits[longest][:len(lits[longest])-1]
	}
	set.lits = lits
	return set
}

// trieNodes counts the non-accepting states of the literals' trie: the
// root and every proper prefix.
func trieNodes(lits []string) int {
	prefixes := map[string]bool{"": true}
	for _, l := range lits {
		for i := 1; i < len(l); i++ {
			prefixes[l[:i]] = true
		}
	}
	// A literal that is a prefix of another accepts there already.
	for _, l := range lits {
		for p := range prefixes {
			if strings.HasPrefix(p, l) && p != "" {
				delete(prefixes, p)
			}
		}
	}
	return len(prefixes)
}

// compile builds the Aho-Corasick automaton of the set: state 0 is the
// root, dfaAccept absorbs.
func (set literalSet) compile() *cmdlineDFA {
	// Trie over the literals, stopping at the first complete literal on
	// each path.
	type node struct {
		next   map[byte]int
		accept bool
	}
	lits := append([]string(nil), set.lits...)
	if set.fold {
		for i, l := range lits {
			lits[i] = asciiLower(l)
		}
	}
	// Shorter first: a longer literal stops where one it starts with
	// is complete.
	sort.Slice(lits, func(i, j int) bool { return len(lits[i]) < len(lits[j]) })
	nodes := []node{{next: map[byte]int{}}}
	for _, l := range lits {
		cur := 0
		for i := 0; i < len(l) && !nodes[cur].accept; i++ {
			n, ok := nodes[cur].next[l[i]]
			if !ok {
				n = len(nodes)
				nodes = append(nodes, node{next: map[byte]int{}})
				nodes[cur].next[l[i]] = n
			}
			cur = n
		}
		nodes[cur].accept = true
	}
	// Number the non-accepting nodes 0..; accepting ones map to dfaAccept.
	id := make([]int, len(nodes))
	n := 0
	for i := range nodes {
		if nodes[i].accept {
			id[i] = dfaAccept
		} else {
			id[i] = n
			n++
		}
	}
	// delta over trie nodes, by breadth-first order with failure links.
	delta := make([][256]int, len(nodes))
	fail := make([]int, len(nodes))
	queue := []int{0}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for c := 0; c < 256; c++ {
			v, ok := nodes[u].next[byte(c)]
			switch {
			case ok:
				delta[u][c] = v
				if u != 0 {
					fail[v] = delta[fail[u]][c]
				}
				if nodes[fail[v]].accept {
					nodes[v].accept = true
				}
				queue = append(queue, v)
			case u == 0:
				delta[u][c] = 0
			default:
				delta[u][c] = delta[fail[u]][c]
			}
		}
	}
	d := &cmdlineDFA{}
	for i := range d.Next {
		d.Next[i] = dfaAccept
	}
	for u := range nodes {
		if nodes[u].accept {
			continue
		}
		for c := 0; c < 256; c++ {
			in := c
			if c == ' ' {
				continue // set with NUL below
			}
			if set.fold && 'A' <= c && c <= 'Z' {
				in = c | 0x20
			}
			d.Next[id[u]*256+c] = uint8(id[delta[u][in]])
		}
		d.Next[id[u]*256+' '] = uint8(id[delta[u][' ']])
		d.Next[id[u]*256+0] = uint8(id[delta[u][' ']])
	}
	return d
}

// scan runs the automaton over args as the kernel does (NUL-separated,
// at most cmdlineMax bytes): found, or decided when every byte was seen.
func (d *cmdlineDFA) scan(args []byte) (found, decided bool) {
	decided = len(args) <= cmdlineMax
	if !decided {
		args = args[:cmdlineMax]
	}
	s := 0
	for _, b := range args {
		s = int(d.Next[(s&(dfaStates-1))*256+int(b)])
		if s == dfaAccept {
			return true, true
		}
	}
	return false, decided
}

// asciiLower lowers ASCII letters only (the automaton folds no others).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c | 0x20
		}
	}
	return string(b)
}
