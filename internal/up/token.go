package up

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// localServiceToken is .run/<name>/service.token under the working
// directory, made (mode 0600, in a directory only this user may enter) if
// it is missing. Several `ddnn up --site` starting at once agree on one:
// each writes a candidate and links it into place, and the first wins.
// A file an older version wrote, with a comment line before the token, is
// rewritten with the token alone, so that it is usable as it is.
func localServiceToken(p *pipeline.Pipeline) (string, error) {
	path := p.LocalServiceTokenPath()
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil { // made by an older version
		return "", err
	}
	if b, err := os.ReadFile(path); err == nil {
		return path, dropComments(path, b)
	}
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	os.Remove(tmp)
	if _, err := auth.WriteTokenFile(tmp); err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	return path, nil
}

// dropComments rewrites the token file at path, holding b, without its
// comment lines, if it has any.
func dropComments(path string, b []byte) error {
	var kept []string
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			kept = append(kept, line)
		}
	}
	out := strings.Join(kept, "")
	if out == string(b) {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(out), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
