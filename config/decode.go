package config

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/quotagate/quotagate/engine"
)

// Parse decodes a configuration from JSON or YAML (told apart by the first
// significant byte: JSON starts with "{"), strictly: an unknown field, a
// duplicate key or a value of the wrong type is an error naming its path.
// It then applies defaults and validates the file. Every problem found is
// reported at once in a *ValidationError. Parse does not decrypt; see Load.
// It checks the file alone; ParseWith also checks the components the file
// configures.
func Parse(data []byte) (*File, error) { return ParseWith(data, nil) }

// ParseWith is Parse followed by check, which validates the components the
// file configures (see LoadOptions.Check). The *FieldErrors in check's
// error, which name paths in the file, are reported with the file's own
// problems in one *ValidationError; an error from check without any is
// reported as one problem without a path. check runs even when the file
// has problems, so that every problem is reported at once; it must not
// assume that the File is valid. A nil check checks the file alone.
func ParseWith(data []byte, check func(*File) error) (*File, error) {
	js, err := toJSON(data)
	if err != nil {
		return nil, err
	}
	var p problems
	root, err := checkStrict(js, reflect.TypeFor[File](), &p)
	if err != nil {
		return nil, err
	}
	if p.mismatched {
		// Decode everything else, with the mistyped values left at their
		// defaults, so that every problem is reported in one pass.
		js = root.appendJSON(nil)
	}
	f := defaults()
	if err := json.Unmarshal(js, f); err != nil {
		// checkStrict accepts only what Unmarshal accepts; this is a bug.
		return nil, fmt.Errorf("config: decode after strict check: %w", err)
	}
	f.derive()
	var v problems
	f.validate(&v)
	if check != nil {
		v.addErr(check(f))
	}
	for _, fe := range v.list {
		// A value of the wrong type left a default behind that validation
		// would misreport: its problem is already listed.
		if !p.underMismatch(fe.Path) {
			p.list = append(p.list, fe)
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// toJSON returns data as JSON, converting YAML.
func toJSON(data []byte) ([]byte, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("config: the file is empty; start from the default configuration (quotagate config default) or the example in the README")
	}
	if IsEncrypted(data) {
		return nil, errors.New("config: the data is age-encrypted; load it with Load or LoadData, which decrypt it")
	}
	if trimmed[0] == '{' && json.Valid(data) {
		return data, nil
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil && trimmed[0] == '{' {
		// Neither JSON nor YAML in flow style: JSON was more likely meant.
		var v any
		return nil, syntaxError(data, json.Unmarshal(data, &v))
	}
	if err != nil {
		return nil, fmt.Errorf("config: invalid YAML: %s", oneLine(err.Error()))
	}
	return js, nil
}

// oneLine folds a multi-line message onto one line.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.ReplaceAll(strings.Join(lines, "; "), ":; ", ": ")
}

// node is a decoded JSON value that remembers key order, so that every
// problem is reported with its path and duplicates can be caught.
type node struct {
	kind byte // one of '{', '[', '"', '0' (number), 'b' (bool), 'n' (null)
	keys []string
	vals []*node
	text string // a string's value or a number's literal
	b    bool
	// mistyped marks a value of the wrong type for its field; appendJSON
	// writes it as null, which leaves the field at its default.
	mistyped bool
}

// appendJSON appends n as JSON to b, with mistyped values as null.
func (n *node) appendJSON(b []byte) []byte {
	if n.mistyped {
		return append(b, "null"...)
	}
	switch n.kind {
	case '{':
		b = append(b, '{')
		for i, k := range n.keys {
			if i > 0 {
				b = append(b, ',')
			}
			kb, _ := json.Marshal(k) // a string always marshals
			b = append(b, kb...)
			b = append(b, ':')
			b = n.vals[i].appendJSON(b)
		}
		return append(b, '}')
	case '[':
		b = append(b, '[')
		for i, v := range n.vals {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.appendJSON(b)
		}
		return append(b, ']')
	case '"':
		sb, _ := json.Marshal(n.text)
		return append(b, sb...)
	case '0':
		return append(b, n.text...)
	case 'b':
		return strconv.AppendBool(b, n.b)
	}
	return append(b, "null"...)
}

// checkStrict decodes js into a tree and walks it against t, adding every
// unknown field, duplicate key and type mismatch to p, and marking each
// mistyped value in the tree it returns. It returns an error only for JSON
// that does not parse.
func checkStrict(js []byte, t reflect.Type, p *problems) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	root, err := readNode(dec, "", p)
	if err != nil {
		return nil, syntaxError(js, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("config: invalid JSON: unexpected data after the top-level object")
	}
	if root.kind != '{' {
		return nil, fmt.Errorf("config: the file must hold an object with a quota_manager key, got %s", describe(root))
	}
	walk(root, t, "", p)
	return root, nil
}

// syntaxError locates a JSON syntax error by line.
func syntaxError(js []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return fmt.Errorf("config: invalid JSON: %w", err)
	}
	line := 1 + bytes.Count(js[:min(int(se.Offset), len(js))], []byte("\n"))
	return fmt.Errorf("config: invalid JSON near line %d: %w", line, err)
}

// readNode reads one value from dec.
func readNode(dec *json.Decoder, path string, p *problems) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return readArray(dec, path, p)
		}
		return readObject(dec, path, p)
	case string:
		return &node{kind: '"', text: v}, nil
	case json.Number:
		return &node{kind: '0', text: string(v)}, nil
	case bool:
		return &node{kind: 'b', b: v}, nil
	default:
		return &node{kind: 'n'}, nil
	}
}

func readObject(dec *json.Decoder, path string, p *problems) (*node, error) {
	n := &node{kind: '{'}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string) // the decoder guarantees object keys are strings
		child, err := readNode(dec, field(path, key), p)
		if err != nil {
			return nil, err
		}
		if seen[key] {
			p.addf(field(path, key), "duplicate key; keep only one")
			continue
		}
		seen[key] = true
		n.keys = append(n.keys, key)
		n.vals = append(n.vals, child)
	}
	_, err := dec.Token() // '}'
	return n, err
}

func readArray(dec *json.Decoder, path string, p *problems) (*node, error) {
	n := &node{kind: '['}
	for dec.More() {
		child, err := readNode(dec, index(path, len(n.vals)), p)
		if err != nil {
			return nil, err
		}
		n.vals = append(n.vals, child)
	}
	_, err := dec.Token() // ']'
	return n, err
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// walk checks n against the Go type t. A null is accepted anywhere and
// leaves the field at its default.
func walk(n *node, t reflect.Type, path string, p *problems) {
	if n.kind == 'n' {
		return
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		walkText(n, t, path, p)
		return
	}
	if t == reflect.TypeFor[Settle]() && walkSettle(n, path, p) {
		return
	}
	if t == reflect.TypeFor[StatusMatch]() {
		walkStatusMatch(n, path, p)
		return
	}
	if t == reflect.TypeFor[Routes]() && n.kind == '[' {
		// The short form of routes: the list of rules.
		walk(n, reflect.TypeFor[[]Route](), path, p)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		walkStruct(n, t, path, p)
	case reflect.Map:
		if n.kind != '{' {
			p.mismatchf(n, path, "want a mapping of names to values, got %s", describe(n))
			return
		}
		for i, k := range n.keys {
			walk(n.vals[i], t.Elem(), field(path, k), p)
		}
	case reflect.Slice:
		if n.kind != '[' {
			p.mismatchf(n, path, "want a list, got %s", describe(n))
			return
		}
		for i, v := range n.vals {
			walk(v, t.Elem(), index(path, i), p)
		}
	case reflect.String:
		if n.kind != '"' {
			p.mismatchf(n, path, "want a string, got %s", describe(n))
		}
	case reflect.Bool:
		if n.kind != 'b' {
			p.mismatchf(n, path, "want true or false, got %s", describe(n))
		}
	default:
		walkNumber(n, t, path, p)
	}
}

func walkText(n *node, t reflect.Type, path string, p *problems) {
	if n.kind != '"' {
		if strings.HasSuffix(t.Name(), "Duration") {
			p.mismatchf(n, path, "want a duration such as 2s or 1m30s, got %s", describe(n))
		} else {
			p.mismatchf(n, path, "want a string, got %s", describe(n))
		}
		return
	}
	u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
	if err := u.UnmarshalText([]byte(n.text)); err != nil {
		p.mismatchf(n, path, "%v", err)
	}
}

func walkStruct(n *node, t reflect.Type, path string, p *problems) {
	if n.kind != '{' {
		p.mismatchf(n, path, "want a mapping with the keys %s, got %s", strings.Join(jsonFields(t), ", "), describe(n))
		return
	}
	for i, k := range n.keys {
		sf, ok := fieldByTag(t, k)
		if !ok {
			names := jsonFields(t)
			switch s := suggest(k, names); {
			case len(names) == 0:
				p.addf(field(path, k), "unknown field; this block takes no keys")
			case s != "":
				p.addf(field(path, k), "unknown field; did you mean %s?", s)
			default:
				p.addf(field(path, k), "unknown field; want one of %s", strings.Join(names, ", "))
			}
			continue
		}
		walk(n.vals[i], sf.Type, field(path, k), p)
	}
}

func walkNumber(n *node, t reflect.Type, path string, p *problems) {
	var err error
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.kind == '0' {
			_, err = strconv.ParseInt(n.text, 10, t.Bits())
		}
		if n.kind != '0' || err != nil {
			p.mismatchf(n, path, "want a whole number, got %s", describe(n))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.kind == '0' {
			_, err = strconv.ParseUint(n.text, 10, t.Bits())
		}
		if n.kind != '0' || err != nil {
			p.mismatchf(n, path, "want a whole number from 0 to %d, got %s", uint64(1)<<t.Bits()-1, describe(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.kind != '0' {
			p.mismatchf(n, path, "want a number, got %s", describe(n))
		}
	default:
		p.mismatchf(n, path, "unsupported field type %s (a bug in the config package)", t)
	}
}

// fieldByTag finds the struct field whose json name is exactly key.
func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if jsonName(sf) == key {
			return sf, true
		}
	}
	return reflect.StructField{}, false
}

// jsonFields lists the json names of t's fields, in declaration order.
func jsonFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := jsonName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func jsonName(sf reflect.StructField) string {
	if !sf.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return sf.Name
	}
	return name
}

// describe renders a value for an error message.
func describe(n *node) string {
	switch n.kind {
	case '{':
		return "a mapping"
	case '[':
		return "a list"
	case '"':
		return strconv.Quote(engine.Clip(n.text, engine.MaxQuotedBytes))
	case '0':
		return n.text
	case 'b':
		return strconv.FormatBool(n.b)
	}
	return "null"
}
