package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/quotagate/quotagate/engine"
)

// maxBody bounds a request body, in bytes: far more than the largest
// valid body (a profile with engine.MaxLimitsPerRequest limits), so that
// only a body that could never be accepted is refused with 413.
const maxBody = 64 << 10

// maxErrorBytes bounds the message of an error response: one that quotes
// a long query value or path is cut (engine.Clip).
const maxErrorBytes = 1000

// httpError is an error with the status and message a client sees; Err is
// the detail an operator logs, never sent to the client.
type httpError struct {
	Code int
	Msg  string
	Err  error
	// RetryAfter, if positive, is sent as the Retry-After header (seconds).
	RetryAfter int
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("admin: %d %s: %v", e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("admin: %d %s", e.Code, e.Msg)
}

func (e *httpError) Unwrap() error { return e.Err }

func errorf(code int, format string, args ...any) *httpError {
	return &httpError{Code: code, Msg: engine.Clip(engine.Quotef(format, args...), maxErrorBytes)}
}

// errBody is the JSON body of every error response.
type errBody struct {
	Error string `json:"error"`
}

// writeError sends err to the client: its message for an httpError, a
// generic 500 otherwise, and logs the detail of server errors.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	he := &httpError{}
	if !errors.As(err, &he) {
		he = &httpError{Code: http.StatusInternalServerError, Msg: "internal error; see the server log", Err: err}
	}
	if he.Code >= 500 {
		s.log.Error("admin: request", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", he)
	}
	if he.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.RetryAfter))
	}
	if he.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="quotagate-admin"`)
	}
	writeJSON(w, he.Code, errBody{Error: he.Msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client has gone; nothing to do
}

// decodeBody decodes a JSON body strictly into v. A body longer than
// maxBody answers 413, naming the limit.
func decodeBody(r *http.Request, v any) error {
	if r.ContentLength > maxBody {
		return bodyTooLarge(nil)
	}
	dec := json.NewDecoder(r.Body) // guard bounds it with http.MaxBytesReader
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("one JSON object expected, and more follows it")
	}
	if err == nil {
		// Read to the end, so that a body too long after the object is
		// still refused.
		_, err = io.Copy(io.Discard, dec.Buffered())
		if err == nil {
			_, err = io.Copy(io.Discard, r.Body)
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooLarge):
		return bodyTooLarge(err)
	}
	return &httpError{Code: http.StatusBadRequest, Msg: "invalid JSON body: " + err.Error(), Err: err}
}

func bodyTooLarge(err error) error {
	return &httpError{Code: http.StatusRequestEntityTooLarge, Err: err,
		Msg: fmt.Sprintf("request body too large: at most %d bytes are accepted", maxBody)}
}
