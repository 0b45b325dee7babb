package decoder

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/probe-exporter/probe_exporter/config"
)

// uintDecoder turns a 1, 2, 4 or 8-byte host-order unsigned integer into
// its decimal string.
type uintDecoder struct{}

func newUint(config.Decoder, *Env) (Decoder, error) { return uintDecoder{}, nil }

func (uintDecoder) Decode(in []byte) ([]byte, error) {
	v, err := hostUint(in)
	if err != nil {
		return nil, err
	}
	return strconv.AppendUint(nil, v, 10), nil
}

// hostUint reads a host-order unsigned integer of 1, 2, 4 or 8 bytes.
func hostUint(in []byte) (uint64, error) {
	switch len(in) {
	case 1:
		return uint64(in[0]), nil
	case 2:
		return uint64(binary.NativeEndian.Uint16(in)), nil
	case 4:
		return uint64(binary.NativeEndian.Uint32(in)), nil
	case 8:
		return binary.NativeEndian.Uint64(in), nil
	}
	return 0, fmt.Errorf("unsigned integers are 1, 2, 4 or 8 bytes, not %d", len(in))
}

// decimal parses the decimal output of a previous decoder (uint).
func decimal(in []byte) (uint64, error) {
	v, err := strconv.ParseUint(string(in), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal number (put the uint decoder first)", in)
	}
	return v, nil
}
