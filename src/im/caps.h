// XEP-0115 entity capabilities: what a client's presence claims, checking a
// disco#info answer against that claim, and the process-wide cache of the
// claims that checked out.
//
// The server needs a client's features for one thing: XEP-0163 filtered
// notifications (a client that lists "NODE+notify" gets PEP events of NODE).
// A client says which features it has by a hash in its presence; the server
// asks it once per hash (disco#info to NODE#VER), recomputes the hash over
// the answer (§5.4), and keeps what verified, shared by every client that
// claims the same hash. Answers that do not verify are not kept (§8.4:
// otherwise one client could poison the cache for all).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "xml/element.h"

namespace nines::im {

inline constexpr std::string_view kCapsNs = "http://jabber.org/protocol/caps";

// The features behind one verified hash. Immutable once shared.
struct CapsFeatures {
  std::vector<std::string> features;  // sorted
  std::vector<std::string> notify;    // NODE for every "NODE+notify" feature, sorted

  bool Has(std::string_view feature) const;
  bool Notifies(std::string_view node) const;
};
using CapsPtr = std::shared_ptr<const CapsFeatures>;

// What a <c xmlns='http://jabber.org/protocol/caps'/> claims.
struct CapsClaim {
  std::string hash;  // IANA hash name, lower case ("sha-1")
  std::string node;  // the software's URI
  std::string ver;   // base64 of the hash

  // The cache key: the hash name and the hash, which alone determine the
  // features (the node is only where to ask).
  std::string Key() const { return hash + ' ' + ver; }
};

// The claim in a presence stanza, or nullopt if it has none, or only a
// legacy one (no 'hash', XEP-0115 §1.2: not verifiable, so not used), or one
// with a hash this server does not compute (sha-1, sha-224, sha-256,
// sha-384 and sha-512 are computed).
std::optional<CapsClaim> ParseCapsClaim(const xml::Element& presence);

// The §5.1 verification string of a disco#info <query/>, or kInvalidArgument
// if the answer is one §5.4 says not to trust (a repeated identity or
// feature, two forms with the same FORM_TYPE, a form field repeated).
Result<std::string> CapsVerificationString(const xml::Element& query);

// Whether `query` hashes to claim.ver under claim.hash.
bool VerifyCaps(const CapsClaim& claim, const xml::Element& query);

// The features in a disco#info <query/>.
CapsFeatures FeaturesOf(const xml::Element& query);

// The verified hashes, and the questions in flight.
//
// Thread safety: every method locks; called from any loop. The lock is held
// for map operations only, never across I/O.
class CapsCache {
 public:
  // The verified features for `key`, or null.
  CapsPtr Find(std::string_view key) const;

  // A client claims `key`, which is not (yet) verified: whether the caller
  // should ask that client. True if nobody is being asked, or the question
  // has gone unanswered for `retry_ms`. `query_id` is the IQ id to ask with
  // (an id that can be matched by TakeQuery). `waiter` (a full JID) is
  // remembered, at most `max_waiters` per key, so it hears of the answer
  // even if another client is the one asked.
  bool StartQuery(const CapsClaim& claim, std::string waiter, int64_t now_ms, std::string& query_id,
                  size_t max_waiters = 10000, int64_t retry_ms = 30000);

  // At most this many claims are asked about at once; more wait for a
  // later presence (a client making up hashes only fills this).
  static constexpr size_t kMaxPending = 1024;

  // An answer with IQ id `query_id` from `from` (a full JID): the claim it
  // was asked for, if it is one of ours and `from` is who was asked. The
  // question stays open until Insert, Reask or the retry.
  std::optional<CapsClaim> ClaimOf(std::string_view query_id, std::string_view from) const;

  // The answer to `query_id` did not verify, or was an error (§5.4: "check
  // another entity that advertises the same verification string"): the
  // client asked is no longer a waiter, and the next waiter, if any, is to
  // be asked now. Returns true with that waiter's full JID and the new
  // query id; false if nobody is left (the question is forgotten, and the
  // next claimer is asked).
  bool Reask(std::string_view query_id, int64_t now_ms, std::string& waiter, std::string& new_id);

  // Keeps verified features for `key`, evicting the oldest entry beyond
  // `max_entries`, and returns the clients that were waiting for them.
  std::vector<std::string> Insert(const std::string& key, CapsPtr features, size_t max_entries);

  size_t size() const;

 private:
  struct Pending {
    CapsClaim claim;
    std::string query_id;
    std::string asked;  // the full JID the question went to
    int64_t asked_ms = 0;
    std::vector<std::string> waiters;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, CapsPtr> verified_;  // guarded by mu_
  std::list<std::string> order_;                       // insertion order of verified_, for eviction
  std::unordered_map<std::string, Pending> pending_;   // by key; guarded by mu_
  std::unordered_map<std::string, std::string> by_id_;  // query id -> key; guarded by mu_
  uint64_t next_id_ = 0;                               // guarded by mu_
};

}  // namespace nines::im
