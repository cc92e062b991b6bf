package bench

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// fakeUpEnv makes the test binary play `ddnn up` when Start runs it (Start
// runs the running binary): the tests set it, the children inherit it.
const fakeUpEnv = "DDNN_BENCH_TEST_UP"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeUpEnv); mode != "" && len(os.Args) > 1 && os.Args[1] == "up" {
		os.Exit(fakeUp(mode, os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

// fakeUp is `ddnn up` as the tests need it. It prints its arguments, then
// by mode:
//
//	ready:ADDR,...  serve /readyz (200) on each ADDR; exit 0 on SIGTERM
//	silent          print 20 numbered lines, never get ready; exit 0 on SIGTERM
//	exit            print 20 numbered lines and exit 3
func fakeUp(mode string, args []string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Println("args:", strings.Join(args, " "))
	switch {
	case strings.HasPrefix(mode, "ready:"):
		for _, addr := range strings.Split(strings.TrimPrefix(mode, "ready:"), ",") {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				fmt.Println(err)
				return 1
			}
			go http.Serve(ln, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		}
	case mode == "silent", mode == "exit":
		for i := 1; i <= 20; i++ {
			fmt.Printf("line %d\n", i)
		}
		if mode == "exit" {
			return 3
		}
	default:
		fmt.Println("unknown mode", mode)
		return 2
	}
	<-term
	return 0
}
