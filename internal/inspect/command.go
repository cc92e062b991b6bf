// Package inspect is `ddnn inspect`: one message's path through a
// pipeline, read from the topics of every site's Kafka (with the
// pipeline's security settings): where it entered, each tier's hop (the
// replica, the model, the confidence, exit or forward, the time waiting in
// Kafka and in the replica, from records.HeaderHops), and its result; or
// where it is now: waiting on a topic, dead-lettered, or unknown, saying
// what was searched. It only reads, within bounds (--since, --max-records,
// --timeout); it never writes to Kafka nor joins a consumer group.
package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ddnn-continuum/ddnn/internal/command"
)

// Synopsis is ddnn inspect's usage line.
const Synopsis = "inspect -f FILE ID [--since DUR] [--max-records N] [--timeout DUR] [--json]"

// Command is ddnn inspect with its flags.
type Command struct {
	File string
	// ID is the message's id (wire.HeaderID, or what the device sent).
	ID         string
	Since      time.Duration
	MaxRecords int
	Timeout    time.Duration
	JSON       bool
}

// Flags binds c to ddnn inspect's flags.
func (c *Command) Flags(fs *flag.FlagSet) {
	command.FileFlag(fs, &c.File)
	fs.DurationVar(&c.Since, "since", 24*time.Hour, "read only records written within this long before now")
	fs.IntVar(&c.MaxRecords, "max-records", 1_000_000, "read at most this many records in all topics together")
	fs.DurationVar(&c.Timeout, "timeout", time.Minute, "give up the search after this long")
	fs.BoolVar(&c.JSON, "json", false, "print the report as one JSON object")
}

// Main parses ddnn inspect's arguments, flags before or after the id,
// and runs it.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := &Command{}
	fs := command.NewFlagSet("inspect", Synopsis, stderr)
	c.Flags(fs)
	var ids []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return command.ErrUsage
		}
		if fs.NArg() == 0 {
			break
		}
		ids, args = append(ids, fs.Arg(0)), fs.Args()[1:]
	}
	switch {
	case len(ids) == 0:
		fs.Usage()
		return command.Usagef("the message id is required")
	case len(ids) > 1:
		fs.Usage()
		return command.Usagef("one message id at a time (got %q)", ids)
	}
	c.ID = ids[0]
	return c.Run(ctx, stdout, stderr)
}

// Run searches for c.ID and prints its report.
func (c *Command) Run(ctx context.Context, stdout, _ io.Writer) error {
	var bad []string
	if strings.TrimSpace(c.ID) == "" {
		bad = append(bad, "the message id is empty")
	}
	if c.Since <= 0 {
		bad = append(bad, fmt.Sprintf("--since %s: must be positive", c.Since))
	}
	if c.MaxRecords < 1 {
		bad = append(bad, fmt.Sprintf("--max-records %d: must be at least 1", c.MaxRecords))
	}
	if c.Timeout <= 0 {
		bad = append(bad, fmt.Sprintf("--timeout %s: must be positive", c.Timeout))
	}
	if len(bad) > 0 {
		return command.Usagef("%s", strings.Join(bad, "; "))
	}
	p, err := command.LoadPipeline(c.File)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	s := newSearch(p, c.ID, time.Now().Add(-c.Since).Truncate(time.Millisecond), c.MaxRecords)
	s.run(ctx)
	rep := s.report(ctx)
	if err := ctx.Err(); err != nil && !rep.Searched.Complete {
		rep.Searched.Failures = append(rep.Searched.Failures, fmt.Sprintf("--timeout %s passed", c.Timeout))
	}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return Write(stdout, &rep)
}
