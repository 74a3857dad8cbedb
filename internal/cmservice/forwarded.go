package cmservice

import (
	"crypto/subtle"
	"net"
	"net/http"

	"github.com/home-console/client-manager/pkg/pluginproto"
)

// forwardedCaller makes requests proxied by the runtime (one-port mode)
// carry the real caller's address: when a request's proxy token matches
// token, its RemoteAddr becomes the forwarded IP, so the loopback rule,
// rate limits and the audit log see the caller, not the proxy. The proxy
// headers are removed from every request, so nothing downstream can be
// fooled by a forged one. With an empty token no request is trusted.
func forwardedCaller(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get(pluginproto.HeaderProxyToken)
		ip := r.Header.Get(pluginproto.HeaderForwardedFor)
		r.Header.Del(pluginproto.HeaderProxyToken)
		r.Header.Del(pluginproto.HeaderForwardedFor)
		if token != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1 {
			if parsed := net.ParseIP(ip); parsed != nil {
				r.RemoteAddr = net.JoinHostPort(parsed.String(), "0")
			}
		}
		next.ServeHTTP(w, r)
	})
}
