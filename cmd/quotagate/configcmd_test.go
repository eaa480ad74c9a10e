package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
)

// runConfigTest runs runConfig with env as the environment.
func runConfigTest(env map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = runConfig(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()    // holds the configuration and its encrypted copy only
	keyDir := t.TempDir() // holds the keys
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(keyDir, "id.txt")
	passFile := filepath.Join(keyDir, "pass.txt")
	for name, content := range map[string]string{idFile: id.String() + "\n", passFile: "correct horse\n"} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plain := filepath.Join(dir, "quotagate.yaml")
	def, _, err := runConfigTest(nil, "", "default")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, []byte(def), 0o600); err != nil {
		t.Fatal(err)
	}
	idEnv := map[string]string{"QUOTAGATE_AGE_IDENTITY_FILE": idFile}

	out, _, err := runConfigTest(nil, "", "validate", plain)
	if err != nil || !strings.HasSuffix(out, "OK\n") || !strings.Contains(out, "freemium     low      hour 10/hour") {
		t.Fatalf("validate plaintext: err %v, output:\n%s", err, out)
	}

	enc := filepath.Join(dir, "quotagate.yaml.age")
	_, stderr, err := runConfigTest(nil, "", "encrypt", plain, "--recipient", id.Recipient().String(), "-o", enc)
	if err != nil || !strings.Contains(stderr, "still holds the plaintext") {
		t.Fatalf("encrypt: %v (stderr %q)", err, stderr)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"quotagate.yaml", "quotagate.yaml.age"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v after encrypt, want only %v", names, want)
	}

	out, _, err = runConfigTest(idEnv, "", "decrypt", enc)
	if err != nil || out != def {
		t.Fatalf("decrypt: err %v, round trip equal: %v", err, out == def)
	}
	out, _, err = runConfigTest(idEnv, "", "validate", enc)
	if err != nil || !strings.Contains(out, "(age-encrypted)") || !strings.HasSuffix(out, "OK\n") {
		t.Fatalf("validate encrypted: err %v, output:\n%s", err, out)
	}
	entries, _ = os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("decrypt or validate left files behind: %v", entries)
	}

	// Passphrase, armored, from standard input to standard output.
	armored, _, err := runConfigTest(nil, def, "encrypt", "--passphrase-file", passFile, "--scrypt-work-factor", "10", "-a", "-")
	if err != nil || !strings.HasPrefix(armored, "-----BEGIN AGE ENCRYPTED FILE-----") {
		t.Fatalf("encrypt with a passphrase: %v", err)
	}
	out, _, err = runConfigTest(map[string]string{"QUOTAGATE_AGE_PASSPHRASE_FILE": passFile}, armored, "decrypt", "-")
	if err != nil || out != def {
		t.Fatalf("decrypt with a passphrase: err %v, round trip equal: %v", err, out == def)
	}
}

func TestConfigCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("quota_manager:\n  tiers:\n    freemium: {api_calls_per_hour: -5}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantErr    string
		wantStderr string
	}{
		{
			name: "invalid file", args: []string{"validate", bad},
			wantErr:    "config validate: " + bad + ": 1 problem(s), listed above",
			wantStderr: bad + ": quota_manager.tiers.freemium.api_calls_per_hour: must be > 0, got -5\n",
		},
		{
			name: "encrypt refuses an invalid file", args: []string{"encrypt", "--recipient", "age1kljm50g8fra2ccuytl9gwtv3yzd6rghf3ejt6wyxnv2ctcy20a7srdvctx", bad},
			wantErr:    "config encrypt: " + bad + ": 1 problem(s), listed above",
			wantStderr: bad + ": quota_manager.tiers.freemium.api_calls_per_hour: must be > 0, got -5\n",
		},
		{name: "decrypt plaintext", args: []string{"decrypt", bad}, wantErr: "config decrypt: " + bad + " is not age-encrypted; there is nothing to decrypt"},
		{name: "no file", args: []string{"validate"}, wantErr: "config validate: want one FILE (- for standard input), got 0 arguments"},
		{name: "unknown subcommand", args: []string{"lint"}, wantErr: `config: unknown subcommand "lint"; want validate, encrypt, decrypt or default`},
		{name: "unknown flag", args: []string{"encrypt", "--key", "x", bad}, wantErr: "config encrypt: flag provided but not defined: -key (see quotagate config encrypt --help)"},
		{name: "nothing to encrypt to", args: []string{"encrypt", "--no-validate", bad}, wantErr: "config: nothing to encrypt to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := runConfigTest(tt.env, "", tt.args...)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one starting %q", err, tt.wantErr)
			}
			if stderr != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", stderr, tt.wantStderr)
			}
		})
	}
}
