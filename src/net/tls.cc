#include "net/tls.h"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>

namespace nines::net {
namespace {

std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kProtos[] = {11, 'x', 'm', 'p', 'p', '-', 'c', 'l', 'i', 'e', 'n', 't'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kProtos, sizeof(kProtos), in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no ALPN or another protocol: proceed without ALPN
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::Load(const std::string& certificate_path,
                                                     const std::string& key_path) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return MakeError(Errc::kInternal, "SSL_CTX_new: " + OpenSslError());
  auto context = std::shared_ptr<TlsContext>(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  // Sessions are short-lived handshakes between a client and one server; the
  // built-in cache is per process and bounded.
  SSL_CTX_sess_set_cache_size(ctx, 10000);
  if (SSL_CTX_use_certificate_chain_file(ctx, certificate_path.c_str()) != 1) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("cannot load certificate '{}': {}", certificate_path, OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_path.c_str(), SSL_FILETYPE_PEM) != 1) {
    return MakeError(Errc::kInvalidArgument, fmt::format("cannot load key '{}': {}", key_path, OpenSslError()));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("key '{}' does not match certificate '{}'", key_path, certificate_path));
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return context;
}

TlsContext::~TlsContext() { SSL_CTX_free(context_); }

Result<bool> EnsureSelfSignedCertificate(const std::string& certificate_path, const std::string& key_path,
                                         const std::string& domain) {
  namespace fs = std::filesystem;
  bool has_cert = fs::exists(certificate_path);
  bool has_key = fs::exists(key_path);
  if (has_cert && has_key) return false;
  if (has_cert != has_key) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("only one of '{}' and '{}' exists; provide both or neither", certificate_path,
                                 key_path));
  }
  std::error_code ec;
  for (const auto& p : {certificate_path, key_path}) {
    auto parent = fs::path(p).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (ec) return MakeError(Errc::kInternal, fmt::format("cannot create '{}': {}", parent.string(), ec.message()));
  }

  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return MakeError(Errc::kInternal, "EC key generation failed: " + OpenSslError());
  X509* cert = X509_new();
  auto cleanup = [&] {
    X509_free(cert);
    EVP_PKEY_free(key);
  };
  X509_set_version(cert, 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(domain.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  std::string san = "DNS:" + domain;
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, san.c_str()},
                            std::pair{NID_basic_constraints, "critical,CA:FALSE"},
                            std::pair{NID_ext_key_usage, "serverAuth"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    if (ext == nullptr) {
      cleanup();
      return MakeError(Errc::kInternal, "certificate extension failed: " + OpenSslError());
    }
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(cert, key, EVP_sha256()) == 0) {
    cleanup();
    return MakeError(Errc::kInternal, "certificate signing failed: " + OpenSslError());
  }

  mode_t old_mask = umask(077);
  FILE* kf = std::fopen(key_path.c_str(), "wx");
  umask(old_mask);
  if (kf == nullptr) {
    cleanup();
    return MakeError(Errc::kInternal, fmt::format("cannot write '{}'", key_path));
  }
  bool ok = PEM_write_PrivateKey(kf, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  ok = (std::fclose(kf) == 0) && ok;
  FILE* cf = std::fopen(certificate_path.c_str(), "wx");
  if (cf == nullptr) {
    cleanup();
    return MakeError(Errc::kInternal, fmt::format("cannot write '{}'", certificate_path));
  }
  ok = PEM_write_X509(cf, cert) == 1 && ok;
  ok = (std::fclose(cf) == 0) && ok;
  cleanup();
  if (!ok) return MakeError(Errc::kInternal, "writing the certificate failed");
  return true;
}

}  // namespace nines::net
