package testkit

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
)

// Bomb is a hostile /ingest body: few bytes on the wire that stand for a
// lot once decoded.
type Bomb struct {
	Name string
	// Query is the /ingest query string (name and format).
	Query string
	// Body is sent as is, with Content-Encoding: gzip when Gzip is set.
	Body []byte
	Gzip bool
}

// proto builds protobuf wire format by hand, so that a bomb can say what
// no encoder would build for it.
type proto struct{ b []byte }

func (p *proto) key(field, wire int) { p.b = binary.AppendUvarint(p.b, uint64(field)<<3|uint64(wire)) }

func (p *proto) varint(field int, v uint64) {
	p.key(field, 0)
	p.b = binary.AppendUvarint(p.b, v)
}

func (p *proto) bytes(field int, b []byte) {
	p.key(field, 2)
	p.b = binary.AppendUvarint(p.b, uint64(len(b)))
	p.b = append(p.b, b...)
}

// packed writes a packed repeated varint field.
func (p *proto) packed(field int, vs []uint64) {
	var q proto
	for _, v := range vs {
		q.b = binary.AppendUvarint(q.b, v)
	}
	p.bytes(field, q.b)
}

// pprofHead is a profile's string table start and its one sample type
// (samples/count): strings 0 "", 1 "samples", 2 "count".
func pprofHead() *proto {
	p := &proto{}
	for _, s := range []string{"", "samples", "count"} {
		p.bytes(6, []byte(s))
	}
	var st proto
	st.varint(1, 1)
	st.varint(2, 2)
	p.bytes(1, st.b)
	return p
}

// GzipBytes compresses b (the default level: the best takes minutes on varied bombs and gains little).
func GzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// EmptySamplesPprof is a pprof profile of n samples that hold nothing:
// two bytes each (10M make 19.5 KB gzipped), 128 bytes each decoded.
func EmptySamplesPprof(n int) []byte {
	p := pprofHead()
	for range n {
		p.bytes(2, nil)
	}
	return p.b
}

// TinyItemsPprof is a pprof profile with one sample and n locations,
// functions or strings (field 4, 5 or 6 of profile.proto) of a few bytes
// each.
func TinyItemsPprof(field, n int) []byte {
	p := pprofHead()
	var s proto
	s.varint(2, 1)
	p.bytes(2, s.b)
	for i := range n {
		var item proto
		switch field {
		case 4, 5:
			item.varint(1, uint64(i+1))
			p.bytes(field, item.b)
		case 6:
			p.bytes(6, nil)
		}
	}
	return p.b
}

// HugeStringsPprof is a pprof profile whose string table holds n strings
// of size bytes each, all of them names of functions of one deep stack.
func HugeStringsPprof(n, size int) []byte {
	p := pprofHead()
	big := bytes.Repeat([]byte("x"), size)
	var locs []uint64
	for i := range n {
		big[0] = byte('a' + i%26)
		p.bytes(6, big)
		var fn proto
		fn.varint(1, uint64(i+1))
		fn.varint(2, uint64(3+i)) // name: string 3+i
		p.bytes(5, fn.b)
		var line proto
		line.varint(1, uint64(i+1))
		var loc proto
		loc.varint(1, uint64(i+1))
		loc.bytes(4, line.b)
		p.bytes(4, loc.b)
		locs = append(locs, uint64(i+1))
	}
	var s proto
	s.packed(1, locs)
	s.varint(2, 1)
	p.bytes(2, s.b)
	return p.b
}

// DeepStacksPprof is a pprof profile of samples stacks distinct stacks of
// depth frames each, over depth functions.
func DeepStacksPprof(samples, depth int) []byte {
	p := pprofHead()
	for i := range depth {
		p.bytes(6, fmt.Appendf(nil, "function_%d", i))
		var fn proto
		fn.varint(1, uint64(i+1))
		fn.varint(2, uint64(3+i))
		p.bytes(5, fn.b)
		var line proto
		line.varint(1, uint64(i+1))
		var loc proto
		loc.varint(1, uint64(i+1))
		loc.bytes(4, line.b)
		p.bytes(4, loc.b)
	}
	locs := make([]uint64, depth)
	for i := range samples {
		for j := range locs {
			locs[j] = uint64((i+j)%depth + 1)
		}
		var s proto
		s.packed(1, locs)
		s.varint(2, 1)
		p.bytes(2, s.b)
	}
	return p.b
}

// LabelsPprof is a pprof profile of n samples with labels labels each.
func LabelsPprof(n, labels int) []byte {
	p := pprofHead()
	var s proto
	for i := range labels {
		var l proto
		l.varint(1, 1)
		l.varint(3, uint64(i))
		s.bytes(3, l.b)
	}
	s.varint(2, 1)
	for range n {
		p.bytes(2, s.b)
	}
	return p.b
}

// DistinctFolded is a folded body of n distinct stacks.
func DistinctFolded(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "main;f%d 1\n", i)
	}
	return b.Bytes()
}

// DeepFolded is a folded body of one stack of depth frames.
func DeepFolded(depth int) []byte {
	return append(bytes.Repeat([]byte("f;"), depth-1), "f 1\n"...)
}

// IngestBombs are the bombs the /ingest tests and bench/ingest-bombs.sh
// send, each with its name, all gzipped.
func IngestBombs() []Bomb {
	pprof := "name=bomb.app&format=pprof"
	return []Bomb{
		{"10M empty samples", pprof, GzipBytes(EmptySamplesPprof(10_000_000)), true},
		{"5M tiny locations", pprof, GzipBytes(TinyItemsPprof(4, 5_000_000)), true},
		{"5M tiny functions", pprof, GzipBytes(TinyItemsPprof(5, 5_000_000)), true},
		{"20M empty strings", pprof, GzipBytes(TinyItemsPprof(6, 20_000_000)), true},
		{"a string of 60 MiB", pprof, GzipBytes(HugeStringsPprof(1, 60<<20)), true},
		{"8 strings of 1 MiB in one stack", pprof, GzipBytes(HugeStringsPprof(8, 1<<20-1)), true},
		{"300 distinct stacks of 4096 frames", pprof, GzipBytes(DeepStacksPprof(300, 4096)), true},
		{"8200 samples of 128 labels", pprof, GzipBytes(LabelsPprof(8200, 128)), true},
		{"folded, 1M distinct stacks", "name=bomb.app.cpu&format=folded", GzipBytes(DistinctFolded(1_000_000)), true},
		{"folded, a stack of 100k frames", "name=bomb.app.cpu&format=folded", GzipBytes(DeepFolded(100_000)), true},
	}
}
