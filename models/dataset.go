package models

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"codeberg.org/sbinet/npyio/npy"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Dataset is a labeled test set, each sample held as the bytes a device
// sends: uint8 elements, or little-endian float32 elements.
type Dataset struct {
	// DType is the samples' element type: wire.Uint8 (IDX files, uint8
	// .npy) or wire.Float32 (float32 .npy).
	DType wire.DType
	// Shape is one sample's shape, e.g. [28 28].
	Shape []int
	// Samples holds each sample's bytes.
	Samples [][]byte
	Labels  []int
}

// maxIDXBytes bounds what one test-set file may allocate.
const maxIDXBytes = 1 << 30

// LoadDataset reads a labeled test set. Each file is either gzipped IDX
// (the MNIST format, unsigned bytes) or a NumPy array (.npy, or gzipped
// .npy.gz) in C order: images as uint8 or float32 with the samples on the
// first axis, labels as a one-dimensional integer array.
func LoadDataset(imagesPath, labelsPath string) (*Dataset, error) {
	images, err := readArray(imagesPath)
	if err != nil {
		return nil, err
	}
	labels, err := readArray(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(images.dims) < 2 {
		return nil, fmt.Errorf("test set %s: images need at least 2 dimensions (samples first), have %v", imagesPath, images.dims)
	}
	n := images.dims[0]
	if len(labels.dims) != 1 || labels.dims[0] != n {
		return nil, fmt.Errorf("test set %s: labels have dimensions %v, want [%d] to match the %d samples of %s", labelsPath, labels.dims, n, n, imagesPath)
	}
	ds := &Dataset{Shape: images.dims[1:], Samples: make([][]byte, n)}
	switch {
	case images.bytes != nil && images.dtype == "float32":
		ds.DType = wire.Float32
	case images.bytes != nil:
		ds.DType = wire.Uint8
	default:
		return nil, fmt.Errorf("test set %s: images have dtype %s, want float32 or uint8", imagesPath, images.dtype)
	}
	if ds.Labels, err = labels.labels(); err != nil {
		return nil, fmt.Errorf("test set %s: %w", labelsPath, err)
	}
	per := len(images.bytes) / n
	for i := range ds.Samples {
		ds.Samples[i] = images.bytes[i*per : (i+1)*per]
	}
	return ds, nil
}

// array is one test-set file's content: its dimensions and either the raw
// bytes of a uint8 or float32 (little-endian) array, or integers.
type array struct {
	dtype string
	dims  []int
	bytes []byte
	ints  []int64
}

// labels returns the array's elements as class indices.
func (a *array) labels() ([]int, error) {
	out := make([]int, len(a.ints)+len(a.bytes))
	switch {
	case a.ints != nil:
		for i, v := range a.ints {
			if v < 0 || v > math.MaxInt32 {
				return nil, fmt.Errorf("label %d is %d, want a class index", i, v)
			}
			out[i] = int(v)
		}
	case a.dtype == "uint8":
		for i, b := range a.bytes {
			out[i] = int(b)
		}
	default:
		return nil, fmt.Errorf("labels have dtype %s, want an integer type (int8 to int64, uint8 to uint64)", a.dtype)
	}
	return out, nil
}

// isNPY reports whether path names a NumPy file by its extension.
func isNPY(path string) bool {
	return strings.HasSuffix(path, ".npy") || strings.HasSuffix(path, ".npy.gz")
}

// npyMagic starts every NumPy file.
const npyMagic = "\x93NUMPY"

// readArray reads a test-set file, gzipped or not, known by its content:
// NumPy when it starts with NumPy's magic (or is named .npy, .npy.gz, for
// the error), IDX otherwise.
func readArray(path string) (*array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("test set: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	if magic, _ := r.Peek(2); string(magic) == "\x1f\x8b" {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("test set %s: %w", path, err)
		}
		r = bufio.NewReader(zr)
	}
	var a *array
	if magic, _ := r.Peek(len(npyMagic)); string(magic) == npyMagic || isNPY(path) {
		a, err = readNPY(r)
	} else {
		a = &array{dtype: "uint8"}
		a.dims, a.bytes, err = ReadIDX(r)
	}
	if err != nil {
		return nil, fmt.Errorf("test set %s: %w", path, err)
	}
	// One array per file: more bytes mean a header that does not describe
	// the data, or several arrays written to one file.
	if extra, _ := io.Copy(io.Discard, io.LimitReader(r, 1<<20)); extra > 0 {
		return nil, fmt.Errorf("test set %s: %s after the %s data of shape %v: its header does not describe all of the file (one array per file)", path, moreBytes(extra), a.dtype, a.dims)
	}
	return a, nil
}

// readNPY reads a NumPy array in C order: uint8 and float32 as bytes (the
// float32s little-endian), the other integer types as int64s.
func readNPY(r io.Reader) (*array, error) {
	nr, err := npy.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("npy header: %w", err)
	}
	d := nr.Header.Descr
	d.Type = strings.Trim(d.Type, "'\"")
	a := &array{dtype: npyDTypeName(d.Type), dims: d.Shape}
	if d.Fortran {
		return nil, fmt.Errorf("npy: array is in Fortran order, want C order (save np.ascontiguousarray(a))")
	}
	if len(d.Shape) == 0 {
		return nil, fmt.Errorf("npy: a scalar, want an array")
	}
	n := 1
	for i, dim := range d.Shape {
		if dim < 1 {
			return nil, fmt.Errorf("npy: dimension %d is %d", i, dim)
		}
		n *= dim
		if n > maxIDXBytes/8 {
			return nil, fmt.Errorf("npy: shape %v is over the limit of %d elements", d.Shape, maxIDXBytes/8)
		}
	}
	switch a.dtype {
	case "float32":
		v := make([]float32, n)
		if err = nr.Read(&v); err == nil {
			a.bytes = make([]byte, 4*n)
			for i, x := range v {
				binary.LittleEndian.PutUint32(a.bytes[4*i:], math.Float32bits(x))
			}
		}
	case "uint8":
		a.bytes = make([]byte, n)
		err = nr.Read(&a.bytes)
	case "int8":
		err = readInts[int8](nr, a, n)
	case "int16":
		err = readInts[int16](nr, a, n)
	case "int32":
		err = readInts[int32](nr, a, n)
	case "int64":
		err = readInts[int64](nr, a, n)
	case "uint16":
		err = readInts[uint16](nr, a, n)
	case "uint32":
		err = readInts[uint32](nr, a, n)
	case "uint64":
		err = readInts[uint64](nr, a, n)
	default:
		return nil, fmt.Errorf("npy: dtype %s (%q) not supported: want float32 or uint8 images, integer labels", a.dtype, d.Type)
	}
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("npy: data ends before the %d %s elements of shape %v", n, a.dtype, d.Shape)
	}
	if err != nil {
		return nil, fmt.Errorf("npy %s data: %w", a.dtype, err)
	}
	return a, nil
}

// moreBytes says how many bytes follow the data, of which n were read
// (at most 1 MiB).
func moreBytes(n int64) string {
	if n >= 1<<20 {
		return "1 MiB or more"
	}
	return fmt.Sprintf("%d more bytes", n)
}

// readInts reads n integers of type T into a.ints. uint64 values above
// MaxInt64 wrap to negative ones, which labels rejects as any other.
func readInts[T int8 | int16 | int32 | int64 | uint16 | uint32 | uint64](nr *npy.Reader, a *array, n int) error {
	v := make([]T, n)
	if err := nr.Read(&v); err != nil {
		return err
	}
	a.ints = make([]int64, n)
	for i, x := range v {
		a.ints[i] = int64(x)
	}
	return nil
}

// npyDTypeName turns a NumPy type string such as "<f4" or "|u1" into the
// NumPy dtype name (float32, uint8); unknown ones are returned as they are.
func npyDTypeName(descr string) string {
	if len(descr) < 3 {
		return descr
	}
	kind := map[byte]string{'f': "float", 'i': "int", 'u': "uint", 'b': "bool", 'c': "complex"}[descr[1]]
	size := descr[2:]
	if kind == "" || strings.Trim(size, "0123456789") != "" {
		return descr
	}
	if kind == "bool" {
		return kind
	}
	var bytes int
	fmt.Sscan(size, &bytes)
	return fmt.Sprintf("%s%d", kind, 8*bytes)
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
