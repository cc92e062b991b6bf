package models

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Dataset is a labeled set of uint8 samples, as read from IDX files.
type Dataset struct {
	// Shape is one sample's shape, e.g. [28 28].
	Shape []int
	// Samples holds each sample's bytes.
	Samples [][]byte
	Labels  []int
}

// maxIDXBytes bounds what ReadIDX allocates for one file.
const maxIDXBytes = 1 << 30

// LoadDataset reads gzipped IDX image and label files (the MNIST format).
func LoadDataset(imagesPath, labelsPath string) (*Dataset, error) {
	dims, data, err := readIDXFile(imagesPath)
	if err != nil {
		return nil, err
	}
	ldims, labels, err := readIDXFile(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(dims) < 2 {
		return nil, fmt.Errorf("%s: images need at least 2 dimensions, have %v", imagesPath, dims)
	}
	if len(ldims) != 1 || ldims[0] != dims[0] {
		return nil, fmt.Errorf("%s: labels have dimensions %v, want [%d] to match %s", labelsPath, ldims, dims[0], imagesPath)
	}
	per := len(data) / dims[0]
	ds := &Dataset{Shape: dims[1:], Samples: make([][]byte, dims[0]), Labels: make([]int, dims[0])}
	for i := range ds.Samples {
		ds.Samples[i] = data[i*per : (i+1)*per]
		ds.Labels[i] = int(labels[i])
	}
	return ds, nil
}

func readIDXFile(path string) ([]int, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("test set: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("test set %s: %w", path, err)
	}
	dims, data, err := ReadIDX(zr)
	if err != nil {
		return nil, nil, fmt.Errorf("test set %s: %w", path, err)
	}
	return dims, data, nil
}

// ReadIDX reads an uncompressed IDX stream of unsigned bytes (type 0x08).
func ReadIDX(r io.Reader) ([]int, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, fmt.Errorf("idx header: %w", err)
	}
	if hdr[0] != 0 || hdr[1] != 0 {
		return nil, nil, fmt.Errorf("idx: bad magic % x", hdr)
	}
	if hdr[2] != 0x08 {
		return nil, nil, fmt.Errorf("idx: element type 0x%02x, only unsigned bytes (0x08) are supported", hdr[2])
	}
	rank := int(hdr[3])
	if rank < 1 {
		return nil, nil, fmt.Errorf("idx: rank 0")
	}
	dims := make([]int, rank)
	total := 1
	for i := range dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, nil, fmt.Errorf("idx dimension %d: %w", i, err)
		}
		if d == 0 {
			return nil, nil, fmt.Errorf("idx dimension %d is 0", i)
		}
		dims[i] = int(d)
		total *= int(d)
		if total > maxIDXBytes {
			return nil, nil, fmt.Errorf("idx: %v elements over the limit of %d", dims[:i+1], maxIDXBytes)
		}
	}
	data := make([]byte, total)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("idx data (%d bytes): %w", total, err)
	}
	return dims, data, nil
}
