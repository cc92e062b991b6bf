package bench

import (
	"fmt"
	"strings"
	"time"
)

// progress draws a bar of sends and results until stop closes: redrawn in
// place on a terminal, a line every 5 s otherwise.
func (r *run) progress(stop <-chan struct{}) {
	w := r.cfg.Progress
	if w == nil {
		return
	}
	every := 5 * time.Second
	if r.cfg.TTY {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	total := len(r.sends)
	draw := func(end string) {
		sent, res := int(r.nsent.Load()), int(r.nresults.Load())
		const width = 30
		done := width * sent / max(1, total)
		bar := strings.Repeat("=", done) + strings.Repeat(" ", width-done)
		line := fmt.Sprintf("[%s] sent %d/%d  refused %d  results %d  %s / %s",
			bar, sent, total, r.nrefused.Load(), res,
			time.Since(r.start).Truncate(100*time.Millisecond), Length(r.sends).Truncate(100*time.Millisecond))
		if r.cfg.TTY {
			fmt.Fprintf(w, "\r\033[K%s%s", line, end)
		} else {
			fmt.Fprintf(w, "%s\n", line)
		}
	}
	for {
		select {
		case <-stop:
			if r.cfg.TTY {
				draw("\n")
			}
			return
		case <-t.C:
			draw("")
		}
	}
}
