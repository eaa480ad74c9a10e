// Package config is quotagate's configuration: the schema (a superset of
// the seed's example JSON, which loads unchanged), strict JSON and YAML
// decoding that names the path of every unknown field and mistyped value,
// validation that reports every problem at once, conversion to
// engine.Rules, age-encrypted files, and hot reload.
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
