package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// The environment variables that name the decryption secrets. Only the
// command reads them; they appear here because error messages tell the
// user which one to set.
const (
	EnvIdentityFile   = "QUOTAGATE_AGE_IDENTITY_FILE"
	EnvPassphraseFile = "QUOTAGATE_AGE_PASSPHRASE_FILE"
)

const ageMagic = "age-encryption.org/v1\n"

// IsEncrypted reports whether data is an age file, binary or ASCII-armored.
func IsEncrypted(data []byte) bool {
	return bytes.HasPrefix(data, []byte(ageMagic)) ||
		bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte(armor.Header))
}

// LoadOptions says how to decrypt an age-encrypted file. Secrets are read
// from files, never passed as values. The zero value decrypts nothing: an
// encrypted file then fails to load with a message saying what to set.
type LoadOptions struct {
	// IdentityFile holds age identities (AGE-SECRET-KEY-1..., as written by
	// age-keygen), one per line; from QUOTAGATE_AGE_IDENTITY_FILE.
	IdentityFile string
	// PassphraseFile holds the passphrase of a passphrase-encrypted file
	// (one trailing newline is ignored); from QUOTAGATE_AGE_PASSPHRASE_FILE.
	PassphraseFile string
	// RequireEncryption refuses a plaintext file even when the file itself
	// does not set require_encryption. A Watcher sets it once a loaded
	// configuration required encryption, so that the requirement stays in
	// force across reloads until the process restarts.
	RequireEncryption bool
	// Check validates the components the file configures, after the file's
	// own validation, as ParseWith does: Load, LoadData and a Watcher's
	// reloads report its problems with the file's, and a Watcher applies
	// nothing that fails it. Nil checks the file alone.
	Check func(*File) error
}

func (o LoadOptions) identities() ([]age.Identity, error) {
	var ids []age.Identity
	if o.IdentityFile != "" {
		b, err := readKeyFile(o.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("config: read the age identity file (%s): %w", EnvIdentityFile, err)
		}
		parsed, err := age.ParseIdentities(bytes.NewReader(b))
		clear(b)
		if err != nil {
			return nil, fmt.Errorf("config: age identity file %s: %w; want AGE-SECRET-KEY-1... lines as written by age-keygen", o.IdentityFile, err)
		}
		ids = append(ids, parsed...)
	}
	if o.PassphraseFile != "" {
		pass, err := readPassphrase(o.PassphraseFile)
		if err != nil {
			return nil, err
		}
		id, err := age.NewScryptIdentity(pass)
		if err != nil {
			return nil, fmt.Errorf("config: passphrase file %s: %w", o.PassphraseFile, err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("config: the file is age-encrypted and no key was given; set %s to an age identity file or %s to a file holding the passphrase", EnvIdentityFile, EnvPassphraseFile)
	}
	return ids, nil
}

// maxKeyFileBytes bounds an age identity, recipients or passphrase file:
// such a file holds a few hundred bytes.
const maxKeyFileBytes = 1 << 20

// readKeyFile reads an identity, recipients or passphrase file, refusing
// one larger than maxKeyFileBytes without reading more of it.
func readKeyFile(path string) ([]byte, error) {
	b, over, err := readFileAtMost(path, maxKeyFileBytes)
	if over {
		return nil, fmt.Errorf("%s is larger than 1 MiB, and an age key, recipients or passphrase file holds a few hundred bytes: check the path", path)
	}
	return b, err
}

func readPassphrase(path string) (string, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return "", fmt.Errorf("config: read the passphrase file: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("config: passphrase file %s is empty; write the passphrase into it", path)
	}
	return s, nil
}

// Decrypt decrypts an age file (binary or armored) in memory with the
// identities opts names. Errors are one line and say what to do.
func Decrypt(data []byte, opts LoadOptions) ([]byte, error) {
	ids, err := opts.identities()
	if err != nil {
		return nil, err
	}
	var src io.Reader = bytes.NewReader(data)
	if !bytes.HasPrefix(data, []byte(ageMagic)) {
		src = armor.NewReader(src)
	}
	r, err := age.Decrypt(src, ids...)
	if err != nil {
		return nil, decryptError(err, opts)
	}
	plain, err := ReadAll(r)
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("config: the encrypted file decrypts to more than 64 MiB: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("config: the encrypted file is corrupt or truncated (%w); restore it, or encrypt the plaintext again with quotagate config encrypt", err)
	}
	return plain, nil
}

func decryptError(err error, opts LoadOptions) error {
	var nomatch *age.NoIdentityMatchError
	if !errors.As(err, &nomatch) {
		return fmt.Errorf("config: the encrypted file is corrupt or not an age file (%w); restore it, or encrypt the plaintext again with quotagate config encrypt", err)
	}
	scrypt := slices.Contains(nomatch.StanzaTypes, "scrypt")
	switch {
	case scrypt && opts.PassphraseFile == "":
		return fmt.Errorf("config: the file is encrypted with a passphrase; set %s to a file holding it", EnvPassphraseFile)
	case scrypt:
		return fmt.Errorf("config: the passphrase in %s (%s) does not decrypt the file; check it", EnvPassphraseFile, opts.PassphraseFile)
	case opts.IdentityFile == "":
		return fmt.Errorf("config: the file is encrypted to age recipients, not a passphrase; set %s to the matching identity file", EnvIdentityFile)
	}
	return fmt.Errorf("config: no identity in %s (%s) matches the file's recipients; use the identity whose public key (age-keygen -y) the file was encrypted to, or encrypt it again to yours",
		EnvIdentityFile, opts.IdentityFile)
}

// EncryptOptions says whom to encrypt a configuration to: age recipients,
// or a passphrase (not both).
type EncryptOptions struct {
	// Recipients are age public keys (age1...).
	Recipients []string
	// RecipientsFile holds age public keys, one per line.
	RecipientsFile string
	// PassphraseFile holds a passphrase; one trailing newline is ignored.
	PassphraseFile string
	// Armor writes ASCII armor (-----BEGIN AGE ENCRYPTED FILE-----) instead
	// of binary, for files kept in text-only places.
	Armor bool
	// ScryptWorkFactor is log2 of scrypt's cost for a passphrase; zero means
	// age's default (18).
	ScryptWorkFactor int
}

func (o EncryptOptions) recipients() ([]age.Recipient, error) {
	var rs []age.Recipient
	for _, s := range o.Recipients {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("config: recipient %q: %w; want an age public key (age1...) as printed by age-keygen", s, err)
		}
		rs = append(rs, r)
	}
	if o.RecipientsFile != "" {
		b, err := readKeyFile(o.RecipientsFile)
		if err != nil {
			return nil, fmt.Errorf("config: read the recipients file: %w", err)
		}
		parsed, err := age.ParseRecipients(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("config: recipients file %s: %w; want age1... lines", o.RecipientsFile, err)
		}
		rs = append(rs, parsed...)
	}
	if o.PassphraseFile != "" {
		if len(rs) > 0 {
			return nil, errors.New("config: a passphrase cannot be combined with recipients; choose one")
		}
		pass, err := readPassphrase(o.PassphraseFile)
		if err != nil {
			return nil, err
		}
		r, err := age.NewScryptRecipient(pass)
		if err != nil {
			return nil, fmt.Errorf("config: passphrase file %s: %w", o.PassphraseFile, err)
		}
		if o.ScryptWorkFactor > 0 {
			r.SetWorkFactor(o.ScryptWorkFactor)
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return nil, errors.New("config: nothing to encrypt to; give a recipient (age1...), a recipients file or a passphrase file")
	}
	return rs, nil
}

// Encrypt writes plaintext to dst encrypted with age as opts says. It
// writes nothing else anywhere: no temporary file holds the plaintext.
func Encrypt(dst io.Writer, plaintext []byte, opts EncryptOptions) error {
	rs, err := opts.recipients()
	if err != nil {
		return err
	}
	out := dst
	var armored io.WriteCloser
	if opts.Armor {
		armored = armor.NewWriter(dst)
		out = armored
	}
	w, err := age.Encrypt(out, rs...)
	if err != nil {
		return fmt.Errorf("config: encrypt: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return fmt.Errorf("config: encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("config: encrypt: %w", err)
	}
	if armored != nil {
		if err := armored.Close(); err != nil {
			return fmt.Errorf("config: encrypt: %w", err)
		}
	}
	return nil
}
