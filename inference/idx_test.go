package inference

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
)

// readIDXImages reads the first n images of a gzipped IDX file. (The models
// package owns the full reader; inference must not import it.)
func readIDXImages(r io.Reader, n int) ([][]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	var hdr struct {
		Magic       uint32
		N, Row, Col uint32
	}
	if err := binary.Read(zr, binary.BigEndian, &hdr); err != nil {
		return nil, err
	}
	if hdr.Magic != 0x803 || int(hdr.N) < n {
		return nil, fmt.Errorf("idx header %+v", hdr)
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = make([]byte, hdr.Row*hdr.Col)
		if _, err := io.ReadFull(zr, out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}
