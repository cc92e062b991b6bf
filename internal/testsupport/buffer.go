package testsupport

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that one goroutine may read while others
// write to it: the captured logs and output of a test. It is safe for
// concurrent Write and String.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Cut keeps the first n bytes and returns what followed them.
func (s *Buffer) Cut(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rest := string(s.b.Bytes()[n:])
	s.b.Truncate(n)
	return rest
}
