package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"filippo.io/age"
)

const (
	cliIdentity   = "testdata/age/identity.txt"
	otherIdentity = "testdata/age/other-identity.txt"
)

// TestLoadCLIFixtures loads files that the age command-line tool encrypted
// (see testdata/age/README.md).
func TestLoadCLIFixtures(t *testing.T) {
	want, err := Parse(exampleJSON)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{name: "binary", path: "testdata/age/example.json.age"},
		{name: "armored", path: "testdata/age/example.json.age.asc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.path, LoadOptions{IdentityFile: cliIdentity})
			if err != nil {
				t.Fatalf("Load() = %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decrypted config differs from the example configuration: %+v", got)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	enc, err := os.ReadFile("testdata/age/example.json.age")
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(enc)
	corrupt[len(corrupt)-5] ^= 0xff // inside the payload's authentication tag
	truncatedHeader := enc[:40]
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	passFile := write("pass.txt", []byte("correct horse\n"))
	// A key file of 2 MiB, sparse: nothing on disk, and refused unread.
	hugeKey := write("huge-key.txt", nil)
	if err := os.Truncate(hugeKey, 2<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		opts LoadOptions
		want string
	}{
		{
			name: "wrong identity", path: "testdata/age/example.json.age", opts: LoadOptions{IdentityFile: otherIdentity},
			want: "config: testdata/age/example.json.age: no identity in QUOTAGATE_AGE_IDENTITY_FILE (testdata/age/other-identity.txt) matches the file's recipients; use the identity whose public key (age-keygen -y) the file was encrypted to, or encrypt it again to yours",
		},
		{
			name: "no key given", path: "testdata/age/example.json.age",
			want: "config: testdata/age/example.json.age: the file is age-encrypted and no key was given; set QUOTAGATE_AGE_IDENTITY_FILE to an age identity file or QUOTAGATE_AGE_PASSPHRASE_FILE to a file holding the passphrase",
		},
		{
			name: "passphrase for a recipient file", path: "testdata/age/example.json.age", opts: LoadOptions{PassphraseFile: passFile},
			want: "config: testdata/age/example.json.age: the file is encrypted to age recipients, not a passphrase; set QUOTAGATE_AGE_IDENTITY_FILE to the matching identity file",
		},
		{
			name: "corrupt payload", path: write("corrupt.age", corrupt), opts: LoadOptions{IdentityFile: cliIdentity},
			want: "the encrypted file is corrupt or truncated",
		},
		{
			name: "truncated header", path: write("short.age", truncatedHeader), opts: LoadOptions{IdentityFile: cliIdentity},
			want: "the encrypted file is corrupt or not an age file",
		},
		{
			name: "missing identity file", path: "testdata/age/example.json.age", opts: LoadOptions{IdentityFile: filepath.Join(dir, "nope")},
			want: "config: testdata/age/example.json.age: read the age identity file (QUOTAGATE_AGE_IDENTITY_FILE): open ",
		},
		{
			name: "identity file too large", path: "testdata/age/example.json.age", opts: LoadOptions{IdentityFile: hugeKey},
			want: "read the age identity file (QUOTAGATE_AGE_IDENTITY_FILE): " + hugeKey + " is larger than 1 MiB, and an age key, recipients or passphrase file holds a few hundred bytes: check the path",
		},
		{
			name: "passphrase file too large", path: "testdata/age/example.json.age", opts: LoadOptions{PassphraseFile: hugeKey},
			want: "read the passphrase file: " + hugeKey + " is larger than 1 MiB",
		},
		{
			name: "not an identity file", path: "testdata/age/example.json.age", opts: LoadOptions{IdentityFile: passFile},
			want: "want AGE-SECRET-KEY-1... lines as written by age-keygen",
		},
		{
			name: "plaintext where encryption is required", path: "testdata/age/required.yaml",
			want: "config: testdata/age/required.yaml: require_encryption is true but the file is not encrypted; encrypt it (quotagate config encrypt --recipient age1... -o testdata/age/required.yaml.age testdata/age/required.yaml) and load the encrypted file",
		},
		{
			name: "missing file", path: filepath.Join(dir, "absent.yaml"),
			want: "config: open ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load() = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestRequireEncryptionSatisfied(t *testing.T) {
	f, err := Load("testdata/age/required.yaml.age", LoadOptions{IdentityFile: cliIdentity})
	if err != nil {
		t.Fatalf("Load(encrypted, require_encryption) = %v", err)
	}
	if !f.RequireEncryption {
		t.Error("RequireEncryption = false, want true")
	}
}

func TestEncryptRoundTrip(t *testing.T) {
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(dir, "id.txt")
	passFile := filepath.Join(dir, "pass.txt")
	wrongPass := filepath.Join(dir, "wrong.txt")
	recipientsFile := filepath.Join(dir, "recipients.txt")
	for name, content := range map[string]string{
		idFile: id.String() + "\n", passFile: "correct horse\n", wrongPass: "battery staple\n",
		recipientsFile: "# ops\n" + id.Recipient().String() + "\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		enc     EncryptOptions
		dec     LoadOptions
		wantErr string
	}{
		{name: "recipient", enc: EncryptOptions{Recipients: []string{id.Recipient().String()}}, dec: LoadOptions{IdentityFile: idFile}},
		{name: "recipients file armored", enc: EncryptOptions{RecipientsFile: recipientsFile, Armor: true}, dec: LoadOptions{IdentityFile: idFile}},
		{name: "passphrase", enc: EncryptOptions{PassphraseFile: passFile, ScryptWorkFactor: 10}, dec: LoadOptions{PassphraseFile: passFile}},
		{
			name: "wrong passphrase", enc: EncryptOptions{PassphraseFile: passFile, ScryptWorkFactor: 10}, dec: LoadOptions{PassphraseFile: wrongPass},
			wantErr: "config: the passphrase in QUOTAGATE_AGE_PASSPHRASE_FILE (" + wrongPass + ") does not decrypt the file; check it",
		},
		{
			name: "identity for a passphrase file", enc: EncryptOptions{PassphraseFile: passFile, ScryptWorkFactor: 10}, dec: LoadOptions{IdentityFile: idFile},
			wantErr: "config: the file is encrypted with a passphrase; set QUOTAGATE_AGE_PASSPHRASE_FILE to a file holding it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Encrypt(&buf, Default(), tt.enc); err != nil {
				t.Fatal(err)
			}
			if !IsEncrypted(buf.Bytes()) || bytes.Contains(buf.Bytes(), []byte("freemium")) {
				t.Fatal("Encrypt output is not an age file, or holds plaintext")
			}
			if tt.enc.Armor != bytes.HasPrefix(buf.Bytes(), []byte("-----BEGIN AGE ENCRYPTED FILE-----")) {
				t.Errorf("armor = %v but output starts %q", tt.enc.Armor, buf.Bytes()[:20])
			}
			plain, err := Decrypt(buf.Bytes(), tt.dec)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Decrypt() = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(plain, Default()) {
				t.Error("round trip changed the configuration")
			}
		})
	}
}

func TestEncryptOptionErrors(t *testing.T) {
	hugeRecipients := filepath.Join(t.TempDir(), "recipients.txt")
	if err := os.WriteFile(hugeRecipients, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(hugeRecipients, 2<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts EncryptOptions
		want string
	}{
		{name: "nothing", want: "config: nothing to encrypt to; give a recipient (age1...), a recipients file or a passphrase file"},
		{name: "bad recipient", opts: EncryptOptions{Recipients: []string{"age1nope"}}, want: `config: recipient "age1nope": `},
		{name: "recipients file too large", opts: EncryptOptions{RecipientsFile: hugeRecipients}, want: "config: read the recipients file: " + hugeRecipients + " is larger than 1 MiB"},
		{
			name: "both", opts: EncryptOptions{Recipients: []string{"age1kljm50g8fra2ccuytl9gwtv3yzd6rghf3ejt6wyxnv2ctcy20a7srdvctx"}, PassphraseFile: "testdata/example.json"},
			want: "config: a passphrase cannot be combined with recipients; choose one",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Encrypt(&buf, []byte("x"), tt.opts)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Encrypt() = %v, want an error starting %q", err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Encrypt wrote %d bytes on error", buf.Len())
			}
		})
	}
}
