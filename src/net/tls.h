// TLS contexts and the first-start self-signed certificate.
//
// Thread safety: a TlsContext is immutable after Load(); share it through
// shared_ptr<const TlsContext>. Reload (SIGHUP) makes a new one; connections
// already running keep the one they started with.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "base/result.h"

namespace nines::net {

class TlsContext {
 public:
  // Loads a PEM certificate chain and key. TLS 1.2 is the minimum version.
  // `alpn` (e.g. "xmpp-client") is accepted when a client offers it (XEP-0368).
  static Result<std::shared_ptr<TlsContext>> Load(const std::string& certificate_path,
                                                  const std::string& key_path);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return context_; }

 private:
  explicit TlsContext(SSL_CTX* context) : context_(context) {}
  SSL_CTX* context_;
};

// If neither file exists, writes a self-signed certificate for `domain`
// (subjectAltName DNS:domain, 10 years, EC P-256) and its key (mode 0600).
// Returns true if it created them. Errors if only one of the two exists.
Result<bool> EnsureSelfSignedCertificate(const std::string& certificate_path, const std::string& key_path,
                                         const std::string& domain);

}  // namespace nines::net
