// HubImpl: the machinery behind im::Hub (internal to src/im).
//
// Split by concern over several files, all members of this class:
//   hub_impl.cc   shards, account loading/queueing/eviction, bind, routing,
//                 message delivery (RFC 6121 §8.5), IQ dispatch, errors
//   presence.cc   presence broadcast/probes/directed (§4), subscriptions (§3)
//   roster.cc     roster get/set/remove, pushes, versioning (§2)
//   offline.cc    offline storage and delivery (XEP-0160, XEP-0203)
//   services.cc   disco, version, ping, vCard-temp, legacy session
//   push.cc       XEP-0357 push: registrations and notifications
//   blocking.cc   XEP-0191 blocking
//   private_storage.cc  XEP-0049 private XML storage
//   extdisco.cc   XEP-0215 external service discovery (STUN/TURN)
//   commands.cc   XEP-0050 ad-hoc commands (delete my archive)
//   pep.cc        XEP-0163 personal eventing, XEP-0115 caps for its notifications
//   bookmarks.cc  XEP-0402 bookmarks kept in step with XEP-0048 private storage
//   avatars.cc    XEP-0398 avatar conversion between PEP and vCard, XEP-0153 hashes
//
// Threading: see hub.h. Each method says which loop it runs on; "home"
// means the home loop of the account it is given.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/config.h"
#include "im/account.h"
#include "im/caps.h"
#include "im/hub.h"
#include "im/iq_registry.h"
#include "im/jid_view.h"
#include "im/session_port.h"
#include "im/subscription.h"
#include "net/loop_pool.h"
#include "store/store.h"
#include "xml/element.h"
#include "xmpp/jid/jid.h"

namespace nines::im {

inline constexpr std::string_view kAvatarMetadata = "urn:xmpp:avatar:metadata";
inline constexpr std::string_view kAvatarData = "urn:xmpp:avatar:data";
// The id of the avatar an avatar metadata payload (XEP-0084 <metadata/>)
// announces: the first <info/> without a url; "" for none (avatars.cc).
std::string AvatarHashOf(std::string_view metadata_xml);

enum class Kind : uint8_t { kMessage, kPresence, kIq };
enum class MsgType : uint8_t { kNormal, kChat, kGroupchat, kHeadline, kError };
enum class PresType : uint8_t {
  kAvailable,
  kUnavailable,
  kSubscribe,
  kSubscribed,
  kUnsubscribe,
  kUnsubscribed,
  kProbe,
  kError,
  kInvalid
};
enum class IqType : uint8_t { kGet, kSet, kResult, kError, kInvalid };

MsgType ParseMsgType(std::string_view type);  // unknown -> normal (RFC 6121 §5.2.2)
PresType ParsePresType(std::string_view type);
IqType ParseIqType(std::string_view type);

// Held by a message that its sender's session counts as in flight (see
// xmpp::Hub::HandleStanza): when the last reference to that message goes
// (archived, refused or dropped), the session hears of it, exactly once.
// The cell is cleared when the hub goes, so stragglers destroyed at
// shutdown tell nobody.
class OriginNotifier {
 public:
  OriginNotifier(std::shared_ptr<std::atomic<SessionPort*>> port, xmpp::SessionRef ref, uint64_t ticket)
      : port_(std::move(port)), ref_(ref), ticket_(ticket) {}
  ~OriginNotifier() {
    if (SessionPort* port = port_->load(std::memory_order_acquire)) port->StanzaDone(ref_, ticket_);
  }
  OriginNotifier(const OriginNotifier&) = delete;
  OriginNotifier& operator=(const OriginNotifier&) = delete;

 private:
  std::shared_ptr<std::atomic<SessionPort*>> port_;
  xmpp::SessionRef ref_;
  uint64_t ticket_;
};

// A stanza on its way between loops: serialised once, with the few fields
// routing and error replies need. Immutable once shared, with one
// exception: HubImpl::Archived writes the stanza-id into a message that
// only its own loop still holds (use_count() == 2). RoutedFields is
// everything but the text, so that a copy with other text (an archived
// message with its stanza-id, when it is shared) does not copy the text
// twice.
struct RoutedFields {
  Kind kind = Kind::kMessage;
  uint8_t type = 0;         // MsgType, PresType or IqType
  bool offline_ok = false;  // a message XEP-0160 storage would keep
  bool archive_ok = false;  // a message XEP-0313 archives would keep (before the owners' settings)
  bool carbons_ok = false;  // eligible for XEP-0280 carbons (and not marked private)
  bool has_origin = false;  // sent by a local session: errors go back to `origin`
  bool external = false;    // from an external component (XEP-0114): no sender account here
  xmpp::SessionRef origin;
  int64_t stamp_ms = 0;  // for a message back from offline storage: first receipt
  std::string from;      // as stamped on the stanza
  std::string to;        // as addressed (normalised)
  std::string id;
  std::string origin_id;  // XEP-0359 <origin-id/> from the sending client, if any
  bool archive_out = true;  // the local sender's preferences keep it (XEP-0313 prefs; decided on its loop)
  int64_t archive_id = 0;  // the recipient's archive id, once archived (the <stanza-id/> in xml)
  // Set on a message its sender counts as in flight; copies made for
  // delivery do not carry it. Mutable: the recipient's home drops it once
  // a message that is not archived has been handed to its sessions (which
  // may hold the stanza until their client acknowledges it, XEP-0198).
  mutable std::shared_ptr<OriginNotifier> done;

  MsgType msg_type() const { return static_cast<MsgType>(type); }
  PresType pres_type() const { return static_cast<PresType>(type); }
  IqType iq_type() const { return static_cast<IqType>(type); }
};

struct Routed : RoutedFields {
  std::string xml;  // the stanza, serialised for a jabber:client stream

  Routed() = default;
  // `fields` with `text` as the stanza.
  Routed(const RoutedFields& fields, std::string text) : RoutedFields(fields), xml(std::move(text)) {}
};
using RoutedPtr = std::shared_ptr<const Routed>;

// The serialised stanza of `r`, sharing r's lifetime (no copy).
inline std::shared_ptr<const std::string> SharedXml(const RoutedPtr& r) { return {r, &r->xml}; }

class HubImpl final : public xmpp::Rerouter {
 public:
  explicit HubImpl(HubDeps deps);
  ~HubImpl();

  // xmpp::Rerouter: a message a session could not deliver (its OnGone from
  // ReroutingOnGone), rebuilt from its text and routed round again (Reroute).
  void RerouteText(xmpp::SessionRef gone, std::string_view xml, const xmpp::RerouteInfo& info) override;

  // xmpp::Hub, called on the session's loop.
  void Bind(xmpp::SessionRef ref, const xmpp::Jid& bare, const std::string& requested,
            std::function<void(Result<xmpp::Jid>)> done);
  void Restore(xmpp::SessionRef ref, const xmpp::Jid& bare, xmpp::RestoredResource restored,
               std::function<void(Result<xmpp::Jid>)> done);
  bool HandleStanza(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza, uint64_t ticket);
  void HandleFromComponent(xmpp::SessionRef ref, xml::Element stanza);
  void SetAsleep(xmpp::SessionRef ref, const xmpp::Jid& full, bool asleep);
  void Unbind(xmpp::SessionRef ref, const xmpp::Jid& full);
  void AccountRemoved(xmpp::SessionRef by, const xmpp::Jid& bare);

  const IqRegistry& registry() const { return registry_; }

  // ---------------------------------------------------------------------
  // Shared plumbing (hub_impl.cc)

  // A message ArchiveThenDeliver sent to the store, waiting for its outcome.
  struct ArchiveWait {
    AccountState* st;  // kept by busy > 0 (MaybeEvict)
    RoutedPtr r;
    bool keep_out;  // the local sender's archive keeps it
    bool keep_in;   // the recipient keeps it: delivered with our stanza-id
    bool sender_missing = false;  // a retry for the recipient alone: an owner was missing
  };
  struct Shard {
    std::shared_ptr<const Config> config;  // snapshot, refreshed by the loop tick
    std::unordered_map<std::string, std::unique_ptr<AccountState>, StringHash, std::equal_to<>> accounts;
    // What the sessions on this loop need of their account to handle what
    // they send (block list, archiving preferences), by session id; only
    // for accounts that have either (AccountState::HasSessionSettings).
    std::unordered_map<uint64_t, SessionSettings> session_settings;
    // Accounts deleted in the last limits.auth_timeout seconds (bare JID ->
    // loop seconds, ForgetAccount): a session that authenticated before the
    // deletion may still bind, and Bind then asks the store again.
    std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>> removed;
    // Archive calls made in this pass of the loop (ArchiveThenDeliver), and
    // who waits for each; FlushArchiveCalls sends them.
    store::ArchiveBatch archive_batch;
    std::vector<ArchiveWait> archive_waits;
  };

  net::Loop& loop(size_t index) { return loops_->loop(index); }
  Shard& shard(size_t index) { return *shards_[index]; }
  size_t HomeOf(std::string_view bare) const { return StringHash()(bare) % shards_.size(); }
  // The config snapshot of a loop; call on that loop.
  const Config& ConfigOn(size_t index) const { return *shards_[index]->config; }
  store::Store& store() { return *store_; }
  bool IsLocal(std::string_view jid, const Config& config) const {
    return SplitJid(jid).domain == config.domain;
  }

  // Runs `op` on the account's state, on its home loop (call there): at once
  // if the account is loaded and nothing is queued before it, else after the
  // load (started here if needed). `op` sees load == kReady, kMissing or
  // kFailed and must handle all three.
  template <class F>
  void RunOnAccount(size_t home, std::string_view bare, F&& op) {
    AccountState& st = FindOrCreate(home, bare);
    if (st.queue.empty() &&
        (st.load == AccountState::Load::kReady || st.load == AccountState::Load::kMissing)) {
      ++st.running;
      op(st);
      --st.running;
      MaybeEvict(st);
      return;
    }
    st.queue.emplace_back(std::forward<F>(op));
    if (st.load == AccountState::Load::kNone) StartLoadWhenQuiet(st);
  }
  // Posts `op` to the account's home loop, then RunOnAccount. Any thread.
  void PostToAccount(std::string bare, AccountOp op);
  AccountState* FindAccount(size_t home, std::string_view bare);
  // Drops the state if nothing keeps it (see account.h), or starts the load
  // that work waits for once no store call is in flight (StartLoadWhenQuiet).
  // Call after every change that may release the state. Do not touch `st` after.
  void MaybeEvict(AccountState& st);

  // Queues `xml` for one resource's session. `archive_id`: see
  // SessionPort::Deliver; a message the resource was already given by a
  // restore's replay (Resource::Replayed) is skipped.
  void DeliverTo(const Resource& resource, std::shared_ptr<const std::string> xml, xmpp::OnGone on_gone = {},
                 int64_t archive_id = 0);
  // Delivers to every available resource of the account.
  void DeliverToAvailable(AccountState& st, const std::shared_ptr<const std::string>& xml);
  // Routes a stanza to its 'to' (local account, server, or remote). Runs on
  // loop `current` (whose config snapshot it reads). `may_inline` lets the
  // recipient's work run right here when its home is this loop: only for
  // entry points, never from inside account work (which must not nest).
  void Route(RoutedPtr r, size_t current, bool may_inline = false);
  // A server-generated stanza (no origin session; errors about it are dropped).
  static RoutedPtr MakeServerStanza(Kind kind, uint8_t type, std::string from, std::string to,
                                    std::string xml);
  // Sends a stanza error about `r` back to the session that sent it (never
  // for type='error' stanzas or server-generated ones). Any loop.
  void Bounce(const Routed& r, std::string_view condition, std::string_view text = {});

  // IQ replies, straight to the requester's session. Any loop.
  void ReplyResult(const IqCall& call, std::string_view inner_xml = {});
  void ReplyError(const IqCall& call, std::string_view condition, std::string_view text = {});
  // Any reply built by the caller (an error with an application condition).
  void ReplyStanza(const IqCall& call, const xml::Element& reply);
  // The end of a store call that held the account busy: --busy, and evict
  // if nothing else keeps it. On home.
  void Release(size_t home, const std::string& bare);

  // ---------------------------------------------------------------------
  // Roster (roster.cc)

  using WriteDone = UniqueFunction<void(AccountState& st, bool ok, int64_t version)>;
  // Updates the cached item, then writes it; `done` runs on home after the
  // write (ok=false: the write failed and the cache is being reloaded).
  void PutItem(AccountState& st, store::RosterItem item, WriteDone done);
  void DeleteItem(AccountState& st, const std::string& jid, WriteDone done);
  // The reply both write paths hand the store.
  store::Reply<int64_t> RosterWriteReply(AccountState& st, std::string jid, bool is_delete, WriteDone done);
  // Roster push of one item (or its removal) to the interested resources.
  void PushItem(AccountState& st, const store::RosterItem& item, int64_t version);
  void PushRemoval(AccountState& st, std::string_view jid, int64_t version);
  static void AppendItemXml(std::string& out, const store::RosterItem& item);
  void RegisterRoster();

  // ---------------------------------------------------------------------
  // Presence (presence.cc)

  // Outbound presence from a client, on the sender's home. `done`, for a
  // subscription request or answer, tells the sender's session the stanza is
  // handled once the roster change it makes is durable (G1).
  void ClientPresence(AccountState& st, xmpp::SessionRef ref, xml::Element stanza, PresType type,
                      std::shared_ptr<OriginNotifier> done = nullptr);
  // Inbound presence for a local account, on its home.
  void InboundPresence(size_t home, const RoutedPtr& r);
  // A resource went away (unbind or conflict): unavailable to whoever saw it.
  void ResourceGone(AccountState& st, Resource gone);
  // Server-generated presence from `from` to `to` (local; remote ones skipped).
  void SendPresence(std::string from, std::string to, std::string xml, PresType type, size_t current);
  // The current presence of every available resource of `st`, to `to`.
  void SendAvailableTo(AccountState& st, const std::string& to);
  void SendUnavailableTo(AccountState& st, const std::string& to);
  // XEP-0077 §3.2 for a deleted account: ends every subscription in its
  // (loaded) roster from its side, as AccountRemoved explains.
  void CancelSubscriptions(AccountState& st);
  // Drops what `st` had loaded and marks the account missing
  // (AccountRemoved); the resources stay until their sessions unbind.
  void ForgetAccount(AccountState& st);
  // What AccountRemoved does on the account's home: cancels its
  // subscriptions, closes its sessions (all but `spare`, the one that asked)
  // and forgets it.
  void EndAccount(AccountState& st, std::optional<xmpp::SessionRef> spare);
  // Closes the account's sessions (all but `spare`) with <not-authorized/>.
  void EndSessions(const AccountState& st, std::optional<xmpp::SessionRef> spare);
  // A store write for `bare` found no such account: it was deleted behind
  // the server's back (`nines user del` on a running server). EndAccount on
  // its home. Any loop.
  void AccountGoneFromStore(std::string bare);

  // ---------------------------------------------------------------------
  // Offline (offline.cc)

  // What a message carries, for the storage rules of offline storage and
  // the archive (XEP-0334 hints, XEP-0085 chat states).
  struct MessageTraits {
    bool content = false;             // something a person would miss (see offline.cc)
    bool no_store = false;            // <no-store/>
    bool no_permanent_store = false;  // <no-permanent-store/>
    bool store_hint = false;          // <store/>
    bool no_copy = false;             // <no-copy/>
    bool carbons_private = false;     // XEP-0280 <private/>
    bool body = false;                // <body/>
    bool im_payload = false;          // receipts, chat markers or chat states (XEP-0280 §6)
  };
  // (archive.cc)
  static MessageTraits ClassifyMessage(const xml::Element& message);
  static bool OfflineEligible(const MessageTraits& traits, MsgType type);
  // Stores a message for an account with no resource to take it.
  void StoreOffline(AccountState& st, const RoutedPtr& r);
  // Delivers stored messages to `ref` (or the best available resources).
  // After a restore (`replayed_up_to` > 0), those whose archive id (their
  // <stanza-id/>) the replay gave to `ref` (Resource::Replayed) are not
  // sent, only deleted.
  void DeliverOffline(AccountState& st, xmpp::SessionRef ref, int64_t replayed_up_to = 0);
  void RegisterOffline();

  // ---------------------------------------------------------------------
  // Archive (archive.cc): XEP-0313 MAM, XEP-0359 stanza ids

  static bool ArchiveEligible(const MessageTraits& traits, MsgType type);
  // Replaces st.archive_policy from `prefs` (null for the defaults) and the
  // roster, and publishes it. On home.
  void SetArchivePolicy(AccountState& st, store::ArchivePrefs prefs);
  // The roster changed: a 'roster' policy takes a new snapshot, and
  // publishes it unless the caller publishes the account's settings itself.
  void RosterChangedForArchive(AccountState& st, bool publish = true);
  // A message for a local account, on its home: archived first if it should
  // be, then delivered (MessageToAccount) in arrival order with a
  // <stanza-id/>. Takes the place of MessageToAccount for new messages.
  void ArchiveThenDeliver(AccountState& st, const RoutedPtr& r);
  // Sends the Archive calls this loop made since the last time as one
  // Store::ArchiveMany (posted by the first of them, so it runs after the
  // handlers that were ready with it).
  void FlushArchiveCalls(size_t home);
  // Adds the store call for `wait` (its entries built from wait.r, for the
  // account wait.st) to that loop's list, posting FlushArchiveCalls if the
  // list was empty.
  void QueueArchiveCall(ArchiveWait wait);
  // The outcome of one of them: delivers (FlushOutbox), or bounces.
  void Archived(const ArchiveWait& wait, Result<store::ArchiveOutcome> outcome);
  // Delivers the outbox's leading entries whose archive write is done.
  void FlushOutbox(AccountState& st);
  // Retention (archive.retention_*), when an account loads.
  void ApplyRetention(AccountState& st);
  void RegisterArchive();
  // Queues serialised XML for a session (MAM results). Any loop.
  void SendToSession(xmpp::SessionRef ref, std::string xml);

  // ---------------------------------------------------------------------
  // Carbons (carbons.cc): XEP-0280

  static bool CarbonsEligible(const MessageTraits& traits, MsgType type);
  // <received/> copies of `r` for the account's carbons-enabled resources
  // other than those in `delivered` (on the recipient's home).
  void ReceivedCarbons(AccountState& st, const RoutedPtr& r, const std::vector<xmpp::SessionRef>& delivered);
  // <sent/> copies of `r` (as the client sent it) for the sender's other
  // carbons-enabled resources, with the sender's <stanza-id/> if archived
  // (archive_id != 0). Posts to the sender's home; `current` is the loop
  // this runs on (when it is the sender's home, a sender with nothing to
  // copy is seen to at once).
  void SentCarbons(const RoutedPtr& r, int64_t archive_id, size_t current);
  // A <received/> copy of `stanza` (serialised, jabber:client) for `to`, a
  // full JID of account `bare`; `chat`: the message is of type 'chat'.
  static std::string ReceivedCopy(std::string_view bare, std::string_view to, bool chat, std::string_view stanza);
  void RegisterCarbons();

  // ---------------------------------------------------------------------
  // Services (services.cc)
  void RegisterServices();

  // ---------------------------------------------------------------------
  // Push (push.cc): XEP-0357

  using PushOp = UniqueFunction<void(AccountState& st, bool ok)>;
  // Runs `op` once the account's registrations are loaded (at once if they
  // are); ok=false: the load failed and `st.pushes` is not to be trusted.
  void WithPushes(AccountState& st, PushOp op);
  // A message for the account was handled at its home (first routing only):
  // `delivered` are the sessions it went to, `offline`: it was put in
  // offline storage. Notifies each registered device that could not take
  // it itself: offline, detached or inactive.
  void MaybePush(AccountState& st, const RoutedPtr& r, std::span<const xmpp::SessionRef> delivered, bool offline);
  // The device bound as resource `name` is awake: its count starts again.
  static void PushSeen(AccountState& st, std::string_view name);
  // An IQ from a component that answers one of our notifications: handled
  // (true) or not one (false). A refusal removes the registration.
  bool HandlePushReply(const xml::Element& iq, const Config& config);
  void RegisterPush();

  // ---------------------------------------------------------------------
  // Blocking (blocking.cc): XEP-0191

  // Hands st.blocked and st.archive_policy to the loops of the account's
  // sessions (or only to `only`'s, if set). On home.
  void PublishSettings(AccountState& st, const xmpp::SessionRef* only = nullptr);
  // Forgets a session's entry: posted from home after it stopped being a
  // resource there, so it lands after any PublishSettings for it.
  void ForgetSettings(xmpp::SessionRef ref);
  // A stanza a session sends to a JID its account blocks: refused with
  // <not-acceptable/><blocked/> (requests and messages), or dropped. True
  // if it was one. On the session's loop.
  bool RefuseIfBlocked(xmpp::SessionRef ref, const xml::Element& stanza);
  void RegisterBlocking();

  // ---------------------------------------------------------------------
  // Private XML storage (private_storage.cc): XEP-0049
  void RegisterPrivateStorage();

  // External services (extdisco.cc): XEP-0215 STUN/TURN discovery
  void RegisterExternalServices();

  // ---------------------------------------------------------------------
  // Personal eventing (pep.cc): XEP-0163, XEP-0223, XEP-0060's PEP subset

  using PepOp = UniqueFunction<void(AccountState& st, bool ok)>;
  // Runs `op` once the account's node configurations are loaded (at once if
  // they are); ok=false: the load failed. On home.
  void WithPep(AccountState& st, PepOp op);
  void StartPepLoad(AccountState& st);  // WithPep's read of the node list
  // Whether `viewer` (a bare JID) may read `node` of `owner` (its access model).
  bool PepMayRead(const AccountState& owner, const store::PepNode& node, std::string_view viewer) const;
  // The owner's PEP writes, on home, with st.pep loaded. Each applies the
  // change to st.pep_nodes, stores it, and from the store's Reply runs
  // `done`, then notifies (PepNotify) those who may hear of it.
  using PepDone = UniqueFunction<void(AccountState& st, const Result<void>& r)>;
  void PepPublish(AccountState& st, store::PepNode node, store::PepItem item, PepDone done);
  // `items` replace all of the node's items; the ones that are new or
  // changed are notified, and the ones that went as retracted. `merge`, if
  // set, makes the payload to store from the stored one and the given one
  // for an id the node has (returning the stored one means "unchanged").
  using PepMerge = std::function<std::string(const std::string& stored, const std::string& given)>;
  void PepReplaceItems(AccountState& st, store::PepNode node, std::vector<store::PepItem> items, PepDone done,
                       PepMerge merge = {});
  void PepConfigure(AccountState& st, store::PepNode node, PepDone done);
  void PepRetract(AccountState& st, const std::string& node, std::vector<std::string> ids, bool notify,
                  UniqueFunction<void(AccountState&, Result<int64_t>)> done);
  void PepDelete(AccountState& st, const std::string& node, PepDone done);
  void PepPurge(AccountState& st, const std::string& node, PepDone done);
  // Sends <event/> (serialised, the whole element) about `node` to the
  // owner's resources and its contacts that may read it, where they +notify.
  void PepNotify(AccountState& st, const store::PepNode& node, std::string event);
  // A resource's available presence, on home: notes its XEP-0115 claim,
  // asks the client about an unknown hash, and sends the newest item of each
  // node it notifies of and did not with `before` (its caps until now).
  void NoteCaps(AccountState& st, Resource& res, const xml::Element& presence, CapsPtr before);
  // An IQ answer from a client to the server: true if it answers one of our
  // capability questions (then handled). The session's loop.
  bool HandleCapsReply(const xml::Element& iq, const xmpp::Jid& from, const Config& config);
  // The newest item of each of `nodes` from the account itself and every
  // contact it is subscribed to (or only from `only_owner`, a bare JID),
  // to `res`. On home.
  void SendLastItems(AccountState& st, Resource& res, std::vector<std::string> nodes,
                     std::string_view only_owner = {});
  // The account has just subscribed to `owner`'s presence: its resources
  // get `owner`'s last items (XEP-0163 §4.3.4, new subscribers). On home.
  void LastItemsForNewSubscription(AccountState& st, const std::string& owner);
  void PepDiscoItems(const IqCallPtr& call, AccountState& st);
  // Sends the disco#info question about `claim` (query id `id`) to the
  // resource `full`, through its home. Any loop.
  void AskCaps(const std::string& full, const CapsClaim& claim, const std::string& id);
  void PepDiscoNode(const IqCallPtr& call, AccountState& st);
  void RegisterPep();

  // XEP-0402 bookmarks (bookmarks.cc): XEP-0048 in private storage is a view
  // of the urn:xmpp:bookmarks:1 node. True if `key` (a private storage key)
  // is that of XEP-0048 bookmarks.
  static bool IsLegacyBookmarks(std::string_view key);
  // A private-storage get or set of <storage xmlns='storage:bookmarks'/>.
  void LegacyBookmarksGet(const IqCallPtr& call, AccountState& st, std::string empty);
  // Converts and stores the conferences of a legacy set; done(false): it
  // failed (the call is not answered yet); no call to done: answered here.
  void LegacyBookmarksSet(const IqCallPtr& call, AccountState& st, std::string xml, UniqueFunction<void(bool)> done);
  // Before a publish to `node`: if it is the XEP-0402 node and does not
  // exist yet, the account's legacy bookmarks go into it first. On home,
  // with the nodes loaded.
  void BeforeFirstBookmark(AccountState& st, const std::string& node, UniqueFunction<void(AccountState&)> then);
  void RegisterBookmarks();

  // XEP-0398 (avatars.cc): the owner published `item` to `node`; a new
  // avatar becomes the vCard's photo and the presence hash. On home.
  void AfterPepPublish(AccountState& st, const std::string& node, const store::PepItem& item);
  // A vCard was stored: its photo becomes the PEP avatar. On home.
  void AfterVCardSet(AccountState& st, const xml::Element& vcard);
  // XEP-0398's vCard side (avatars.cc): replaces the PHOTO, after any other
  // vCard write in flight (AccountState::vcard_writes).
  void SetVCardPhoto(AccountState& st, std::string hash, std::string base64, std::string type);
  // A vCard write has landed: the next waiting one may start.
  void AfterVCardWrite(AccountState& st);
  // XEP-0398 §4 / XEP-0153: the account's avatar hash into an available
  // presence the client sent, unless the client said otherwise.
  static void AddAvatarHash(const AccountState& st, xml::Element& presence);
  // Reads avatar_hash for an account loaded before it had a session. On home.
  void LoadAvatarHash(AccountState& st);
  void RegisterAvatars();

  // Ad-hoc commands (commands.cc): XEP-0050
  // The <item/>s of the server's commands node (disco#items), for `domain`.
  std::string CommandItems(std::string_view domain) const;
  static bool IsCommandNode(std::string_view node);
  void RegisterCommands();

 private:
  AccountState& FindOrCreate(size_t home, std::string_view bare);
  void StartLoad(AccountState& st);
  // StartLoad, once no store call of the account is in flight (busy == 0;
  // else MaybeEvict starts it when the last one lands). A reload after a
  // failed write must not read the store before the account's other writes
  // land: the read could miss them and the load would overwrite the cache
  // (a removed roster item, a block, archive preferences) with what they
  // replaced. Nothing new is issued meanwhile: work queues behind the load.
  void StartLoadWhenQuiet(AccountState& st) {
    if (st.busy == 0) StartLoad(st);
  }
  struct LoadResult;
  void FinishLoad(size_t home, const std::string& bare, LoadResult& result);

  // `external`: from a component (no ticket, no sender account here).
  bool ClientMessage(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza, const Config& config,
                     uint64_t ticket, bool external = false);
  // These two return true when the stanza's ticket is told done later
  // (xmpp::Hub::HandleStanza): an IQ set the server answers itself, once it
  // has answered (after any store write); a subscription, once the sender's
  // roster change is durable. No `ticket`: not counted (from a component).
  bool ClientIq(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza, const Config& config,
                std::optional<uint64_t> ticket);
  bool ClientPresenceEntry(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza,
                           const Config& config, uint64_t ticket);
  // Delivery at the recipient's home.
  void Inbound(size_t home, const RoutedPtr& r);
  void MessageToAccount(AccountState& st, const RoutedPtr& r, bool as_bare, xmpp::SessionRef exclude,
                        int hops);
  void Reroute(RoutedPtr r, xmpp::SessionRef gone, int hops);
  // What a session does with message `r` if it cannot deliver it: Reroute
  // with `hops`, from the stanza's text (the session keeps only that).
  xmpp::OnGone ReroutingOnGone(const Routed& r, int hops);
  void IqToFullJid(size_t home, const RoutedPtr& r);
  void SendToSessionError(xmpp::SessionRef ref, const xml::Element& stanza, std::string_view condition);

  // Presence internals (presence.cc).
  void BroadcastPresence(AccountState& st, Resource& res, xml::Element stanza, bool available);
  // Available presence, serialised without 'to' (BroadcastPresence's second
  // half, and a restore's). Offline delivery skips up to `replayed_up_to`.
  void BroadcastAvailable(AccountState& st, Resource& res, std::shared_ptr<const std::string> xml, int priority,
                          int64_t replayed_up_to = 0);
  // Bind's work on the home loop: the resource `name` (generated if empty)
  // for `ref`, taken over from another session if bound.
  Result<Resource*> BindResource(AccountState& st, xmpp::SessionRef ref, std::string name);
  // Restore's replay (restore.cc), once the account is loaded.
  void ReplayForRestore(AccountState& st, xmpp::SessionRef ref, xmpp::RestoredResource restored,
                        std::function<void(Result<xmpp::Jid>)> done);
  void DirectedPresence(AccountState& st, Resource& res, xml::Element stanza, bool available);
  void OutboundSubscription(AccountState& st, xmpp::SessionRef ref, xml::Element stanza, SubVerb verb,
                            std::shared_ptr<OriginNotifier> done);
  void InboundSubscription(AccountState& st, const RoutedPtr& r, SubVerb verb);
  void AnswerProbe(AccountState& st, const RoutedPtr& r);
  void FanOutToSubscribers(AccountState& st, const std::string& xml, PresType type, const std::string& from);

  net::LoopPool* loops_;
  store::Store* store_;
  const ConfigSource* config_;
  std::unique_ptr<SessionPort> owned_port_;
  SessionPort* port_;
  std::shared_ptr<std::atomic<SessionPort*>> port_cell_;  // for OriginNotifier; cleared by ~HubImpl
  std::vector<std::unique_ptr<Shard>> shards_;
  IqRegistry registry_;
  CapsCache caps_;  // XEP-0115, shared by all loops (it locks)

  // The Reply of a PEP write (pep.cc).
  template <class T, class Done>
  store::Reply<T> PepWriteReply(AccountState& st, Done done);
  void SendLastItemIfAllowed(const std::string& owner, const store::PepLastItem& last, std::string to,
                             std::string event);
};

}  // namespace nines::im
