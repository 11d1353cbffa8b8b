// Store: the one asynchronous storage interface every module uses.
//
// Contract
//  * Every call returns at once. Its Reply is invoked later, exactly once, on
//    the executor the Reply was built with (the caller's event loop). No event
//    loop ever blocks on storage.
//    That executor's execution context must outlive the Store (or at least
//    its Close()): a store thread may still be inside post() when the Reply
//    has already run on the loop.
//  * A write's Reply runs only after the write is durable: for SQLite, after
//    the transaction holding it has been committed and fsync'd (WAL,
//    synchronous=FULL). This is what lets callers acknowledge (G1).
//  * Writes issued from one thread are applied in the order issued.
//  * A read issued after a write's Reply has run sees that write. (A read
//    issued earlier may or may not.)
//  * A write that fails (bad input, conflict) fails alone: it changes nothing,
//    and other callers' writes are unaffected.
//  * Writes that belong to an account (roster, offline, vCard) fail with
//    kNotFound if the account does not exist. Reads of a missing account's
//    data return empty results (version 0, no messages), except GetAccount,
//    GetVCard and GetPepItems, which return kNotFound.
//  * Errors: kUnavailable means the database could not be reached or was
//    busy past its timeout, or the store is closed; the caller may retry.
//  * Usernames passed in are already normalised (xmpp/jid.h); the store
//    compares them byte for byte. JIDs in roster items are normalised bare
//    JIDs in string form.
//
// Thread safety: all methods may be called from any thread. Implementations
// own their threads; Close() drains queued work, then joins them. Calls made
// after Close() has begun reply with kUnavailable.
//
// Every backend runs the typed conformance suite in store/store_conformance.h.
#pragma once

#include <algorithm>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace nines::store {

// A completion bound to the executor it must run on.
template <class T>
class Reply {
 public:
  using Fn = std::function<void(Result<T>)>;
  Reply(boost::asio::any_io_executor executor, Fn fn) : executor_(std::move(executor)), fn_(std::move(fn)) {}

  // Posts fn(result) to the executor. Call exactly once (this or Invoke).
  void operator()(Result<T> result) {
    boost::asio::post(executor_,
                      [fn = std::move(fn_), r = std::move(result)]() mutable { fn(std::move(r)); });
  }

  // For backends that post many replies at once (one post per executor for a
  // whole group commit): runs fn(result) right here. Call only on a thread
  // of executor(), from a handler posted to it.
  void Invoke(Result<T> result) { fn_(std::move(result)); }
  const boost::asio::any_io_executor& executor() const { return executor_; }

 private:
  boost::asio::any_io_executor executor_;
  Fn fn_;
};

// Salted SCRAM keys for one hash (RFC 5802 §3). The password itself is never stored.
struct ScramKeys {
  std::string salt;  // raw bytes
  int64_t iterations = 0;
  std::string stored_key;  // raw bytes: H(ClientKey)
  std::string server_key;  // raw bytes: HMAC(SaltedPassword, "Server Key")
};

struct Account {
  std::string username;  // normalised localpart
  ScramKeys sha1;
  ScramKeys sha256;
  int64_t created_ms = 0;  // unix milliseconds
};

// RFC 6121 §2.1.2.5 subscription states, with the pending flags of Appendix A.
enum class Subscription { kNone, kTo, kFrom, kBoth, kRemove };

// The RFC 6121 spelling of a subscription state ("none", "to", "from",
// "both", "remove"): the roster wire format and the stored form share it.
inline const char* SubscriptionName(Subscription subscription) {
  switch (subscription) {
    case Subscription::kNone:
      return "none";
    case Subscription::kTo:
      return "to";
    case Subscription::kFrom:
      return "from";
    case Subscription::kBoth:
      return "both";
    case Subscription::kRemove:
      return "remove";
  }
  return "none";
}

struct RosterItem {
  std::string jid;  // normalised bare JID of the contact
  std::string name;
  Subscription subscription = Subscription::kNone;
  bool ask_out = false;      // we asked the contact (ask='subscribe' shown to the client)
  bool pending_in = false;   // the contact asked us and we have not answered
  bool preapproved = false;  // we pre-approved their future request (RFC 6121 §3.4)
  std::vector<std::string> groups;
  std::string pending_in_stanza;  // the stored subscribe request, redelivered at login
};

struct Roster {
  int64_t version = 0;  // bumps on every change; used for roster versioning (XEP-0237 in RFC 6121 §2.6)
  std::vector<RosterItem> items;
};

struct OfflineMessage {
  int64_t id = 0;        // increasing per store
  int64_t stamp_ms = 0;  // when the server received it (for XEP-0203)
  std::string stanza;    // serialised <message/> as received, from-stamped
};

// One message in one account's archive (XEP-0313). A message between two
// local accounts is in both owners' archives under the same id. Ids are
// positive, unique in the store, and increase in commit order: the store
// assigns them (Archive with id 0) as microseconds since the epoch, or one
// more than the last id if the clock is behind it, so an id is also the
// time the message was stored and time filters are id ranges.
struct ArchivedMessage {
  int64_t id = 0;             // the archive id, also the XEP-0359 stanza-id
  int64_t stamp_ms = 0;       // when the server received it (unix milliseconds)
  std::string peer;           // normalised bare JID of the other party (the owner's own for notes to self)
  std::string peer_resource;  // the other party's resource, if it had one
  bool outgoing = false;      // the owner sent it
  std::string origin_id;      // XEP-0359 origin-id from the owner's client on outgoing messages, else ""
  std::string stanza;         // the serialised <message/>, from- and to-stamped
};

struct ArchiveEntry {
  std::string username;  // the owner
  ArchivedMessage message;
};

// What Archive did with a batch. The entries of one batch are one message:
// they share the id, stamp and stanza (the store may keep the text once).
struct ArchiveOutcome {
  // The batch was not written because its outgoing entry's origin-id is
  // already in the sender's archive (a retransmission); `existing_id` is the
  // id the first copy got.
  bool duplicate = false;
  int64_t existing_id = 0;
  int64_t id = 0;  // the id the message was stored under (not a duplicate)
};

// Messages for Store::ArchiveMany, each with a store-assigned id (Archive
// with id 0), laid out in one buffer: the server's loop adds what it
// archives in a pass without a string or a vector per message, and a store
// that writes the batch as one job reads the fields in place
// (docs/benchmarks.md, "Archiving: one buffer per pass").
class ArchiveBatch {
 public:
  // One owner's side of a message: an ArchiveEntry without the id, stamp
  // and stanza, which a message's entries share.
  struct Entry {
    std::string_view username;
    std::string_view peer;
    std::string_view peer_resource;
    bool outgoing = false;
    std::string_view origin_id;  // outgoing entries only
  };

  // Adds one message, `stanza`, kept by each of `entries` (Archive's rules
  // apply: at least one entry, one per owner). The views must not point
  // into this batch: adding may move its text.
  void Add(std::string_view stanza, std::span<const Entry> entries) {
    MessageRec m;
    m.stanza = Put(stanza);
    m.first = entries_.size();
    m.count = entries.size();
    for (const Entry& e : entries) {
      entries_.push_back({Put(e.username), Put(e.peer), Put(e.peer_resource),
                          Put(e.outgoing ? e.origin_id : std::string_view()), e.outgoing});
    }
    messages_.push_back(m);
  }
  size_t size() const { return messages_.size(); }
  bool empty() const { return messages_.empty(); }
  // Bytes of text held (stanzas and names).
  size_t bytes() const { return text_.size(); }
  std::string_view stanza(size_t message) const { return View(messages_[message].stanza); }
  size_t entries(size_t message) const { return messages_[message].count; }
  Entry entry(size_t message, size_t i) const {
    const EntryRec& e = entries_[messages_[message].first + i];
    return {View(e.username), View(e.peer), View(e.resource), e.outgoing, View(e.origin)};
  }
  // Message `message` as the entries of one Archive call (stores without a
  // batch of their own make one call per message).
  std::vector<ArchiveEntry> Call(size_t message) const {
    std::vector<ArchiveEntry> call;
    for (size_t i = 0; i < entries(message); ++i) {
      const Entry e = entry(message, i);
      call.push_back({std::string(e.username),
                      {0, 0, std::string(e.peer), std::string(e.peer_resource), e.outgoing,
                       std::string(e.origin_id), i == 0 ? std::string(stanza(message)) : std::string()}});
    }
    return call;
  }
  // Room for as many messages and bytes as `other` holds, so that a batch
  // the size of the last one does not grow step by step.
  void ReserveLike(const ArchiveBatch& other) {
    text_.reserve(other.text_.size());
    entries_.reserve(other.entries_.size());
    messages_.reserve(other.messages_.size());
  }

 private:
  struct Span {
    size_t offset = 0;
    size_t size = 0;
  };
  struct EntryRec {
    Span username, peer, resource, origin;
    bool outgoing = false;
  };
  struct MessageRec {
    Span stanza;
    size_t first = 0;
    size_t count = 0;
  };
  Span Put(std::string_view s) {
    Span span{text_.size(), s.size()};
    text_.append(s);
    return span;
  }
  std::string_view View(Span s) const { return std::string_view(text_).substr(s.offset, s.size); }

  std::string text_;
  std::vector<EntryRec> entries_;
  std::vector<MessageRec> messages_;
};

// A MAM query (XEP-0313 with #extended and XEP-0059 paging). All filters are
// optional and combine with AND; id bounds are exclusive.
struct ArchiveQuery {
  std::string with;           // bare JID: messages with it; "" for all
  std::string with_resource;  // with a full JID: only that resource
  std::optional<int64_t> after_id;
  std::optional<int64_t> before_id;
  std::vector<int64_t> ids;  // if not empty: only these ids
  int64_t max = 50;          // page size
  // False: the oldest `max` matching messages (forward paging from after_id);
  // true: the newest `max` (RSM <before/>, paging back from before_id).
  bool from_end = false;
};

// XEP-0313 §6 archiving preferences of one account. `always` and `never`
// are normalised bare JIDs; `default_mode` is "always", "never" or "roster".
struct ArchivePrefs {
  std::string default_mode = "always";
  std::vector<std::string> always;  // sorted
  std::vector<std::string> never;   // sorted
};

struct ArchivePage {
  std::vector<ArchivedMessage> messages;  // oldest first, whichever end the page came from
  // No further matching message beyond the page in the direction of paging.
  bool complete = true;
};

// A resumable XEP-0198 session ("a device") as the store keeps it, so that
// a process other than the one that held it (another node, or the same
// server after a crash or restart) can resume it. Written by the session
// while it lives; see docs/architecture.md, "Resumption from the store".
struct DeviceState {
  std::string key;       // SHA-256 of the resumption token, hex; the token itself is never stored
  std::string username;  // the owner
  std::string resource;
  // The client's stanzas the server had handled when this was written: the
  // XEP-0198 'h' (the low 32 bits go on the wire). The server acknowledges
  // a count only once it is written here, so a resume never reports less
  // than the client has already seen acknowledged.
  int64_t inbound_h = 0;
  // Archive id: every incoming archived message up to it that went to this
  // device has been acknowledged by the client. A resume replays the
  // archive after it.
  int64_t cursor = 0;
  std::string presence;  // the last broadcast available presence, serialised; "" if unavailable
  int64_t priority = 0;  // of that presence
  bool carbons = false;           // XEP-0280 enabled
  bool roster_requested = false;  // gets roster pushes (RFC 6121 §2.2)
  int64_t resume_timeout_s = 0;
  // Unix ms when the connection was lost; 0 while attached. Resumable until
  // detached_ms + resume_timeout_s.
  int64_t detached_ms = 0;
};

// An XEP-0357 push registration: the app server `jid` notifies one device
// through `node` whenever that device cannot receive for itself.
struct PushRegistration {
  std::string username;  // the owner
  std::string jid;       // the app server (an XMPP service, usually a component), normalised
  std::string node;      // opaque to us: the device's PubSub node at the app server
  // The <x xmlns='jabber:x:data'/> publish-options the client gave, serialised
  // as it goes into each notification; "" if none.
  std::string options;
  std::string resource;  // the resource that enabled it: that device's session
  int64_t created_ms = 0;
};

// A personal eventing (XEP-0163) node of one account, with the part of its
// XEP-0060 configuration (pubsub#node_config) that nines supports. The
// hub validates values; the store refuses an access_model or send_last it
// does not know with kInvalidArgument, and keeps roster_groups sorted and
// without repeats.
struct PepNode {
  std::string username;  // the owner
  std::string node;      // the node's name, as the client chose it
  // pubsub#access_model: "open", "presence", "roster" or "whitelist".
  std::string access_model = "presence";
  std::vector<std::string> roster_groups;  // pubsub#roster_groups_allowed (for "roster"), sorted
  int64_t max_items = 1;                   // pubsub#max_items: the newest this many are kept
  bool persist_items = true;               // pubsub#persist_items
  // pubsub#send_last_published_item: "never", "on_sub" or "on_sub_and_presence".
  std::string send_last = "on_sub_and_presence";
  bool notify_retract = true;  // pubsub#notify_retract
  bool notify_delete = true;   // pubsub#notify_delete
  std::string title;           // pubsub#title
  int64_t created_ms = 0;      // set by the store when it creates the node
};

// One item of a PEP node.
struct PepItem {
  std::string id;         // unique within the node
  std::string xml;        // the payload: one serialised element with its xmlns ("" for none)
  std::string publisher;  // bare JID of whoever published it
  int64_t updated_ms = 0;  // when it was (last) published; set by the store
};

// The newest item of one node, with the node (Store::LastPepItems).
struct PepLastItem {
  PepNode node;
  PepItem item;
};

// What every backend refuses in a PEP node configuration, before anything
// is written (store.h contract: kInvalidArgument for an unknown
// access_model or send_last, or an empty node name). The hub validates too;
// this keeps the schemas' CHECK constraints from turning it into another code.
inline Result<void> CheckPepNode(const PepNode& node) {
  if (node.node.empty()) return MakeError(Errc::kInvalidArgument, "a PEP node needs a name");
  const std::string& access = node.access_model;
  if (access != "open" && access != "presence" && access != "roster" && access != "whitelist") {
    return MakeError(Errc::kInvalidArgument, "unknown PEP access model");
  }
  const std::string& send_last = node.send_last;
  if (send_last != "never" && send_last != "on_sub" && send_last != "on_sub_and_presence") {
    return MakeError(Errc::kInvalidArgument, "unknown PEP send_last_published_item value");
  }
  return {};
}

// For backends that finish a whole group commit at once: one post per
// caller executor, running each job's FinishHere() there, instead of one
// post (a loop wakeup and a handler allocation) per job. The jobs travel
// with the post, so they are freed on the thread that made them. `Job`
// needs executor() and FinishHere().
template <class Job>
void PostByExecutor(std::vector<std::unique_ptr<Job>>& jobs) {
  std::vector<std::vector<std::unique_ptr<Job>>> groups;
  for (auto& job : jobs) {
    auto group = std::find_if(groups.begin(), groups.end(),
                              [&](const auto& g) { return g.front()->executor() == job->executor(); });
    if (group == groups.end()) {
      groups.emplace_back();
      group = groups.end() - 1;
    }
    group->push_back(std::move(job));
  }
  for (auto& group : groups) {
    auto executor = group.front()->executor();
    boost::asio::post(executor, [group = std::move(group)]() mutable {
      for (auto& job : group) job->FinishHere();
    });
  }
}

class Store {
 public:
  virtual ~Store() = default;

  // Accounts. CreateAccount fails with kConflict if the username exists.
  virtual void CreateAccount(Account account, Reply<void> reply) = 0;
  // Creates many accounts in one transaction; existing ones fail the batch with kConflict.
  virtual void CreateAccounts(std::vector<Account> accounts, Reply<void> reply) = 0;
  // kNotFound if absent.
  virtual void GetAccount(std::string username, Reply<Account> reply) = 0;
  // Replaces both key sets. kNotFound if absent.
  virtual void SetCredentials(std::string username, ScramKeys sha1, ScramKeys sha256, Reply<void> reply) = 0;
  // Deletes the account and everything it owns (roster, offline, vCard, archive).
  // kNotFound if absent.
  virtual void DeleteAccount(std::string username, Reply<void> reply) = 0;
  // Sorted usernames.
  virtual void ListAccounts(Reply<std::vector<std::string>> reply) = 0;

  // Roster of `username`; empty roster (version 0) if none.
  virtual void GetRoster(std::string username, Reply<Roster> reply) = 0;
  // Inserts or replaces the item keyed by item.jid; returns the new roster version.
  // Groups are a set: duplicates collapse, and GetRoster returns them sorted.
  // kInvalidArgument for Subscription::kRemove, which is a request, not a state.
  virtual void PutRosterItem(std::string username, RosterItem item, Reply<int64_t> reply) = 0;
  // Removes the item; returns the new version. kNotFound if no such item.
  virtual void RemoveRosterItem(std::string username, std::string jid, Reply<int64_t> reply) = 0;

  // Offline messages. Store returns the new message id once durable; ids are
  // never reused, and message.id is ignored.
  virtual void StoreOffline(std::string username, OfflineMessage message, Reply<int64_t> reply) = 0;
  virtual void CountOffline(std::string username, Reply<int64_t> reply) = 0;
  // Oldest (lowest id) first. CountOffline and LoadOffline of an unknown user: 0, empty.
  virtual void LoadOffline(std::string username, Reply<std::vector<OfflineMessage>> reply) = 0;
  // Deletes messages with id <= up_to_id (after they have been delivered).
  virtual void DeleteOffline(std::string username, int64_t up_to_id, Reply<void> reply) = 0;

  // vCard-temp (XEP-0054) as serialised XML; kNotFound if none.
  virtual void GetVCard(std::string username, Reply<std::string> reply) = 0;
  virtual void SetVCard(std::string username, std::string vcard_xml, Reply<void> reply) = 0;

  // Archive (XEP-0313). Writes one message to each entry's owner in one
  // transaction, all or none. The entries must share id, stamp and stanza
  // (kInvalidArgument otherwise, or for none, or for a negative id); the
  // entries after the first may leave the stanza empty to mean the first's
  // (the server does, saving a copy per message). With id
  // 0 the store assigns the id (see ArchivedMessage) and sets stamp_ms to
  // id / 1000; that is how the server archives, so that ids follow commit
  // order whichever thread submitted them. If an outgoing entry carries an
  // origin-id that the same owner's archive already holds, nothing is
  // written and the outcome says duplicate: at least among the owner's
  // newest 2,048 entries (SQLite looks no further back; a client resends
  // what it has not seen acknowledged, which is its newest), and everywhere
  // in PostgreSQL. kConflict if a given id is
  // taken; kNotFound if an owner has no account.
  virtual void Archive(std::vector<ArchiveEntry> entries, Reply<ArchiveOutcome> reply) = 0;
  // Many messages at once, each as one Archive call with id 0, with one
  // outcome per message, in order: one message's failure leaves the others
  // alone. A backend that can write them as one job overrides it (SQLite:
  // the server's loop sends what it archived in one pass, instead of a
  // job, a Reply and a completion per message); the default makes one
  // Archive call each and replies once all have. A reply that is an error
  // (the store is closed, the transaction failed) is every message's
  // outcome.
  virtual void ArchiveMany(ArchiveBatch batch, Reply<std::vector<Result<ArchiveOutcome>>> reply) {
    if (batch.empty()) {
      reply(std::vector<Result<ArchiveOutcome>>{});
      return;
    }
    struct State {
      std::vector<std::optional<Result<ArchiveOutcome>>> outcomes;
      size_t left = 0;
      std::optional<Reply<std::vector<Result<ArchiveOutcome>>>> reply;
    };
    auto state = std::make_shared<State>();
    state->outcomes.resize(batch.size());
    state->left = batch.size();
    const boost::asio::any_io_executor executor = reply.executor();
    state->reply.emplace(std::move(reply));
    for (size_t i = 0; i < batch.size(); ++i) {
      // Each Reply runs on `executor`, so the last one may Invoke the whole.
      Archive(batch.Call(i), Reply<ArchiveOutcome>(executor, [state, i](Result<ArchiveOutcome> outcome) {
                state->outcomes[i].emplace(std::move(outcome));
                if (--state->left != 0) return;
                std::vector<Result<ArchiveOutcome>> all;
                all.reserve(state->outcomes.size());
                for (auto& o : state->outcomes) all.push_back(std::move(*o));
                state->reply->Invoke(std::move(all));
              }));
    }
  }
  // One page of `username`'s archive; an unknown user has an empty archive.
  virtual void QueryArchive(std::string username, ArchiveQuery query, Reply<ArchivePage> reply) = 0;
  // Deletes `username`'s archived messages with an id below `before_id`
  // (all of them with INT64_MAX), then all but the newest `keep` if keep >= 0.
  // Other owners' copies stay. Returns how many were deleted.
  virtual void PruneArchive(std::string username, int64_t before_id, int64_t keep, Reply<int64_t> reply) = 0;

  // Device states (XEP-0198 resumption from the store). Put inserts or
  // replaces the row keyed by state.key; kNotFound if the owner has no
  // account, kInvalidArgument for an empty key. Get: kNotFound if absent.
  // Delete succeeds whether or not the row exists. DeleteAccount deletes the
  // account's rows.
  virtual void PutDeviceState(DeviceState state, Reply<void> reply) = 0;
  virtual void GetDeviceState(std::string key, Reply<DeviceState> reply) = 0;
  virtual void DeleteDeviceState(std::string key, Reply<void> reply) = 0;
  // For a server starting up: rows still attached belong to sessions whose
  // process ended without detaching them (a crash); they become detached at
  // `now_ms`. Then rows whose resume window ended before `now_ms` are
  // deleted; returns how many.
  virtual void SweepDeviceStates(int64_t now_ms, Reply<int64_t> reply) = 0;

  // Push registrations (XEP-0357). Put inserts or replaces the row keyed by
  // (username, jid, node); kNotFound if the owner has no account,
  // kInvalidArgument for an empty jid or node. Delete removes the rows of
  // (username, jid) with that node, or every node there if `node` is empty,
  // and returns how many went (0 is not an error). List: the owner's rows,
  // oldest first. DeleteAccount deletes the account's rows.
  virtual void PutPushRegistration(PushRegistration registration, Reply<void> reply) = 0;
  virtual void DeletePushRegistrations(std::string username, std::string jid, std::string node,
                                       Reply<int64_t> reply) = 0;
  virtual void ListPushRegistrations(std::string username, Reply<std::vector<PushRegistration>> reply) = 0;

  // Block lists (XEP-0191): normalised JIDs (bare, full, domain or
  // domain/resource), each at most once. Get returns them sorted. Block adds
  // those not there yet, in one transaction (kNotFound: no account;
  // kInvalidArgument: an empty JID). Unblock removes those given, or all if
  // `jids` is empty, and returns how many went. DeleteAccount deletes them.
  virtual void GetBlocklist(std::string username, Reply<std::vector<std::string>> reply) = 0;
  virtual void Block(std::string username, std::vector<std::string> jids, Reply<void> reply) = 0;
  virtual void Unblock(std::string username, std::vector<std::string> jids, Reply<int64_t> reply) = 0;

  // Archiving preferences (XEP-0313). Get returns the defaults (always, no
  // JIDs) for an account that never set any. Set replaces them whole
  // (kNotFound: no account; kInvalidArgument: an unknown default_mode, an
  // empty JID, or a JID in both lists). DeleteAccount deletes them.
  virtual void GetArchivePrefs(std::string username, Reply<ArchivePrefs> reply) = 0;
  virtual void SetArchivePrefs(std::string username, ArchivePrefs prefs, Reply<void> reply) = 0;

  // Private XML storage (XEP-0049): one serialised element per `key` (the
  // caller's choice; the hub uses "namespace element-name"). Get: kNotFound
  // if none. Set inserts or replaces; a new key when the account already
  // holds `max_items` is kLimitExceeded (nothing written); kNotFound if the
  // owner has no account. DeleteAccount deletes them.
  virtual void GetPrivate(std::string username, std::string key, Reply<std::string> reply) = 0;
  virtual void SetPrivate(std::string username, std::string key, std::string xml, int64_t max_items,
                          Reply<void> reply) = 0;

  // Personal eventing (XEP-0163) nodes and items. All PEP writes fail with
  // kNotFound if the owner has no account, and DeleteAccount deletes the
  // account's nodes and items.
  //  * ListPepNodes: the owner's nodes, sorted by name (no items).
  //  * PutPepNode creates the node or replaces its configuration
  //    (created_ms is kept); lowering max_items deletes the oldest items
  //    beyond it. A new node when the owner already has `max_nodes` is
  //    kLimitExceeded; an empty node name kInvalidArgument.
  //  * DeletePepNode deletes the node and its items; kNotFound if absent.
  //  * PublishPepItem creates `node` (with its configuration, under the same
  //    `max_nodes` rule) if the owner has no node of that name, else leaves
  //    the stored configuration alone; then it stores `item`, replacing an
  //    item with the same id, which becomes the newest; then deletes the
  //    oldest items beyond the node's max_items. kInvalidArgument for an
  //    empty item id. One transaction.
  //  * SetPepItems: like PublishPepItem, but the node ends with exactly
  //    `items` (those not given are deleted), newest last, then pruned to
  //    max_items like a publish. One transaction.
  //  * GetPepItems: the node's items, newest first: those with the given ids
  //    if `ids` is not empty (missing ids are skipped), else the newest
  //    `max` (all if max < 0). kNotFound if the node does not exist.
  //  * RetractPepItems deletes the items with those ids and returns how many
  //    went; PurgePepNode deletes all of them. kNotFound if no such node.
  //  * LastPepItems: for every node named in `nodes` of every owner in
  //    `owners` that has at least one item, the node and its newest item.
  //    Owners without an account have no nodes, and owners whose block list
  //    (Block) holds any of `unless_blocking` are left out.
  virtual void ListPepNodes(std::string username, Reply<std::vector<PepNode>> reply) = 0;
  virtual void PutPepNode(PepNode node, int64_t max_nodes, Reply<void> reply) = 0;
  virtual void DeletePepNode(std::string username, std::string node, Reply<void> reply) = 0;
  virtual void PublishPepItem(PepNode node, PepItem item, int64_t max_nodes, Reply<void> reply) = 0;
  virtual void SetPepItems(PepNode node, std::vector<PepItem> items, int64_t max_nodes, Reply<void> reply) = 0;
  virtual void GetPepItems(std::string username, std::string node, std::vector<std::string> ids, int64_t max,
                           Reply<std::vector<PepItem>> reply) = 0;
  virtual void RetractPepItems(std::string username, std::string node, std::vector<std::string> ids,
                               Reply<int64_t> reply) = 0;
  virtual void PurgePepNode(std::string username, std::string node, Reply<void> reply) = 0;
  virtual void LastPepItems(std::vector<std::string> owners, std::vector<std::string> nodes,
                            std::vector<std::string> unless_blocking, Reply<std::vector<PepLastItem>> reply) = 0;

  // Drains queued work (every queued write commits and replies) and stops
  // the store's threads. Blocks; never call it on an event loop that must
  // keep serving. Idempotent.
  virtual void Close() = 0;
};

struct SqliteOptions {
  std::string path;
  int64_t commit_batch = 256;  // most writes per group-committed transaction
  // While busy (the last group commit held several writes, or several are
  // queued, and it ended less than this long ago), writes wait out the rest
  // of this for others to share their fsync. 0: commit at once.
  int64_t commit_delay_us = 0;
  // Archive entries kept in memory (and in their log chunks) before they are
  // written as posting rows (sqlite/archive_log.h); tests set it low.
  int64_t archive_index_every = 131072;
};

// Opens (creating if needed) and migrates the database. Synchronous: for
// startup and CLI use, never on an event loop.
Result<std::unique_ptr<Store>> OpenSqlite(const SqliteOptions& options);

// The schema version this build writes; OpenSqlite migrates older files up to it
// and refuses newer ones with kInvalidArgument.
int SqliteSchemaVersion();

struct PostgresOptions {
  // A libpq connection string, URI or key=value, possibly naming several
  // hosts (postgresql://h1:5432,h2:5432/nines). Unless it says otherwise,
  // target_session_attrs=read-write is added, so a failover is followed
  // without a proxy.
  std::string uri;
  int64_t pool_size = 3;       // connections: one writer, the rest readers (at least one)
  int64_t commit_batch = 256;  // most writes per group-committed transaction
  // How long a store thread keeps trying to reconnect after its connection
  // broke (a failover) before failing the calls waiting on it.
  int64_t failover_timeout_ms = 30000;
};

// Connects, then migrates the schema under an advisory lock (so nodes
// starting at once do not race). Synchronous: for startup and CLI use.
Result<std::unique_ptr<Store>> OpenPostgres(const PostgresOptions& options);

// The schema version this build writes on PostgreSQL.
int PostgresSchemaVersion();

}  // namespace nines::store
