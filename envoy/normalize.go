package envoy

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// HCMPathSettings are the HttpConnectionManager settings that decide the
// path Envoy routes on and hands to ext_authz.
type HCMPathSettings struct {
	NormalizePath  bool
	MergeSlashes   bool
	EscapedSlashes hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
}

// PathNormalization returns what quotagate's route matching assumes
// (package pathnorm) and what Generate and the shipped configurations set:
// normalize_path and merge_slashes on, and escaped slashes (%2F, %5C)
// unescaped with a redirect to the unescaped path, so that the client,
// Envoy, quotagate and the upstream all see one path.
func PathNormalization() HCMPathSettings {
	return HCMPathSettings{
		NormalizePath:  true,
		MergeSlashes:   true,
		EscapedSlashes: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
	}
}

// apply sets s on hcm.
func (s HCMPathSettings) apply(hcm *hcmv3.HttpConnectionManager) {
	hcm.NormalizePath = wrapperspb.Bool(s.NormalizePath)
	hcm.MergeSlashes = s.MergeSlashes
	hcm.PathWithEscapedSlashesAction = s.EscapedSlashes
}
