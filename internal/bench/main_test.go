package bench

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/proctest"
)

// fakeUpEnv makes the test binary play `ddnn up` when Start runs it (Start
// runs its own executable, under test this binary).
const fakeUpEnv = "DDNN_BENCH_TEST_UP"

func TestMain(m *testing.M) { proctest.Main(m, fakeUpEnv, fakeUp) }

// fakeUp is `ddnn up` as the tests need it. It prints its arguments, then
// does what the last one says (the tests pass it in Launch.Args):
//
//	ready:ADDR,...  serve /readyz (200) on each ADDR; exit 0 on SIGTERM
//	crash:ADDR      serve /readyz on ADDR for a second, then exit 3
//	silent          print 20 numbered lines, never get ready; exit 0 on SIGTERM
//	exit            print 20 numbered lines and exit 3
func fakeUp(args []string) int {
	fmt.Println("args:", strings.Join(args, " "))
	switch mode := args[len(args)-1]; {
	case strings.HasPrefix(mode, "ready:"):
		return proctest.Serve(false, strings.Split(strings.TrimPrefix(mode, "ready:"), ",")...)
	case strings.HasPrefix(mode, "crash:"):
		ln, err := net.Listen("tcp", strings.TrimPrefix(mode, "crash:"))
		if err != nil {
			fmt.Println(err)
			return 1
		}
		go http.Serve(ln, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		time.Sleep(time.Second)
		fmt.Println("crashed")
		return 3
	case mode == "silent", mode == "exit":
		for i := 1; i <= 20; i++ {
			fmt.Printf("line %d\n", i)
		}
		if mode == "exit" {
			return 3
		}
		return proctest.Serve(false)
	default:
		fmt.Println("unknown mode", mode)
		return 2
	}
}
