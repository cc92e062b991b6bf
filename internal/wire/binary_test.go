package wire

import (
	"errors"
	"reflect"
	"testing"
)

// appendListBinary writes the header, the count and every item after it,
// and names a failing item by its index.
func TestAppendListBinary(t *testing.T) {
	size := func(*byte) int { return 1 }
	appendByte := func(dst []byte, b *byte) ([]byte, error) {
		if *b == 0xff {
			return nil, errors.New("0xff is reserved")
		}
		return append(dst, *b), nil
	}
	in := []byte{1, 2, 3}
	b, err := appendListBinary(nil, kindDecisions, "item", in, size, appendByte)
	if err != nil {
		t.Fatal(err)
	}
	d := decoder{b: b}
	if err := d.header(kindDecisions); err != nil {
		t.Fatal(err)
	}
	if n, err := d.count("item count", 1); err != nil || n != len(in) {
		t.Fatalf("count %d, %v; want %d", n, err, len(in))
	}
	if got := d.b[d.off:]; !reflect.DeepEqual(got, in) {
		t.Errorf("items %v, want %v", got, in)
	}
	if _, err := appendListBinary(nil, kindMessages, "item", []byte{1, 0xff}, size, appendByte); err == nil || err.Error() != "item 1: 0xff is reserved" {
		t.Errorf("error %v, want item 1: 0xff is reserved", err)
	}
}
