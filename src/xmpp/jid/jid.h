// Jid: an XMPP address, parsed and normalised per RFC 7622.
//
// localpart: PRECIS UsernameCaseMapped profile (RFC 8265 §3.3), applied to
// the whole localpart, then the RFC 7622 §3.3.1 exclusions (" & ' / : < > @);
// resourcepart: PRECIS OpaqueString (RFC 8265 §4.2); domainpart: IDNA2008 via
// ICU's UTS #46 processing (STD3 host-name rules, nontransitional) to its
// Unicode form, lower-cased, with one trailing dot removed (RFC 7622 §3.2);
// code points UTS #46 accepts but IDNA2008 does not (its NV8 set: symbols,
// emoji, punctuation) are rejected. An IP literal "[v6]" is accepted and
// rewritten in RFC 5952 form; IPv4 addresses pass as host names. Each part is
// 1..1023 bytes after normalisation. Implemented with ICU (see
// docs/architecture.md for why not stringprep). The PRECIS profiles are also
// exposed in xmpp/jid/precis.h (SASL prepares passwords with OpaqueString).
//
// Deliberate deviation: RFC 7622 §3.5 lists "juliet@example.com/ foo" as
// invalid, but no rule forbids a leading space in OpaqueString, so it parses.
// DNS label limits (63/253 octets) are not enforced; RFC 7622 allows 1023.
//
// Errors: every failure on peer input is Errc::kInvalidArgument with a reason
// for logs (the caller answers <jid-malformed/>); only a missing ICU data
// file gives kInternal. Input is never assumed valid UTF-8 and never asserts.
//
// Thread safety: Jid is a value. Parse() and the Normalize*() functions are
// safe to call from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace nines::xmpp {

class Jid {
 public:
  Jid() = default;

  // Parses and normalises. Splits per RFC 7622 §3.1: the resourcepart is
  // everything after the first '/', the localpart everything before the first
  // '@' of what precedes it. A separator with nothing on its side ("@d",
  // "d/") is an error. Errors are kInvalidArgument with a reason; the caller
  // answers <jid-malformed/>.
  static Result<Jid> Parse(std::string_view text);

  // Builds from parts that are normalised here. An empty local or resource
  // means the part is absent; the domain is required.
  static Result<Jid> FromParts(std::string_view local, std::string_view domain, std::string_view resource);

  // Normalises one part on its own (e.g. a username typed at `nines user add`).
  // An empty part is an error.
  static Result<std::string> NormalizeLocal(std::string_view local);
  static Result<std::string> NormalizeResource(std::string_view resource);
  static Result<std::string> NormalizeDomain(std::string_view domain);

  const std::string& local() const { return local_; }
  const std::string& domain() const { return domain_; }
  const std::string& resource() const { return resource_; }

  bool empty() const { return domain_.empty(); }
  bool IsBare() const { return resource_.empty(); }
  Jid Bare() const;
  // The same bare JID with another resource. The argument must already be
  // normalised (NormalizeResource()); it is not checked here.
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
