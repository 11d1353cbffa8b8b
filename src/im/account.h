// AccountState: everything the hub keeps about one account, on its home loop.
//
// Thread safety: touched only on the account's home loop (HubImpl::HomeOf).
//
// Invariants
//  * An AccountState exists while the account has a bound resource, queued
//    or running work, store calls in flight (busy > 0) or a load in
//    progress; HubImpl::MaybeEvict drops it as soon as none of these holds.
//  * `roster` mirrors the store and may run ahead of it: a change is applied
//    here first, then written; clients hear of it (IQ result, roster push)
//    only from the write's Reply. `roster_version` is the store's version
//    after the last completed write, so it never claims more than is durable.
//  * A resource is "available" only after its presence was processed, which
//    requires a loaded roster, so load == kReady whenever any resource is
//    available (except briefly after a failed write forced a reload).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/string_hash.h"
#include "im/caps.h"
#include "im/unique_function.h"
#include "store/store.h"
#include "xmpp/session_ref.h"

namespace nines::im {

// An account's XEP-0191 block list, immutable once shared: the account's
// home loop replaces it whole, and hands the same pointer to its sessions'
// loops (HubImpl::PublishBlocks), which check outbound stanzas against it.
struct BlockList {
  std::set<std::string, std::less<>> jids;  // normalised, as stored
  // XEP-0191 §4 matching: a full JID matches itself; a bare JID any of its
  // resources; domain/resource only that; a domain itself, any JID at it,
  // and its subdomains. (blocking.cc)
  bool Blocks(std::string_view jid) const;
};
using BlockListPtr = std::shared_ptr<const BlockList>;

// The block-list entries that would block `jid` under BlockList::Blocks's
// matching: `jid` itself, its bare JID, domain/resource, its domain and
// every parent domain. For asking the store about lists not in memory.
std::vector<std::string> BlockKeysFor(std::string_view jid);

// XEP-0313 archiving preferences, immutable once shared like BlockList: the
// home loop decides for the account's incoming messages and its sessions'
// loops for outgoing ones, which is why 'roster' carries a snapshot of the
// roster's JIDs (replaced on every roster change). (archive.cc)
struct ArchivePolicy {
  store::ArchivePrefs prefs;
  std::set<std::string, std::less<>> roster;  // bare JIDs, only for default_mode "roster"
  // Whether a message with `peer` (a bare JID) goes into the archive.
  bool Archives(std::string_view peer) const;
};
using ArchivePolicyPtr = std::shared_ptr<const ArchivePolicy>;

// What a session's loop knows of its account, for stanzas the session
// sends (HubImpl::PublishSettings). Null: nothing blocked, archive always.
struct SessionSettings {
  BlockListPtr blocked;
  ArchivePolicyPtr archive;
};

struct Resource {
  xmpp::SessionRef ref;
  std::string name;  // normalised resourcepart
  std::string full;  // bare + '/' + name
  int priority = 0;
  bool available = false;   // sent available presence, not yet unavailable
  bool interested = false;  // requested the roster (RFC 6121 §2.2): gets roster pushes
  bool carbons = false;     // enabled XEP-0280 message carbons
  bool blocklist = false;   // requested the XEP-0191 block list: gets its pushes
  bool asleep = false;      // detached (XEP-0198) or inactive (XEP-0352): push.cc notifies for it
  // Restored from the store (Hub::Restore): the replay read the archive up
  // to this id, and gave this resource the messages in `replayed` (archive
  // ids, ascending; at most stream_management.max_unacked). Those are not
  // delivered again; the rest up to this id (the replay left them out, say
  // to another full JID with carbons off) still are.
  int64_t replayed_up_to = 0;
  std::vector<int64_t> replayed;
  bool Replayed(int64_t archive_id) const {
    return archive_id != 0 && archive_id <= replayed_up_to &&
           std::binary_search(replayed.begin(), replayed.end(), archive_id);
  }
  // The last broadcast available presence, serialised, with no 'to'. Null
  // while unavailable.
  std::shared_ptr<const std::string> presence;
  // Entities that got directed available presence from this resource and no
  // directed unavailable since (RFC 6121 §4.6.3): they get unavailable when
  // the resource goes away.
  std::vector<std::string> directed;
  // XEP-0115: the "hash ver" its last available presence claimed ("" for
  // none), and what that hash stands for once verified (null until then).
  // XEP-0163 notifications of node N go to it only if caps->Notifies(N).
  std::string caps_key;
  CapsPtr caps;
};

struct AccountState;
struct Routed;  // im/hub_impl.h
using AccountOp = UniqueFunction<void(AccountState&)>;

struct AccountState {
  enum class Load : uint8_t {
    kNone,     // nothing loaded (yet, or again after a failure)
    kLoading,  // store reads in flight; work waits in `queue`
    kReady,    // roster and offline count loaded
    kMissing,  // no such account
    kFailed,   // the load failed; queued work is being answered with errors
  };

  std::string bare;  // "user@domain"
  std::string user;  // the localpart: the store's username
  size_t home = 0;   // loop index
  Load load = Load::kNone;
  bool known_to_exist = false;  // a session bound, so no need to ask the store

  std::vector<Resource> resources;

  std::unordered_map<std::string, store::RosterItem, StringHash, std::equal_to<>> roster;
  int64_t roster_version = 0;

  BlockListPtr blocked;  // XEP-0191; null while nothing is blocked
  ArchivePolicyPtr archive_policy;  // XEP-0313 preferences; null: the default (always)
  bool HasSessionSettings() const { return blocked != nullptr || archive_policy != nullptr; }
  bool Blocks(std::string_view jid) const { return blocked != nullptr && blocked->Blocks(jid); }

  // XEP-0398 (avatars.cc): SHA-1 hex of the account's avatar, from its
  // newest avatar metadata item; "" for none. Read with the account when a
  // session loads it (avatar_known), kept in step by avatar publishes, and
  // put into its available presence.
  std::string avatar_hash;
  bool avatar_known = false;
  uint32_t avatar_changes = 0;  // publishes seen: a read issued before one must not undo it

  int64_t offline_count = 0;            // messages in offline storage (as far as we know)
  int64_t offline_delivered_up_to = 0;  // highest offline id handed to a session
  bool offline_loading = false;         // a LoadOffline is in flight
  bool offline_again = false;           // another delivery was asked for meanwhile

  // Contacts that answered our presence with an error during this lifetime of
  // the state: no further broadcasts to them (RFC 6121 §4.4.2).
  std::vector<std::string> presence_errors;

  // Messages for this account in arrival order, each waiting for its archive
  // write (or, if it is not archived, for those ahead of it), so delivery
  // keeps the order they came in.
  struct Pending {
    std::shared_ptr<const Routed> routed;
    bool ready = false;         // archived (or not to be), may be delivered
    bool deliver = true;        // false: drop (a retransmission, or the write failed)
    bool carbons_sent = false;  // the sender's other devices have their XEP-0280 copy
  };
  std::list<Pending> outbox;

  // Work waiting for the load, in arrival order. A list, not a deque: an
  // empty libstdc++ deque allocates 576 bytes, and most accounts never queue.
  std::list<AccountOp> queue;
  // XEP-0357 push registrations (push.cc), read from the store the first
  // time a message or an enable/disable needs them, then kept in step with
  // it. `pending`: notifications sent since that device was last awake (the
  // summary's message-count).
  enum class PushLoad : uint8_t { kNone, kLoading, kLoaded };
  struct PushEntry {
    store::PushRegistration reg;
    int64_t pending = 0;
  };
  PushLoad push_load = PushLoad::kNone;
  std::vector<PushEntry> pushes;
  std::list<UniqueFunction<void(AccountState&, bool)>> push_waiting;  // for the load; bool: it succeeded

  // XEP-0163 personal eventing (pep.cc): the account's node configurations,
  // read from the store the first time a PEP request needs them, then kept
  // ahead of the store like the roster (a change is applied here, then
  // written; a failed write drops them so that the next need reloads).
  enum class PepLoad : uint8_t { kNone, kLoading, kLoaded };
  PepLoad pep_load = PepLoad::kNone;
  std::map<std::string, store::PepNode, std::less<>> pep_nodes;
  std::list<UniqueFunction<void(AccountState&, bool)>> pep_waiting;  // for the load; bool: it succeeded
  // PEP writes in flight. A (re)load waits until none is: the store may
  // answer a read before an earlier write lands, and a node list read then
  // would undo a change (an access model made stricter, say) in the cache.
  int pep_writes = 0;
  // vCard writes in flight: a client's set, or the XEP-0398 conversion's
  // read-modify-write. The next waits in `vcard_waiting` until none is, so
  // the conversion never writes back a vCard read before a set landed
  // (avatars.cc, services.cc; HubImpl::AfterVCardWrite).
  int vcard_writes = 0;
  std::vector<UniqueFunction<void(AccountState&)>> vcard_waiting;

  std::vector<std::string> command_sessions;  // XEP-0050 sessions in progress (commands.cc)
  int replaying = 0;  // restores replaying the archive: the outbox waits (restore.cc)
  int busy = 0;     // store calls in flight
  int running = 0;  // ops on the stack (guards eviction)

  bool Ready() const { return load == Load::kReady; }

  Resource* FindByRef(xmpp::SessionRef ref) {
    for (auto& r : resources) {
      if (r.ref == ref) return &r;
    }
    return nullptr;
  }
  Resource* FindByName(std::string_view name) {
    for (auto& r : resources) {
      if (r.name == name) return &r;
    }
    return nullptr;
  }
  const store::RosterItem* FindItem(std::string_view jid) const {
    auto it = roster.find(jid);
    return it == roster.end() ? nullptr : &it->second;
  }
  store::RosterItem* FindItem(std::string_view jid) {
    auto it = roster.find(jid);
    return it == roster.end() ? nullptr : &it->second;
  }
};

// True for a record that exists only to hold a pending inbound subscription
// request: the store has no separate table for those, so such an item is
// kept in the roster but never shown to the client (RFC 6121 §3.1.3: a
// pending request does not create a roster item). See src/im/README.md.
inline bool IsHiddenItem(const store::RosterItem& item) {
  return item.subscription == store::Subscription::kNone && !item.ask_out && !item.preapproved &&
         item.pending_in && item.name.empty() && item.groups.empty();
}

// True for an item that carries nothing at all (and can be deleted).
inline bool IsEmptyItem(const store::RosterItem& item) {
  return item.subscription == store::Subscription::kNone && !item.ask_out && !item.preapproved &&
         !item.pending_in && item.name.empty() && item.groups.empty();
}

}  // namespace nines::im
