package wan

import (
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// pipe dates every chunk it passes; a gate holds chunks while its link is
// cut, passes them on the heal, drops them once the network stops, and
// ends when its input does.
func TestPipe(t *testing.T) {
	recv := func(out <-chan *stream.StreamChunk) *stream.StreamChunk {
		t.Helper()
		select {
		case c := <-out:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no chunk passed")
			return nil
		}
	}
	run := func(gate *link) (chan *stream.StreamChunk, chan *stream.StreamChunk, chan struct{}) {
		in, out := make(chan *stream.StreamChunk), make(chan *stream.StreamChunk, 4)
		done := make(chan struct{})
		go func() {
			defer close(done)
			pipe(toxics.NewToxicStub(in, out), gate)
		}()
		return in, out, done
	}

	t.Run("stamp", func(t *testing.T) {
		in, out, done := run(nil)
		in <- &stream.StreamChunk{Data: []byte("a")}
		if c := recv(out); string(c.Data) != "a" || c.Timestamp.IsZero() {
			t.Errorf("chunk %q dated %v", c.Data, c.Timestamp)
		}
		close(in)
		<-done
	})

	t.Run("gate", func(t *testing.T) {
		l := &link{net: &Network{stopping: make(chan struct{})}, up: make(chan struct{})} // cut
		in, out, done := run(l)
		in <- &stream.StreamChunk{Data: []byte("held")}
		select {
		case c := <-out:
			t.Fatalf("chunk %q passed a cut link", c.Data)
		case <-time.After(50 * time.Millisecond):
		}
		l.setUp(true)
		if c := recv(out); string(c.Data) != "held" || c.Timestamp.IsZero() {
			t.Errorf("chunk %q dated %v", c.Data, c.Timestamp)
		}
		l.setUp(false) // cut again, then stop
		close(l.net.stopping)
		in <- &stream.StreamChunk{Data: []byte("dropped")}
		close(in)
		<-done
		if len(out) != 0 {
			t.Errorf("chunk %q passed after the network stopped", (<-out).Data)
		}
	})
}
