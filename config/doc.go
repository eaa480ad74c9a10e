// Package config is quotagate's configuration file: the schema (a superset
// of the design document's example JSON, which loads unchanged) with its
// value types Duration and Secret, strict JSON and YAML decoding that names
// the path of every unknown field and mistyped value, defaults, validation
// of the file that reports every problem at once, conversion of the
// quota_manager block to engine.Rules, age-encrypted files, and hot
// reload. It imports no quotagate package but engine.
//
// config owns the file, not the components: the admin and alerts blocks are
// its own types, which the command's wiring (cmd/quotagate/wire.go) turns
// into admin.Config and notify.Config. Each component validates its own
// options and reports engine.FieldErrors with paths relative to them; the
// wiring places those paths in the file and hands the check to config as
// LoadOptions.Check (or ParseWith), so that a load or a reload reports the
// file's and the components' problems together, in one ValidationError,
// before anything is applied. FieldError is engine.FieldError.
//
// A configuration is read with Load (a file, decrypted in memory when it is
// age-encrypted) or Parse (bytes). The result is validated and immutable; a
// reload builds a new File and the caller swaps it in whole. Watcher reloads
// on file changes and on demand (SIGHUP), and keeps the old configuration
// when the new one is invalid. It loads a file only once it is stable (no
// change for Debounce, then the same size, modification time and SHA-256
// after Settle), so a file written in several steps is never applied
// half-written; it follows every symbolic link to the file (editors'
// renames, Kubernetes ConfigMap "..data" swaps); and once a configuration
// set require_encryption it refuses plaintext files until the process
// restarts.
package config
