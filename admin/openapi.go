package admin

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3 document. A test checks that it lists
// exactly the routes of routeTable, with their scopes.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ principal) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPI)
	return err
}
