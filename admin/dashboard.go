package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the dashboard's page, script and style sheet. They load
// nothing from elsewhere: the machine serving them may have no internet.
//
//go:embed web
var web embed.FS

// dashboardHandler serves the embedded dashboard under /dashboard/. The
// files hold no data; the page fetches it with the user's token.
func dashboardHandler() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		// fs.Sub fails only on an invalid path; "web" is a constant.
		return http.NotFoundHandler()
	}
	files := http.StripPrefix("/dashboard/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
