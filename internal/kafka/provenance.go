package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// securityFile records, in a data directory, the security under which its
// records were written: the least that any broker which used the directory
// required. A broker that requires more refuses records written with less,
// which anyone who reached that broker could have forged.
const securityFile = "security.json"

// dataSecurity is what a broker required of its clients.
type dataSecurity struct {
	TLS  bool `json:"tls"`
	SASL bool `json:"sasl"`
	ACLs bool `json:"acls"`
}

func (s brokerSecurity) required() dataSecurity {
	return dataSecurity{TLS: s.cert != nil, SASL: len(s.users) > 0, ACLs: s.acls}
}

// lacks names what now requires that s did not.
func (s dataSecurity) lacks(now dataSecurity) []string {
	var missing []string
	for _, c := range []struct {
		name     string
		had, now bool
	}{{"TLS", s.TLS, now.TLS}, {"SASL", s.SASL, now.SASL}, {"ACLs", s.ACLs, now.ACLs}} {
		if c.now && !c.had {
			missing = append(missing, c.name)
		}
	}
	return missing
}

// least is what both s and o required.
func (s dataSecurity) least(o dataSecurity) dataSecurity {
	return dataSecurity{TLS: s.TLS && o.TLS, SASL: s.SASL && o.SASL, ACLs: s.ACLs && o.ACLs}
}

// TrustData keeps the records of a data directory written under less
// security than the broker now requires (see checkProvenance), and
// records the broker's security as the directory's from now on.
func TrustData() BrokerOpt { return func(c *brokerConfig) { c.trustData = true } }

// checkProvenance refuses a data directory holding records (restored)
// written under less security than now, unless trust, and records what
// the records written from now on are written under. A directory with
// records but no record of their security was written by an older
// version, with whatever security: it counts as written with none.
func checkProvenance(dir string, restored bool, now dataSecurity, trust bool) error {
	path := filepath.Join(dir, securityFile)
	was := now
	switch b, err := os.ReadFile(path); {
	case err == nil:
		if err := json.Unmarshal(b, &was); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	case restored:
		was = dataSecurity{}
	}
	if missing := was.lacks(now); len(missing) > 0 && !trust {
		return fmt.Errorf("embedded broker data dir %s holds records written by a broker without %s, which this one requires: "+
			"anyone who reached that broker could have written them. Start from an empty directory (move %s away, or set kafka.embedded_data_dir), "+
			"or pass --trust-data to keep them", dir, strings.Join(missing, " or "), dir)
	}
	if !trust {
		now = was.least(now)
	}
	b, err := json.Marshal(now)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
