package up

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ddnn-continuum/ddnn/internal/auth"
	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// localServiceToken is .run/<name>/service.token under the working
// directory, made (mode 0600, in a directory only this user may enter) if
// it is missing. Several `ddnn up --site` starting at once agree on one:
// each writes a candidate and links it into place, and the first wins.
func localServiceToken(p *pipeline.Pipeline) (string, error) {
	dir, err := filepath.Abs(filepath.Join(".run", p.Name))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "service.token")
	if _, err := os.Stat(path); err == nil {
		return path, nil
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
