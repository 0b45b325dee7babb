package tracing

import (
	"context"
	"crypto/rand"

	"go.opentelemetry.io/otel/trace"
)

type spanIDKey struct{}

// withSpanID asks the id generator for this span id: BPF programs choose
// the ids of their spans, so that children they record point at them.
func withSpanID(ctx context.Context, id trace.SpanID) context.Context {
	return context.WithValue(ctx, spanIDKey{}, id)
}

// idGenerator gives the span id a record carries, random ones otherwise.
type idGenerator struct{}

func newIDGenerator() *idGenerator { return &idGenerator{} }

func (*idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if id, ok := ctx.Value(spanIDKey{}).(trace.SpanID); ok && id.IsValid() {
		return id
	}
	var id trace.SpanID
	_, _ = rand.Read(id[:])
	return id
}

func (*idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	_, _ = rand.Read(tid[:])
	var sid trace.SpanID
	_, _ = rand.Read(sid[:])
	if id, ok := ctx.Value(spanIDKey{}).(trace.SpanID); ok && id.IsValid() {
		sid = id
	}
	return tid, sid
}
