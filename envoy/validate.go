package envoy

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The typed extensions the examples and Generate use; each registers
	// its types so that protojson can decode the "@type" of an Any and
	// Validate can check what is inside it.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// ErrInvalid is wrapped by every error Validate returns for a config that
// Envoy would refuse.
var ErrInvalid = errors.New("envoy: invalid config")

// validator is what protoc-gen-validate generates on every Envoy message.
type validator interface{ ValidateAll() error }

// Validate decodes a bootstrap in YAML or JSON strictly (an unknown field is
// an error) into go-control-plane's Bootstrap, and runs Envoy's validation
// rules on it and on every typed extension inside it, however deeply
// nested. An "@type" that is not registered is an error.
func Validate(data []byte) error {
	var b bootstrapv3.Bootstrap
	return ValidateMessage(data, &b)
}

// ValidateMessage is Validate for any Envoy message, such as a
// Cluster or an HttpFilter: data (YAML or JSON) is decoded into m.
func ValidateMessage(data []byte, m proto.Message) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("%w: yaml: %w", ErrInvalid, err)
	}
	if err := protojson.Unmarshal(js, m); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, m.ProtoReflect().Descriptor().Name(), err)
	}
	return check(m, string(m.ProtoReflect().Descriptor().Name()))
}

// check runs m's validation rules, then those of every Any inside it.
func check(m proto.Message, path string) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
		}
	}
	var errs []error
	walkAnys(m.ProtoReflect(), path, func(a *anypb.Any, at string) {
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %s: %w (is the extension registered?)", ErrInvalid, at, a.GetTypeUrl(), err))
			return
		}
		if err := check(inner, at+"<"+string(inner.ProtoReflect().Descriptor().Name())+">"); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

// walkAnys calls f for every google.protobuf.Any directly reachable from m
// (not inside another Any: check recurses for those).
func walkAnys(m protoreflect.Message, path string, f func(*anypb.Any, string)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(mv.Message(), p+"["+k.String()+"]", f)
					return true
				})
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := range l.Len() {
					visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), f)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			visit(v.Message(), p, f)
		}
		return true
	})
}

func visit(m protoreflect.Message, path string, f func(*anypb.Any, string)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		f(a, path)
		return
	}
	walkAnys(m, path, f)
}
