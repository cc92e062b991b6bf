package results

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// A result record's strings come from whoever could write to the pipeline's
// topics: a device names its id, a forged record any label. Printed raw, a
// control character in them would be obeyed by the terminal (ESC starts an
// escape sequence, CR rewrites the line, a C1 CSI or a bidi override
// reorders what the reader sees). Both outputs therefore show such
// characters only as escapes: the table as \xNN or \uNNNN, JSON as the
// \uNNNN escapes JSON defines, so it stays JSON and decodes to the same
// strings.

// unsafeRune reports whether r is shown escaped: C0 and C1 controls and DEL
// (Cc), format characters such as bidi overrides and zero-width ones (Cf),
// line and paragraph separators, and anything else that is not graphic
// (a space is).
func unsafeRune(r rune) bool {
	return r != ' ' && !unicode.IsGraphic(r)
}

// Printable is s for a terminal: every rune unsafeRune names, every byte
// that is not UTF-8, and the backslash (so that an escape cannot be
// forged) are written as Go-style escapes (\x1b, \u202e, \\).
func Printable(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == '\\' || r == utf8.RuneError || unsafeRune(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x100 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff && unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// escapeJSON rewrites the runes unsafeRune names in encoded JSON b as \uNNNN
// escapes (a pair of them beyond the BMP). JSON encoders escape C0 controls
// already, but not C1 controls, DEL or bidi overrides. Outside strings
// encoded JSON holds only ASCII punctuation, digits, letters and spaces, so
// every rune rewritten is inside a string, where the escape means the same
// rune: the result is valid JSON that decodes to the same value.
func escapeJSON(b []byte) []byte {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if unsafeRune(r) && !(r == utf8.RuneError && n == 1) {
			break
		}
		i += n
	}
	if i == len(b) {
		return b
	}
	out := append([]byte(nil), b[:i]...)
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && n == 1, !unsafeRune(r):
			out = append(out, b[i:i+n]...)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
}
