package funnel

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/wire"
)

// Where a device's message and device ids come from, named as the device
// writes them. Every value given must keep wire.CheckID's rule; values
// that differ are refused rather than one silently winning.
const (
	fieldJSONID     = `JSON "id"`
	fieldJSONDevice = `JSON "device"`
	fieldQueryID    = "?id="
	fieldQueryDev   = "?device="
)

// idValue is an id as one source gave it.
type idValue struct{ field, v string }

// IDConflictError is two sources giving different ids for one message (a
// JSON field and a header or query, or a header twice); 400, CoAP 4.00.
type IDConflictError struct {
	What         string // "message id" or "device id"
	First, Other idValue
}

func (e *IDConflictError) Error() string {
	return fmt.Sprintf("%s: %s is %q but %s is %q; give one, or the same in both", e.What, e.First.field, e.First.v, e.Other.field, e.Other.v)
}

// resolveID returns the id the values agree on, "" when none gives one
// (an empty value is no value).
func resolveID(what string, vals []idValue) (string, error) {
	var first idValue
	for _, v := range vals {
		if v.v == "" {
			continue
		}
		if err := wire.CheckID(v.field, v.v); err != nil {
			return "", err
		}
		if first.v == "" {
			first = v
		} else if v.v != first.v {
			return "", &IDConflictError{What: what, First: first, Other: v}
		}
	}
	return first.v, nil
}

// resolveIDs sets m's id and device from its JSON body (m.ID, m.Device as
// decoded) and the ids and devices the request gave besides.
func resolveIDs(m *wire.Message, ids, devices []idValue) error {
	id, err := resolveID("message id", append([]idValue{{fieldJSONID, m.ID}}, ids...))
	if err != nil {
		return err
	}
	dev, err := resolveID("device id", append([]idValue{{fieldJSONDevice, m.Device}}, devices...))
	if err != nil {
		return err
	}
	m.ID, m.Device = id, dev
	return nil
}

// requestIDs are the ids of an HTTP ingest's X-Message-Id and X-Device-Id
// headers and its ?id= and ?device= queries, as CoAP devices give them
// (each may come more than once; other queries are ignored).
func requestIDs(r *http.Request) (ids, devices []idValue) {
	for _, v := range r.Header.Values(HeaderMessageID) {
		ids = append(ids, idValue{HeaderMessageID, v})
	}
	for _, v := range r.Header.Values(HeaderDeviceID) {
		devices = append(devices, idValue{HeaderDeviceID, v})
	}
	if r.URL.RawQuery == "" { // most requests: no map to build
		return ids, devices
	}
	q := r.URL.Query()
	for _, v := range q["id"] {
		ids = append(ids, idValue{fieldQueryID, v})
	}
	for _, v := range q["device"] {
		devices = append(devices, idValue{fieldQueryDev, v})
	}
	return ids, devices
}

// queryIDs are the ids of a CoAP ingest's ?id= and ?device= queries;
// other queries are ignored.
func queryIDs(qs []string) (ids, devices []idValue) {
	for _, q := range qs {
		if v, ok := strings.CutPrefix(q, "id="); ok {
			ids = append(ids, idValue{fieldQueryID, v})
		} else if v, ok := strings.CutPrefix(q, "device="); ok {
			devices = append(devices, idValue{fieldQueryDev, v})
		}
	}
	return ids, devices
}

// queryValues are the values of a CoAP request's key=value queries.
func queryValues(qs []string, key string) []string {
	var vs []string
	for _, q := range qs {
		if v, ok := strings.CutPrefix(q, key+"="); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// idRefusal is the refusal metric's reason for an error of resolveIDs.
func idRefusal(err error) string {
	if _, ok := err.(*IDConflictError); ok {
		return reasonIDConflict
	}
	return reasonInvalidID
}
