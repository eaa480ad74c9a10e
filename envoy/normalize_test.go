package envoy

import (
	"bytes"
	"encoding/json"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/quotagate/quotagate/extauthz"
)

// decodeHCM decodes the JSON of a (partial) HttpConnectionManager.
func decodeHCM(t *testing.T, raw json.RawMessage) *hcmv3.HttpConnectionManager {
	t.Helper()
	var hcm hcmv3.HttpConnectionManager
	if len(raw) == 0 {
		t.Fatal("no http_connection_manager settings")
	}
	if err := protojson.Unmarshal(raw, &hcm); err != nil {
		t.Fatalf("http_connection_manager: %v\n%s", err, raw)
	}
	return &hcm
}

// checkPathSettings requires the normalization quotagate's routing assumes.
func checkPathSettings(t *testing.T, where string, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	want := PathNormalization()
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() || hcm.GetPathWithEscapedSlashesAction() != want.EscapedSlashes {
		t.Errorf("%s: normalize_path %v, merge_slashes %v, path_with_escaped_slashes_action %v; want true, true, %v",
			where, hcm.GetNormalizePath().GetValue(), hcm.GetMergeSlashes(), hcm.GetPathWithEscapedSlashesAction(), want.EscapedSlashes)
	}
}

// checkBootstrap checks every HttpConnectionManager of b for the path
// settings and every ext_authz filter in it for raw_body (pack_as_bytes).
func checkBootstrap(t *testing.T, where string, b *bootstrapv3.Bootstrap) {
	t.Helper()
	for listener, hcm := range listenerHCMs(t, b) {
		checkPathSettings(t, where+": listener "+listener, hcm)
		for _, hf := range hcm.GetHttpFilters() {
			var ea extauthzv3.ExtAuthz
			if hf.GetTypedConfig().UnmarshalTo(&ea) != nil {
				continue
			}
			if body := ea.GetWithRequestBody(); body == nil || !body.GetPackAsBytes() || !body.GetAllowPartialMessage() {
				t.Errorf("%s: ext_authz with_request_body %v: want allow_partial_message and pack_as_bytes", where, body)
			}
			// A Check carries the body and the headers: it must fit
			// quotagate's default receive limit, or it is never decided.
			headers := uint32(60 << 10) // Envoy's default max_request_headers_kb
			if kb := hcm.GetMaxRequestHeadersKb().GetValue(); kb > 0 {
				headers = kb << 10
			}
			if n := ea.GetWithRequestBody().GetMaxRequestBytes() + headers; n >= extauthz.DefaultMaxReceiveBytes/2 {
				t.Errorf("%s: max_request_bytes plus headers is %d bytes, too close to quotagate's receive limit %d", where, n, extauthz.DefaultMaxReceiveBytes)
			}
		}
	}
}

func TestShippedConfigsNormalizePaths(t *testing.T) {
	forEachExample(t, func(t *testing.T, name string, b *bootstrapv3.Bootstrap) {
		checkBootstrap(t, name, b)
	})
}

func TestGeneratedBootstrapNormalizesPaths(t *testing.T) {
	var buf bytes.Buffer
	if err := Generate(&buf, GenerateOptions{Bootstrap: true, Routes: seedRoutes}); err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := ValidateMessage(buf.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	checkBootstrap(t, "generated bootstrap", &b)
}
