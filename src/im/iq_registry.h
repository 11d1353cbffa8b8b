// IqRegistry: every IQ get/set the server answers itself, in one table.
//
// Each feature module has one Register(IqRegistry&) entry point that adds
// its handlers: payload namespace, get or set, the addresses it answers for
// (scopes) and the disco#info feature it stands for. Disco#info answers are
// built from this table, so nothing is advertised without a handler
// (CONVENTIONS.md §6). A module whose feature is not an IQ (offline storage's
// "msgoffline") registers the feature next to the code that implements it.
//
// Scopes say who the request is addressed to:
//   kServer:  the server's domain ('to' = domain);
//   kSelf:    the requester's own account ('to' absent or own bare JID;
//             RFC 6120 §10.3.3: the server answers on the account's behalf);
//   kAccount: another local account's bare JID (the server answers on that
//             account's behalf).
// Server-scope handlers run on the requester's loop without account state;
// the others run on the addressed account's home loop with its state loaded.
//
// Thread safety: filled in by the Hub constructor, read-only afterwards and
// then safe to read from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/config.h"
#include "xml/element.h"
#include "xmpp/session_ref.h"

namespace nines::im {

class HubImpl;
class OriginNotifier;
struct AccountState;

enum Scope : unsigned { kScopeServer = 1, kScopeSelf = 2, kScopeAccount = 4 };

// One IQ request being answered. Shared so that async handlers can keep it
// across store calls.
struct IqCall {
  xml::Element iq;          // the request as received ('from' stamped by the session)
  xmpp::SessionRef origin;  // the requester's session: replies go straight there
  std::string from;         // requester's full JID
  std::string account;      // kSelf/kAccount: the addressed bare JID; kServer: empty
  Scope scope = kScopeServer;
  // Set for an IQ set from a client: tells its session the IQ is handled
  // when the last holder of the call lets go, after the answer (G1).
  std::shared_ptr<OriginNotifier> done;

  // The single payload child (the session has checked there is exactly one).
  const xml::Element& payload() const { return *iq.Children().front(); }
};
using IqCallPtr = std::shared_ptr<IqCall>;

// `state` is the addressed account for kSelf/kAccount, null for kServer.
using IqHandlerFn = std::function<void(HubImpl& hub, const IqCallPtr& call, AccountState* state)>;

struct IqHandler {
  std::string ns;       // namespace of the payload element
  bool set = false;     // true: type='set'; false: type='get'
  unsigned scopes = 0;  // Scope bits
  std::string feature;  // advertised in disco#info for `scopes`; empty: not advertised
  // When set and false for the current config, the handler is treated as
  // absent (not advertised; requests get <service-unavailable/>).
  std::function<bool(const Config&)> enabled;
  IqHandlerFn fn;
};

class IqRegistry {
 public:
  void Add(IqHandler handler);
  // A feature implemented by non-IQ code (e.g. "msgoffline").
  void AddFeature(unsigned scopes, std::string feature, std::function<bool(const Config&)> enabled = {});
  // A stream feature (one serialised element) that the session offers after
  // authentication because a module here implements it (e.g. RFC 6121 roster
  // versioning). The session layer appends StreamFeatures() to its features.
  void AddStreamFeature(std::string xml) { stream_features_.push_back(std::move(xml)); }
  const std::vector<std::string>& StreamFeatures() const { return stream_features_; }

  // The handler for a request, or null.
  const IqHandler* Find(std::string_view ns, bool set, Scope scope, const Config& config) const;

  // Features to advertise for `scope`, sorted, without duplicates.
  std::vector<std::string> Features(Scope scope, const Config& config) const;

  const std::vector<IqHandler>& handlers() const { return handlers_; }

 private:
  struct Feature {
    unsigned scopes;
    std::string name;
    std::function<bool(const Config&)> enabled;
  };
  std::vector<IqHandler> handlers_;
  std::vector<Feature> features_;
  std::vector<std::string> stream_features_;
};

}  // namespace nines::im
