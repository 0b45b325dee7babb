package bcc

import (
	"sort"
	"strings"
)

// rewriteReads wraps every load through a kernel pointer in the code part
// of full (from offset start on) in __bcc_read(), using clang's AST: a
// member access through a pointer to a kernel struct (one the code does
// not declare), and what is reached from it by '.', '[]' or '*'. Accesses
// through ctx and through pointers to the code's own structs (map values,
// tracepoint args) stay direct, as in bcc.
func rewriteReads(root *node, full string, start int) string {
	user := map[string]bool{}
	var fields func(n *node)
	fields = func(n *node) {
		if n.Kind == "FieldDecl" {
			user[n.ID] = true
		}
		for _, c := range n.Inner {
			fields(c)
		}
	}
	fields(root)

	type span struct{ b, e int }
	seen := map[span]bool{}
	var spans []span
	for _, f := range root.Inner {
		if f.Kind != "FunctionDecl" {
			continue
		}
		ctxID := ""
		for _, p := range f.Inner {
			if p.Kind == "ParmVarDecl" {
				ctxID = p.ID
				break
			}
		}
		r := reader{user: user, ctx: ctxID}
		var walk func(n *node)
		walk = func(n *node) {
			if n.Kind == "ImplicitCastExpr" && n.CastKind == "LValueToRValue" && len(n.Inner) == 1 && r.kernel(n.Inner[0]) {
				e := n.Inner[0]
				if e.Range != nil {
					b, _, ok1 := textOffset(e.Range.Begin)
					eo, l, ok2 := textOffset(e.Range.End)
					if ok1 && ok2 && b >= start && eo+l > b {
						sp := span{b - start, eo + l - start}
						if !seen[sp] {
							seen[sp] = true
							spans = append(spans, sp)
						}
					}
				}
			}
			for _, c := range n.Inner {
				walk(c)
			}
		}
		walk(f)
	}
	body := full[start:]
	type ins struct {
		at    int
		close bool
	}
	var all []ins
	for _, s := range spans {
		all = append(all, ins{s.b, false}, ins{s.e, true})
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].at != all[j].at {
			return all[i].at < all[j].at
		}
		return all[i].close && !all[j].close
	})
	var b strings.Builder
	pos := 0
	for _, in := range all {
		b.WriteString(body[pos:in.at])
		pos = in.at
		if in.close {
			b.WriteString(")")
		} else {
			b.WriteString("__bcc_read(")
		}
	}
	b.WriteString(body[pos:])
	return b.String()
}

// reader decides which lvalues are kernel memory.
type reader struct {
	user map[string]bool
	ctx  string
}

func (r reader) kernel(e *node) bool {
	switch e.Kind {
	case "ParenExpr":
		return len(e.Inner) == 1 && r.kernel(e.Inner[0])
	case "MemberExpr":
		if len(e.Inner) != 1 {
			return false
		}
		if !e.IsArrow {
			return r.kernel(e.Inner[0])
		}
		return !r.user[e.ReferencedMemberDecl] && !r.isCtx(e.Inner[0])
	case "ArraySubscriptExpr":
		return len(e.Inner) == 2 && r.kernelPointer(e.Inner[0])
	case "UnaryOperator":
		return e.Opcode == "*" && len(e.Inner) == 1 && r.kernelPointer(e.Inner[0])
	}
	return false
}

// kernelPointer reports whether a pointer value points into kernel
// memory: an array of kernel memory decayed, or a pointer read from it.
func (r reader) kernelPointer(e *node) bool {
	for e.Kind == "ParenExpr" && len(e.Inner) == 1 {
		e = e.Inner[0]
	}
	if e.Kind == "ImplicitCastExpr" && len(e.Inner) == 1 && (e.CastKind == "ArrayToPointerDecay" || e.CastKind == "LValueToRValue") {
		return r.kernel(e.Inner[0])
	}
	return false
}

func (r reader) isCtx(e *node) bool {
	for (e.Kind == "ImplicitCastExpr" || e.Kind == "ParenExpr") && len(e.Inner) == 1 {
		e = e.Inner[0]
	}
	return e.Kind == "DeclRefExpr" && e.ReferencedDecl != nil && e.ReferencedDecl.ID == r.ctx
}
