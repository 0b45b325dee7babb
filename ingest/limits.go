package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/pprof/profile"
)

// Bounds of what one push may decode into, whatever its encoded size: a
// few bytes of protobuf or folded text can stand for megabytes of decoded
// objects (an empty pprof sample is two bytes and a Go object of 128), so
// what a push holds is counted before it is built. Over any of them a push
// is answered 413 naming the bound. For comparison, Pyroscope's own
// ingester truncates profiles at 16,000 samples of at most 1,000 frames
// (max_profile_stacktrace_samples, max_profile_stacktrace_depth) and
// refuses symbols over 64 KiB: these bounds admit every profile it takes.
const (
	// maxStacks bounds pprof samples, and distinct stacks of folded and
	// lines bodies.
	maxStacks = 500_000
	// maxLines bounds the lines of a folded or lines body.
	maxLines = 4 << 20
	// maxFrames bounds the frames of one stack (pprof: locations of a
	// sample, and the inlined lines they expand to).
	maxFrames = 4096
	// maxStackBytes bounds one stack as text: a line of a folded or lines
	// body, a pprof sample's frames joined with ';'.
	maxStackBytes = 1 << 20
	// maxTotalFrames bounds the frames of all of a pprof push's samples
	// together, which bounds the time spent walking them.
	maxTotalFrames = 16 << 20

	maxLocations   = 500_000
	maxFunctions   = 500_000
	maxMappings    = 65_536
	maxStrings     = 1 << 20
	maxStringBytes = maxStackBytes
	maxSampleTypes = 64
	// maxLineEntries bounds the (inlined) lines of all locations.
	maxLineEntries = 1 << 20
	// maxLabels bounds the labels of all samples, maxSampleLabels those
	// of one (Pyroscope: max_profile_stacktrace_sample_labels, 100).
	maxLabels       = 1 << 20
	maxSampleLabels = 128
	maxComments     = 4096
)

// tooMuch is the 413 of a decoded bound.
func tooMuch(format string, args ...any) error {
	return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf(format, args...)}
}

// pprofCounts is what a pprof profile decodes into, counted from its
// protobuf encoding without building anything.
type pprofCounts struct {
	sampleTypes, samples, values, locationRefs, labels, labeledSamples    int
	mappings, locations, lines, functions, strings, stringBytes, comments int
}

// Memory of the objects github.com/google/pprof's decoder builds, per
// item, in bytes on 64-bit Go: the object's size class, its pointer in the
// profile's slice (counted twice for append's growth), and for locations,
// functions and mappings a map entry (IDs that do not index a slice).
// TestPprofEstimateCoversParse measures the decoder against these.
const (
	costSample        = 128 + 2*8
	costValue         = 8
	costLocationRef   = 8 + 8   // the ID while decoding, then the *Location
	costLabel         = 256     // its index entry, value, and slots in three maps
	costLabeledSample = 3 * 256 // three maps (string, numeric labels, units)
	costMapping       = 144 + 2*8 + 48
	costLocation      = 80 + 2*8 + 48
	costLine          = 2 * 32
	costFunction      = 96 + 2*8 + 48
	costString        = 96 // header, the table's growth, rounding
	costComment       = 8 + 16
)

// The copy of a string is rounded up to its size class (at most an eighth
// more), which memory counts for the string table's bytes.

// memory is what the decoder will hold for a profile of these counts.
func (c *pprofCounts) memory() int64 {
	return int64(c.samples)*costSample + int64(c.values)*costValue + int64(c.locationRefs)*costLocationRef +
		int64(c.labels)*costLabel + int64(c.labeledSamples)*costLabeledSample +
		int64(c.mappings)*costMapping + int64(c.locations)*costLocation + int64(c.lines)*costLine +
		int64(c.functions)*costFunction + int64(c.strings)*costString + int64(c.stringBytes)*9/8 +
		int64(c.comments)*costComment
}

// Field numbers of profile.proto (github.com/google/pprof/proto).
const (
	fieldSampleType = 1
	fieldSample     = 2
	fieldMapping    = 3
	fieldLocation   = 4
	fieldFunction   = 5
	fieldString     = 6
	fieldComment    = 13

	fieldSampleLocation = 1
	fieldSampleValue    = 2
	fieldSampleLabel    = 3

	fieldLocationLine = 4
)

var errTruncated = errors.New("truncated protobuf")

// protoField reads one field's key and payload: for length-delimited
// fields (wire type 2) the bytes, for varints a nil payload. It returns
// the rest of data.
func protoField(data []byte) (field, wire int, payload, rest []byte, err error) {
	key, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, 0, nil, nil, errTruncated
	}
	data = data[n:]
	field, wire = int(key>>3), int(key&7)
	switch wire {
	case 0:
		_, n := binary.Uvarint(data)
		if n <= 0 {
			return 0, 0, nil, nil, errTruncated
		}
		return field, wire, nil, data[n:], nil
	case 1:
		if len(data) < 8 {
			return 0, 0, nil, nil, errTruncated
		}
		return field, wire, nil, data[8:], nil
	case 2:
		l, n := binary.Uvarint(data)
		if n <= 0 || l > uint64(len(data)-n) {
			return 0, 0, nil, nil, errTruncated
		}
		return field, wire, data[n : n+int(l)], data[n+int(l):], nil
	case 5:
		if len(data) < 4 {
			return 0, 0, nil, nil, errTruncated
		}
		return field, wire, nil, data[4:], nil
	}
	return 0, 0, nil, nil, fmt.Errorf("wire type %d", wire)
}

// repeatedCount is how many values one occurrence of a repeated scalar
// field holds: one, or as many varints as its packed payload ends.
func repeatedCount(wire int, payload []byte) int {
	if wire != 2 {
		return 1
	}
	n := 0
	for _, b := range payload {
		if b < 0x80 {
			n++
		}
	}
	return n
}

// countPprof walks a pprof profile's encoding and counts what it would
// decode into, failing with a 413 as soon as a bound is passed, so that a
// bomb is refused after reading its bytes once and building nothing.
func countPprof(data []byte) (*pprofCounts, error) {
	c := &pprofCounts{}
	for len(data) > 0 {
		field, wire, payload, rest, err := protoField(data)
		if err != nil {
			return nil, badRequest("pprof: %v", err)
		}
		data = rest
		switch field {
		case fieldSampleType:
			if c.sampleTypes++; c.sampleTypes > maxSampleTypes {
				return nil, tooMuch("pprof: more than %d sample types", maxSampleTypes)
			}
		case fieldSample:
			if c.samples++; c.samples > maxStacks {
				return nil, tooMuch("pprof: more than %d samples", maxStacks)
			}
			if err := c.countSample(payload); err != nil {
				return nil, err
			}
		case fieldMapping:
			if c.mappings++; c.mappings > maxMappings {
				return nil, tooMuch("pprof: more than %d mappings", maxMappings)
			}
		case fieldLocation:
			if c.locations++; c.locations > maxLocations {
				return nil, tooMuch("pprof: more than %d locations", maxLocations)
			}
			if err := c.countLocation(payload); err != nil {
				return nil, err
			}
		case fieldFunction:
			if c.functions++; c.functions > maxFunctions {
				return nil, tooMuch("pprof: more than %d functions", maxFunctions)
			}
		case fieldString:
			if c.strings++; c.strings > maxStrings {
				return nil, tooMuch("pprof: more than %d strings", maxStrings)
			}
			if len(payload) > maxStringBytes {
				return nil, tooMuch("pprof: a string of more than %d bytes", maxStringBytes)
			}
			c.stringBytes += len(payload)
		case fieldComment:
			if c.comments += repeatedCount(wire, payload); c.comments > maxComments {
				return nil, tooMuch("pprof: more than %d comments", maxComments)
			}
		}
	}
	return c, nil
}

func (c *pprofCounts) countSample(data []byte) error {
	var refs, values, labels int
	for len(data) > 0 {
		field, wire, payload, rest, err := protoField(data)
		if err != nil {
			return badRequest("pprof: sample %d: %v", c.samples, err)
		}
		data = rest
		switch field {
		case fieldSampleLocation:
			if refs += repeatedCount(wire, payload); refs > maxFrames {
				return tooMuch("pprof: a sample of more than %d locations", maxFrames)
			}
		case fieldSampleValue:
			if values += repeatedCount(wire, payload); values > maxSampleTypes {
				return tooMuch("pprof: a sample of more than %d values", maxSampleTypes)
			}
		case fieldSampleLabel:
			if labels++; labels > maxSampleLabels {
				return tooMuch("pprof: a sample of more than %d labels", maxSampleLabels)
			}
		}
	}
	c.values += values
	if c.locationRefs += refs; c.locationRefs > maxTotalFrames {
		return tooMuch("pprof: samples of more than %d locations in all", maxTotalFrames)
	}
	if labels > 0 {
		c.labeledSamples++
		if c.labels += labels; c.labels > maxLabels {
			return tooMuch("pprof: more than %d sample labels", maxLabels)
		}
	}
	return nil
}

func (c *pprofCounts) countLocation(data []byte) error {
	lines := 0
	for len(data) > 0 {
		field, _, _, rest, err := protoField(data)
		if err != nil {
			return badRequest("pprof: location %d: %v", c.locations, err)
		}
		data = rest
		if field == fieldLocationLine {
			if lines++; lines > maxFrames {
				return tooMuch("pprof: a location of more than %d lines", maxFrames)
			}
		}
	}
	if c.lines += lines; c.lines > maxLineEntries {
		return tooMuch("pprof: locations of more than %d lines in all", maxLineEntries)
	}
	return nil
}

// stackTable holds a pprof profile's distinct stacks as text (root first,
// frames joined with ';') and, for each sample, the index of its stack.
type stackTable struct {
	stacks   []string
	ofSample []int32
}

// newStackTable names the stacks of prof's samples. Samples with the same
// locations share one stack, found by their location IDs before any text
// is made, so a stack is joined once however many samples carry it; each
// new one is charged to the lease before it is made, and over maxFrames
// frames or maxStackBytes bytes the push is refused.
func newStackTable(prof *profile.Profile, l *lease) (*stackTable, error) {
	st := &stackTable{ofSample: make([]int32, len(prof.Sample))}
	// The per-sample index, and the reused buffers: a key of 8 bytes per
	// location and a stack up to maxStackBytes.
	if err := l.take(4*int64(len(prof.Sample)) + 8*maxFrames + maxStackBytes); err != nil {
		return nil, err
	}
	byLocations := map[string]int32{}
	byText := map[string]int32{}
	var key []byte
	buf := make([]byte, 0, maxStackBytes)
	totalFrames := 0
	for i, s := range prof.Sample {
		key = key[:0]
		for _, loc := range s.Location {
			var id uint64
			if loc != nil {
				id = loc.ID
			}
			key = binary.LittleEndian.AppendUint64(key, id)
		}
		if k, ok := byLocations[string(key)]; ok {
			st.ofSample[i] = k
			continue
		}
		buf = buf[:0]
		frames := 0
		frame := func(name string, addr uint64, isAddr bool) error {
			if frames++; frames > maxFrames {
				return tooMuch("pprof: sample %d has a stack of more than %d frames", i, maxFrames)
			}
			if len(buf)+1+max(len(name), 18) > maxStackBytes {
				return tooMuch("pprof: sample %d has a stack of more than %d bytes", i, maxStackBytes)
			}
			if frames > 1 {
				buf = append(buf, ';')
			}
			if isAddr {
				buf = fmt.Appendf(buf, "0x%x", addr)
			} else {
				buf = append(buf, name...)
			}
			return nil
		}
		for j := len(s.Location) - 1; j >= 0; j-- { // pprof is leaf first
			loc := s.Location[j]
			if loc == nil {
				return nil, badRequest("pprof: sample %d names a location that does not exist", i)
			}
			for k := len(loc.Line) - 1; k >= 0; k-- {
				if fn := loc.Line[k].Function; fn != nil {
					if err := frame(fn.Name, 0, false); err != nil {
						return nil, err
					}
				}
			}
			if len(loc.Line) == 0 {
				if err := frame("", loc.Address, true); err != nil {
					return nil, err
				}
			}
		}
		if totalFrames += frames; totalFrames > maxTotalFrames {
			return nil, tooMuch("pprof: distinct stacks of more than %d frames in all", maxTotalFrames)
		}
		k, ok := byText[string(buf)]
		if !ok {
			if len(st.stacks) >= maxStacks {
				return nil, tooMuch("pprof: more than %d distinct stacks", maxStacks)
			}
			if err := l.take(int64(len(buf)) + stackOverhead); err != nil {
				return nil, err
			}
			k = int32(len(st.stacks))
			text := string(buf)
			st.stacks = append(st.stacks, text)
			byText[text] = k
		}
		if err := l.take(int64(len(key)) + stackOverhead); err != nil {
			return nil, err
		}
		byLocations[string(key)] = k
		st.ofSample[i] = k
	}
	return st, nil
}
