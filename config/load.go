package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxFileBytes bounds a configuration file, and what an encrypted one
// decrypts to: 64 MiB, room for about a million users. Decoding takes
// about seven times a file's size in memory, so a larger file (most
// likely the wrong one) is refused before it is read whole, and a reload
// cannot take a running server's memory.
const MaxFileBytes = 64 << 20

// ErrTooLarge is returned for a configuration larger than MaxFileBytes.
var ErrTooLarge = errors.New("the configuration is larger than 64 MiB, the most quotagate reads: check that this is the right file; per-subject settings beyond that belong in run-time profiles (the admin API's PUT /v1/subjects/{id}/profile)")

// ReadFile reads the configuration file at path, refusing one larger than
// MaxFileBytes with ErrTooLarge.
func ReadFile(path string) ([]byte, error) {
	data, over, err := readFileAtMost(path, MaxFileBytes)
	if over {
		return nil, ErrTooLarge
	}
	return data, err
}

// readFileAtMost is readAtMost for the file at path; a regular file
// larger than max is refused from its size, without reading it.
func readFileAtMost(path string, max int64) (data []byte, over bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > max {
		return nil, true, nil
	}
	return readAtMost(f, max)
}

// ReadAll reads a configuration from r, refusing one larger than
// MaxFileBytes with ErrTooLarge; it never holds more than one byte over.
func ReadAll(r io.Reader) ([]byte, error) {
	data, over, err := readAtMost(r, MaxFileBytes)
	if over {
		return nil, ErrTooLarge
	}
	return data, err
}

// readAtMost reads r to its end, or to one byte past max: over reports
// that, and then data is nil. What was read is cleared on error or when
// over (it may be a key).
func readAtMost(r io.Reader, max int64) (data []byte, over bool, err error) {
	data, err = io.ReadAll(io.LimitReader(r, max+1))
	if over = int64(len(data)) > max; over || err != nil {
		clear(data)
		return nil, over, err
	}
	return data, false, nil
}

// Load reads the configuration file at path, decrypts it in memory if it is
// age-encrypted (see LoadOptions), then parses and validates it as Parse
// does. The plaintext of an encrypted file never touches disk and is
// cleared from memory once decoded. A plaintext file that sets
// require_encryption is refused, and so is any plaintext file when
// opts.RequireEncryption is set. Every error names the file.
func Load(path string, opts LoadOptions) (*File, error) {
	data, err := ReadFile(path)
	if errors.Is(err, ErrTooLarge) {
		return nil, inFile(path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return LoadData(path, data, opts)
}

// LoadData is Load for data already read; name identifies it in errors.
func LoadData(name string, data []byte, opts LoadOptions) (*File, error) {
	encrypted := IsEncrypted(data)
	if opts.RequireEncryption && !encrypted {
		return nil, fmt.Errorf("config: %s: the file is not encrypted, but the running configuration set require_encryption: true, which stays in force until a restart; encrypt it (quotagate config encrypt --recipient age1... -o %s.age %s) and write the encrypted file, or restart quotagate with the plaintext file to drop the requirement", name, name, name)
	}
	if encrypted {
		plain, err := Decrypt(data, opts)
		if err != nil {
			return nil, inFile(name, err)
		}
		defer clear(plain)
		data = plain
	}
	f, err := ParseWith(data, opts.Check)
	if err != nil {
		return nil, inFile(name, err)
	}
	if f.RequireEncryption && !encrypted {
		return nil, fmt.Errorf("config: %s: require_encryption is true but the file is not encrypted; encrypt it (quotagate config encrypt --recipient age1... -o %s.age %s) and load the encrypted file", name, name, name)
	}
	return f, nil
}

// inFile puts the file name into err's message, after the package prefix.
func inFile(name string, err error) error {
	var ve *ValidationError
	if errors.As(err, &ve) {
		ve.File = name
		return ve
	}
	return &fileError{name: name, err: err}
}

// fileError is an error about one file; its message is
// "config: NAME: <err without its config: prefix>".
type fileError struct {
	name string
	err  error
}

func (e *fileError) Error() string {
	msg, _ := strings.CutPrefix(e.err.Error(), "config: ")
	return "config: " + e.name + ": " + msg
}

func (e *fileError) Unwrap() error { return e.err }
