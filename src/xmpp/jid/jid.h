// Jid: an XMPP address, parsed and normalised per RFC 7622.
//
// localpart: PRECIS UsernameCaseMapped profile (RFC 8265 §3.3), applied to
// the whole localpart; resourcepart: PRECIS OpaqueString (RFC 8265 §4.2);
// domainpart: IDNA2008 via ICU's UTS #46 processing to its Unicode form,
// lower-cased, with a trailing dot removed (RFC 7622 §3.2). Each part is at
// most 1023 bytes after normalisation. Implemented with ICU (see
// docs/architecture.md for why not stringprep). The PRECIS profiles are also
// exposed in xmpp/jid/precis.h (SASL prepares passwords with OpaqueString).
//
// Thread safety: Jid is a value. Parse() is safe to call from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace nines::xmpp {

class Jid {
 public:
  Jid() = default;

  // Parses and normalises. Errors are kInvalidArgument with a reason; the
  // caller answers <jid-malformed/>.
  static Result<Jid> Parse(std::string_view text);

  // Builds from parts that are normalised here (each may be empty except domain).
  static Result<Jid> FromParts(std::string_view local, std::string_view domain, std::string_view resource);

  // Normalises one part on its own (e.g. a username typed at `nines user add`).
  static Result<std::string> NormalizeLocal(std::string_view local);
  static Result<std::string> NormalizeResource(std::string_view resource);
  static Result<std::string> NormalizeDomain(std::string_view domain);

  const std::string& local() const { return local_; }
  const std::string& domain() const { return domain_; }
  const std::string& resource() const { return resource_; }

  bool empty() const { return domain_.empty(); }
  bool IsBare() const { return resource_.empty(); }
  Jid Bare() const;
  Jid WithResource(std::string resource_normalised) const;

  // local@domain/resource with empty parts omitted.
  std::string Full() const;
  std::string BareString() const;

  friend bool operator==(const Jid& a, const Jid& b) = default;

 private:
  std::string local_;
  std::string domain_;
  std::string resource_;
};

}  // namespace nines::xmpp
