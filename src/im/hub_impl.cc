#include "im/hub_impl.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "im/stanza_text.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::im {

namespace ns = xmpp::ns;
using Load = AccountState::Load;

MsgType ParseMsgType(std::string_view type) {
  if (type == "chat") return MsgType::kChat;
  if (type == "groupchat") return MsgType::kGroupchat;
  if (type == "headline") return MsgType::kHeadline;
  if (type == "error") return MsgType::kError;
  return MsgType::kNormal;
}

PresType ParsePresType(std::string_view type) {
  if (type.empty()) return PresType::kAvailable;
  if (type == "unavailable") return PresType::kUnavailable;
  if (type == "subscribe") return PresType::kSubscribe;
  if (type == "subscribed") return PresType::kSubscribed;
  if (type == "unsubscribe") return PresType::kUnsubscribe;
  if (type == "unsubscribed") return PresType::kUnsubscribed;
  if (type == "probe") return PresType::kProbe;
  if (type == "error") return PresType::kError;
  return PresType::kInvalid;
}

IqType ParseIqType(std::string_view type) {
  if (type == "get") return IqType::kGet;
  if (type == "set") return IqType::kSet;
  if (type == "result") return IqType::kResult;
  if (type == "error") return IqType::kError;
  return IqType::kInvalid;
}

namespace {

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kMessage:
      return "message";
    case Kind::kPresence:
      return "presence";
    case Kind::kIq:
      return "iq";
  }
  return "message";
}

bool IsErrorType(const Routed& r) {
  switch (r.kind) {
    case Kind::kMessage:
      return r.msg_type() == MsgType::kError;
    case Kind::kPresence:
      return r.pres_type() == PresType::kError;
    case Kind::kIq:
      return r.iq_type() == IqType::kError || r.iq_type() == IqType::kResult;
  }
  return true;
}

std::string ErrorXml(std::string_view kind, std::string_view from, std::string_view to, std::string_view id,
                     std::string_view condition, std::string_view text) {
  std::string out;
  out.reserve(192 + from.size() + to.size() + id.size() + text.size());
  out.push_back('<');
  out.append(kind);
  if (!from.empty()) AppendAttr(out, "from", from);
  if (!to.empty()) AppendAttr(out, "to", to);
  if (!id.empty()) AppendAttr(out, "id", id);
  out.append(" type='error'><error type='");
  out.append(xmpp::DefaultErrorType(condition));
  out.append("'><");
  out.append(condition);
  out.append(" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
  if (!text.empty()) {
    out.append("<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>");
    xml::AppendEscapedText(out, text);
    out.append("</text>");
  }
  out.append("</error></");
  out.append(kind);
  out.push_back('>');
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Construction

HubImpl::HubImpl(HubDeps deps)
    : loops_(deps.loops), store_(deps.store), config_(deps.config), port_(deps.port) {
  if (port_ == nullptr) {
    owned_port_ = MakeSessionsPort(deps.sessions);
    port_ = owned_port_.get();
  }
  port_cell_ = std::make_shared<std::atomic<SessionPort*>>(port_);
  auto snapshot = config_->Get();
  shards_.reserve(loops_->size());
  for (size_t i = 0; i < loops_->size(); ++i) {
    shards_.push_back(std::make_unique<Shard>());
    shards_.back()->config = snapshot;
    // Registered from the loop itself, so this works before or after Start().
    loop(i).Post([this, i] { loop(i).OnTick([this, i] { shards_[i]->config = config_->Get(); }); });
  }
  RegisterRoster();
  RegisterOffline();
  RegisterArchive();
  RegisterCarbons();
  RegisterServices();
  RegisterPush();
  RegisterBlocking();
  RegisterPrivateStorage();
  RegisterExternalServices();
  RegisterCommands();
  RegisterPep();
  RegisterBookmarks();
  RegisterAvatars();
}

HubImpl::~HubImpl() { port_cell_->store(nullptr, std::memory_order_release); }

// ---------------------------------------------------------------------------
// Accounts: lookup, loading, eviction

AccountState* HubImpl::FindAccount(size_t home, std::string_view bare) {
  auto& accounts = shard(home).accounts;
  auto it = accounts.find(bare);
  return it == accounts.end() ? nullptr : it->second.get();
}

AccountState& HubImpl::FindOrCreate(size_t home, std::string_view bare) {
  auto& accounts = shard(home).accounts;
  auto it = accounts.find(bare);
  if (it != accounts.end()) return *it->second;
  auto st = std::make_unique<AccountState>();
  st->bare = std::string(bare);
  st->user = std::string(SplitJid(bare).local);
  st->home = home;
  AccountState& ref = *st;
  accounts.emplace(st->bare, std::move(st));
  return ref;
}

void HubImpl::MaybeEvict(AccountState& st) {
  if (st.running == 0 && st.busy == 0 && st.load == Load::kNone &&
      (!st.queue.empty() || !st.outbox.empty())) {
    StartLoad(st);  // a reload that waited for the store calls in flight (StartLoadWhenQuiet)
    return;
  }
  if (st.running > 0 || !st.resources.empty() || !st.queue.empty() || st.busy > 0 ||
      st.load == Load::kLoading || st.offline_loading || !st.outbox.empty()) {
    return;
  }
  shard(st.home).accounts.erase(st.bare);
}

void HubImpl::PostToAccount(std::string bare, AccountOp op) {
  size_t home = HomeOf(bare);
  loop(home).Post([this, home, bare = std::move(bare), op = std::move(op)]() mutable {
    RunOnAccount(home, bare, std::move(op));
  });
}

struct HubImpl::LoadResult {
  int pending = 0;
  bool missing = false;
  bool failed = false;
  std::string error;
  store::Roster roster;
  int64_t offline_count = 0;
  std::vector<std::string> blocklist;
  store::ArchivePrefs archive_prefs;
  bool avatar_read = false;
  std::string avatar_hash;

  void Fail(const Error& e) {
    failed = true;
    error = e.message;
  }
};

void HubImpl::StartLoad(AccountState& st) {
  st.load = Load::kLoading;
  auto result = std::make_shared<LoadResult>();
  // A session's account reads its avatar hash instead of its existence;
  // one loaded only to take a stanza for nobody online needs neither.
  result->pending = 5;
  auto executor = loop(st.home).executor();
  auto part = [this, home = st.home, bare = st.bare, result] {
    if (--result->pending == 0) FinishLoad(home, bare, *result);
  };
  if (!st.known_to_exist) {
    store_->GetAccount(
        st.user, store::Reply<store::Account>(executor, [result, part](const Result<store::Account>& r) {
          if (!r.ok()) {
            if (r.error().code == Errc::kNotFound) {
              result->missing = true;
            } else {
              result->Fail(r.error());
            }
          }
          part();
        }));
  }
  store_->GetRoster(st.user, store::Reply<store::Roster>(executor, [result, part](Result<store::Roster> r) {
                      if (r.ok()) {
                        result->roster = std::move(r.value());
                      } else {
                        result->Fail(r.error());
                      }
                      part();
                    }));
  store_->GetBlocklist(st.user, store::Reply<std::vector<std::string>>(
                                    executor, [result, part](Result<std::vector<std::string>> r) {
                                      if (r.ok()) {
                                        result->blocklist = std::move(r.value());
                                      } else {
                                        result->Fail(r.error());
                                      }
                                      part();
                                    }));
  store_->GetArchivePrefs(st.user, store::Reply<store::ArchivePrefs>(
                                       executor, [result, part](Result<store::ArchivePrefs> r) {
                                         if (r.ok()) {
                                           result->archive_prefs = std::move(r.value());
                                         } else {
                                           result->Fail(r.error());
                                         }
                                         part();
                                       }));
  if (st.known_to_exist) {
    // XEP-0398 §4: the avatar's hash goes into the account's presence.
    result->avatar_read = true;
    store_->LastPepItems({st.user}, {std::string(kAvatarMetadata)}, {},
                         store::Reply<std::vector<store::PepLastItem>>(
                             executor, [result, part](Result<std::vector<store::PepLastItem>> r) {
                               if (r.ok()) {
                                 if (!r->empty()) result->avatar_hash = AvatarHashOf(r->front().item.xml);
                               } else {
                                 result->Fail(r.error());
                               }
                               part();
                             }));
  }
  store_->CountOffline(st.user, store::Reply<int64_t>(executor, [result, part](Result<int64_t> r) {
                         if (r.ok()) {
                           result->offline_count = *r;
                         } else {
                           result->Fail(r.error());
                         }
                         part();
                       }));
}

void HubImpl::FinishLoad(size_t home, const std::string& bare, LoadResult& result) {
  AccountState* st = FindAccount(home, bare);
  if (st == nullptr) return;  // cannot happen: a loading state is never evicted
  if (result.failed) {
    spdlog::warn("im: loading account {} failed: {}", bare, result.error);
    st->load = Load::kFailed;
  } else if (result.missing) {
    st->load = Load::kMissing;
    EndSessions(*st, std::nullopt);  // bound by a session that authenticated before the deletion
  } else {
    st->load = Load::kReady;
    st->roster.clear();
    st->roster.reserve(result.roster.items.size());
    for (auto& item : result.roster.items) {
      std::string key = item.jid;
      st->roster.emplace(std::move(key), std::move(item));
    }
    st->roster_version = result.roster.version;
    st->offline_count = result.offline_count;
    if (result.avatar_read) {
      st->avatar_hash = std::move(result.avatar_hash);
      st->avatar_known = true;
    }
    if (result.blocklist.empty()) {
      st->blocked.reset();
    } else {
      auto list = std::make_shared<BlockList>();
      list->jids.insert(result.blocklist.begin(), result.blocklist.end());
      st->blocked = std::move(list);
    }
    // Set without publishing; published once, with the block list, below.
    st->archive_policy.reset();
    const store::ArchivePrefs& prefs = result.archive_prefs;
    if (prefs.default_mode != "always" || !prefs.always.empty() || !prefs.never.empty()) {
      auto policy = std::make_shared<ArchivePolicy>();
      policy->prefs = prefs;
      st->archive_policy = std::move(policy);
      if (prefs.default_mode == "roster") RosterChangedForArchive(*st, /*publish=*/false);
    }
    if (st->HasSessionSettings()) PublishSettings(*st);
    if (!st->resources.empty()) ApplyRetention(*st);  // a login: trim the archive it will read
  }
  ++st->running;
  while (!st->queue.empty() && st->load != Load::kLoading && st->load != Load::kNone) {
    AccountOp op = std::move(st->queue.front());
    st->queue.pop_front();
    op(*st);
  }
  if (st->load != Load::kLoading && st->load != Load::kNone) FlushOutbox(*st);  // waited for this load
  if (st->load == Load::kFailed) st->load = Load::kNone;  // the next piece of work retries
  --st->running;
  MaybeEvict(*st);  // reloads, if work waits (a failed load)
}

// ---------------------------------------------------------------------------
// Bind / Unbind

void HubImpl::Bind(xmpp::SessionRef ref, const xmpp::Jid& bare, const std::string& requested,
                   std::function<void(Result<xmpp::Jid>)> done) {
  std::string key = bare.BareString();
  size_t home = HomeOf(key);
  loop(home).Post([this, ref, bare, requested, home, key = std::move(key), done = std::move(done)]() mutable {
    AccountState& st = FindOrCreate(home, key);
    // The session has just authenticated, so the account exists; unless it
    // was deleted since (ForgetAccount): then the load asks the store, and
    // ends the session if the account is still gone (FinishLoad).
    const auto& removed = shard(home).removed;
    auto gone = removed.find(key);
    const bool recently_removed = gone != removed.end() && loop(home).now_seconds() - gone->second <=
                                                               ConfigOn(home).limits.auth_timeout;
    if (st.load != Load::kMissing && !recently_removed) st.known_to_exist = true;
    ++st.running;
    Result<xmpp::Jid> result = MakeError(Errc::kInternal, "unset");
    auto bound = BindResource(st, ref, requested);
    if (!bound.ok()) {
      result = bound.error();
    } else {
      // Load the roster now: the client will ask for it right away. (An
      // account just created may still be cached as missing: look again.)
      if (st.load == Load::kMissing) st.load = Load::kNone;
      if (st.load == Load::kNone) StartLoadWhenQuiet(st);
      if (st.load == Load::kReady && !st.avatar_known) LoadAvatarHash(st);  // loaded without a session
      if (st.HasSessionSettings()) PublishSettings(st, &ref);  // lands before `done`: both go to ref's loop
      result = bare.WithResource((*bound)->name);
    }
    --st.running;
    MaybeEvict(st);
    loop(ref.loop).Post(
        [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
  });
}

Result<Resource*> HubImpl::BindResource(AccountState& st, xmpp::SessionRef ref, std::string name) {
  const Config& config = ConfigOn(st.home);
  if (name.empty()) {
    do {
      name = xmpp::RandomId(16);
    } while (st.FindByName(name) != nullptr);
  }
  auto existing = std::find_if(st.resources.begin(), st.resources.end(),
                               [&](const Resource& r) { return r.name == name; });
  if (existing == st.resources.end() &&
      static_cast<int64_t>(st.resources.size()) >= config.limits.resources_per_account) {
    return MakeError(Errc::kLimitExceeded, "too many resources bound for " + st.bare);
  }
  if (existing != st.resources.end()) {
    // RFC 6120 §7.7.2.2: the new session takes the resource over; the
    // old one is closed with <conflict/>. Its later Unbind finds no
    // resource with its ref and does nothing.
    Resource old = std::move(*existing);
    st.resources.erase(existing);
    port_->Kick(old.ref, "conflict", "replaced by a new session for the same resource");
    ForgetSettings(old.ref);
    if (old.available || !old.directed.empty()) ResourceGone(st, std::move(old));
  }
  Resource res;
  res.ref = ref;
  res.name = name;
  res.full = st.bare + "/" + name;
  st.resources.push_back(std::move(res));
  PushSeen(st, name);
  return &st.resources.back();
}

void HubImpl::Unbind(xmpp::SessionRef ref, const xmpp::Jid& full) {
  std::string key = full.BareString();
  size_t home = HomeOf(key);
  loop(home).Post([this, ref, home, key = std::move(key)] {
    AccountState* st = FindAccount(home, key);
    if (st == nullptr) return;
    auto it = std::find_if(st->resources.begin(), st->resources.end(),
                           [&](const Resource& r) { return r.ref == ref; });
    if (it == st->resources.end()) return;  // replaced by a newer session (conflict)
    Resource gone = std::move(*it);
    st->resources.erase(it);
    if (st->HasSessionSettings()) ForgetSettings(ref);
    ++st->running;
    if (gone.available || !gone.directed.empty()) ResourceGone(*st, std::move(gone));
    --st->running;
    MaybeEvict(*st);
  });
}

void HubImpl::AccountRemoved(xmpp::SessionRef by, const xmpp::Jid& bare) {
  std::string key = bare.BareString();
  size_t home = HomeOf(key);
  loop(home).Post([this, by, home, key = std::move(key)] {
    // `by` is bound, so the state is here and loaded, or loading with the
    // roster read issued before the delete (the store keeps call order):
    // RunOnAccount then waits for it.
    RunOnAccount(home, key, [this, by](AccountState& st) { EndAccount(st, by); });
  });
}

void HubImpl::EndAccount(AccountState& st, std::optional<xmpp::SessionRef> spare) {
  if (st.Ready()) CancelSubscriptions(st);
  EndSessions(st, spare);
  ForgetAccount(st);
}

void HubImpl::EndSessions(const AccountState& st, std::optional<xmpp::SessionRef> spare) {
  for (const Resource& res : st.resources) {
    if (!spare || !(res.ref == *spare)) port_->Kick(res.ref, "not-authorized", "the account has been removed");
  }
}

void HubImpl::AccountGoneFromStore(std::string bare) {
  spdlog::info("im: account {} no longer exists in the store; ending its sessions", bare);
  PostToAccount(std::move(bare), [this](AccountState& st) { EndAccount(st, std::nullopt); });
}

void HubImpl::ForgetAccount(AccountState& st) {
  // What the sessions' loops hold for their own outgoing checks goes too.
  if (st.HasSessionSettings()) {
    for (const Resource& res : st.resources) ForgetSettings(res.ref);
  }
  // Missing from now on: queued work is answered as for any missing account
  // (it would otherwise wait for a load nothing starts), and a later Bind of
  // the same name loads afresh. A load in flight decides for itself.
  if (st.load != Load::kLoading) {
    st.load = Load::kMissing;
    ++st.running;
    while (!st.queue.empty() && st.load == Load::kMissing) {
      AccountOp op = std::move(st.queue.front());
      st.queue.pop_front();
      op(st);
    }
    --st.running;
  }
  auto& removed = shard(st.home).removed;
  const int64_t now = loop(st.home).now_seconds();
  std::erase_if(
      removed, [&](const auto& entry) { return now - entry.second > ConfigOn(st.home).limits.auth_timeout; });
  removed[st.bare] = now;
  st.known_to_exist = false;
  st.roster.clear();
  st.roster_version = 0;
  st.blocked.reset();
  st.archive_policy.reset();
  st.avatar_hash.clear();
  st.avatar_known = false;
  st.offline_count = 0;
  st.presence_errors.clear();
  st.command_sessions.clear();
  // Loads in flight finish on their own; what they read is gone with the
  // account, and the next use of a new account of this name loads again.
  if (st.push_load == AccountState::PushLoad::kLoaded) {
    st.push_load = AccountState::PushLoad::kNone;
    st.pushes.clear();
  }
  if (st.pep_load == AccountState::PepLoad::kLoaded) {
    st.pep_load = AccountState::PepLoad::kNone;
    st.pep_nodes.clear();
  }
}

// ---------------------------------------------------------------------------
// Stanzas from sessions

bool HubImpl::HandleStanza(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza,
                           uint64_t ticket) {
  const Config& config = ConfigOn(ref.loop);
  if (RefuseIfBlocked(ref, stanza)) return false;  // XEP-0191: to a JID this account blocks
  const std::string& name = stanza.name();
  if (name == "message") {
    return ClientMessage(ref, from, std::move(stanza), config, ticket);
  } else if (name == "presence") {
    return ClientPresenceEntry(ref, from, std::move(stanza), config, ticket);
  } else if (name == "iq") {
    return ClientIq(ref, from, std::move(stanza), config, ticket);
  }
  return false;
}

void HubImpl::HandleFromComponent(xmpp::SessionRef ref, xml::Element stanza) {
  const Config& config = ConfigOn(ref.loop);
  auto from = xmpp::Jid::Parse(stanza.Attr("from"));  // ComponentSession checked it
  if (!from.ok()) return;
  const std::string& name = stanza.name();
  if (name == "message") {
    ClientMessage(ref, *from, std::move(stanza), config, 0, /*external=*/true);
  } else if (name == "presence") {
    // Straight to the addressee: a component has no presence state here.
    const PresType type = ParsePresType(stanza.Attr("type"));
    if (type == PresType::kInvalid) return;
    auto r = std::make_shared<Routed>();
    r->kind = Kind::kPresence;
    r->type = static_cast<uint8_t>(type);
    r->has_origin = true;
    r->external = true;
    r->origin = ref;
    r->from = std::string(stanza.Attr("from"));
    r->to = std::string(stanza.Attr("to"));
    r->id = std::string(stanza.Attr("id"));
    stanza.SerializeTo(r->xml, ns::kClient);
    Route(std::move(r), ref.loop, /*may_inline=*/true);
  } else if (name == "iq") {
    if (HandlePushReply(stanza, config)) return;
    ClientIq(ref, *from, std::move(stanza), config, std::nullopt);
  }
}

void HubImpl::SetAsleep(xmpp::SessionRef ref, const xmpp::Jid& full, bool asleep) {
  std::string key = full.BareString();
  size_t home = HomeOf(key);
  loop(home).Post([this, ref, home, key = std::move(key), asleep] {
    AccountState* st = FindAccount(home, key);
    Resource* res = st != nullptr ? st->FindByRef(ref) : nullptr;
    if (res == nullptr) return;  // unbound meanwhile
    res->asleep = asleep;
    if (!asleep) PushSeen(*st, res->name);
  });
}

bool HubImpl::ClientMessage(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza,
                            const Config& config, uint64_t ticket, bool external) {
  // RFC 6120 §10.3.1: a message without 'to' is for the sender's bare JID.
  if (!stanza.HasAttr("to")) stanza.SetAttr("to", from.BareString());
  auto r = std::make_shared<Routed>();
  r->kind = Kind::kMessage;
  MsgType type = ParseMsgType(stanza.Attr("type"));
  r->type = static_cast<uint8_t>(type);
  MessageTraits traits = ClassifyMessage(stanza);
  r->offline_ok = OfflineEligible(traits, type);
  r->archive_ok = ArchiveEligible(traits, type);
  r->carbons_ok = CarbonsEligible(traits, type);
  // XEP-0280 §7: <private/> is for the server; the recipient does not get it.
  if (traits.carbons_private) stanza.RemoveChildren("private", "urn:xmpp:carbons:2");
  // XEP-0359 §5: a stanza-id claiming to be ours is a forgery; drop them.
  bool forged = false;
  for (const xml::Element* child : stanza.Children()) {
    if (child->name() == "stanza-id" && child->ns() == "urn:xmpp:sid:0") {
      // Normalised, so that by='alice@LOCALHOST' is ours too.
      auto by = xmpp::Jid::Parse(child->Attr("by"));
      if (!by.ok() || by->domain() == config.domain) forged = true;
    } else if (child->name() == "origin-id" && child->ns() == "urn:xmpp:sid:0" && r->origin_id.empty()) {
      r->origin_id = std::string(child->Attr("id"));
    }
  }
  if (forged) stanza.RemoveChildren("stanza-id", "urn:xmpp:sid:0");
  if (!external) {
    auto& settings = shard(ref.loop).session_settings;
    if (!settings.empty()) {
      auto it = settings.find(ref.id);
      if (it != settings.end() && it->second.archive) {
        r->archive_out = it->second.archive->Archives(BareOf(stanza.Attr("to")));
      }
    }
  }
  r->has_origin = true;
  r->external = external;
  r->origin = ref;
  r->from = std::string(stanza.Attr("from"));
  r->to = std::string(stanza.Attr("to"));
  r->id = std::string(stanza.Attr("id"));
  r->xml.reserve(512);  // one allocation for a typical chat message instead of a growth series
  stanza.SerializeTo(r->xml, ns::kClient);
  // A message that will wait for an archive or offline write counts against
  // the session's limits.messages_in_flight until it is durable, handed to
  // the recipient's sessions, or refused; its XEP-0198 acknowledgement waits
  // as long (G1). A component has no such count: it is not told.
  const bool counted = !external && ((r->archive_ok && config.archive_enabled) || r->offline_ok);
  if (counted) r->done = std::make_shared<OriginNotifier>(port_cell_, ref, ticket);
  Route(std::move(r), ref.loop, /*may_inline=*/true);
  return counted;
}

void HubImpl::Route(RoutedPtr r, size_t current, bool may_inline) {
  const Config& config = ConfigOn(current);
  JidView to = SplitJid(r->to);
  if (to.domain != config.domain) {
    // An external component's domain (XEP-0114), if one is connected. A
    // component that goes away with the stanza still queued bounces it.
    std::function<void()> on_gone;
    if (r->kind != Kind::kIq || r->iq_type() == IqType::kGet || r->iq_type() == IqType::kSet) {
      on_gone = [this, r] { Bounce(*r, "service-unavailable"); };
    }
    if (port_->DeliverToDomain(to.domain, SharedXml(r), std::move(on_gone))) {
      r->done.reset();  // handed over: the sender may count it as handled
      return;
    }
    // Nor server-to-server yet (RFC 6120 §8.3.3.15).
    Bounce(*r, "remote-server-not-found");
    return;
  }
  if (to.local.empty()) {
    // The server itself (RFC 6120 §10.3): nothing is handled here but IQs,
    // which ClientIq dispatches before routing. Presence is ignored.
    if (r->kind == Kind::kPresence) return;
    if (r->kind == Kind::kMessage && r->msg_type() == MsgType::kHeadline) return;
    Bounce(*r, "service-unavailable");
    return;
  }
  size_t home = HomeOf(to.Bare());
  if (may_inline && home == current && loop(home).InLoop()) {
    Inbound(home, r);
    return;
  }
  loop(home).Post([this, home, r = std::move(r)] { Inbound(home, r); });
}

void HubImpl::Inbound(size_t home, const RoutedPtr& r) {
  switch (r->kind) {
    case Kind::kMessage: {
      std::string_view bare = BareOf(r->to);
      RunOnAccount(home, bare, [this, r](AccountState& st) { ArchiveThenDeliver(st, r); });
      return;
    }
    case Kind::kPresence:
      InboundPresence(home, r);
      return;
    case Kind::kIq:
      IqToFullJid(home, r);
      return;
  }
}

// RFC 6121 §8.5.2 / §8.5.3 for messages, on the recipient's home.
void HubImpl::MessageToAccount(AccountState& st, const RoutedPtr& r, bool as_bare, xmpp::SessionRef exclude,
                               int hops) {
  if (st.load == Load::kMissing) {
    Bounce(*r, "service-unavailable");  // §8.5.1
    return;
  }
  if (st.load != Load::kReady) {
    Bounce(*r, "internal-server-error");
    return;
  }
  const MsgType type = r->msg_type();
  const bool chat_or_normal = type == MsgType::kChat || type == MsgType::kNormal;
  JidView to = SplitJid(r->to);
  if (!as_bare && !to.IsBare()) {
    Resource* res = st.FindByName(to.resource);
    if (res != nullptr && !(res->ref == exclude)) {
      // §8.5.3.1: a connected resource that matches gets it whatever it is.
      xmpp::OnGone on_gone;
      if (chat_or_normal) on_gone = ReroutingOnGone(*r, hops + 1);
      xmpp::SessionRef target = res->ref;
      DeliverTo(*res, SharedXml(r), std::move(on_gone), hops == 0 ? r->archive_id : 0);
      r->done.reset();  // handed over: the sender may count it as handled
      if (hops == 0) {
        ReceivedCarbons(st, r, {target});
        MaybePush(st, r, {&target, 1}, false);
      }
      return;
    }
    // §8.5.3.2.1: no such resource.
    if (type == MsgType::kGroupchat) {
      Bounce(*r, "service-unavailable");
      return;
    }
    if (!chat_or_normal) return;  // headline, error: ignored
    // chat and normal: as if to the bare JID.
  }
  switch (type) {
    case MsgType::kError:
      return;
    case MsgType::kGroupchat:
      Bounce(*r, "service-unavailable");  // §8.5.2.1.1
      return;
    case MsgType::kHeadline: {
      auto xml = SharedXml(r);
      for (const auto& res : st.resources) {
        if (res.available && res.priority >= 0 && !(res.ref == exclude)) DeliverTo(res, xml);
      }
      return;
    }
    case MsgType::kChat:
    case MsgType::kNormal:
      break;
  }
  // The "most available" resources: those with the highest non-negative
  // priority. Negative priority never gets bare-JID messages (§8.5.2.1.1).
  int best = -1;
  int count = 0;
  for (const auto& res : st.resources) {
    if (!res.available || res.priority < 0 || res.ref == exclude) continue;
    if (res.priority > best) {
      best = res.priority;
      count = 1;
    } else if (res.priority == best) {
      ++count;
    }
  }
  if (count == 0) {
    StoreOffline(st, r);
    if (hops == 0) MaybePush(st, r, {}, true);
    return;
  }
  auto xml = SharedXml(r);
  std::vector<xmpp::SessionRef> delivered;
  for (const auto& res : st.resources) {
    if (!res.available || res.priority != best || res.ref == exclude) continue;
    xmpp::OnGone on_gone;
    // With one target a racing logout would lose the message: send it round
    // again. With several, the others have it.
    if (count == 1) on_gone = ReroutingOnGone(*r, hops + 1);
    // Rerouted copies arrive out of order: only first deliveries move a
    // resumption cursor (SessionPort::Deliver).
    DeliverTo(res, xml, std::move(on_gone), hops == 0 ? r->archive_id : 0);
    delivered.push_back(res.ref);
  }
  r->done.reset();  // handed over: the sender may count it as handled
  if (hops == 0) {
    ReceivedCarbons(st, r, delivered);
    MaybePush(st, r, delivered, false);
  }
}

void HubImpl::Reroute(RoutedPtr r, xmpp::SessionRef gone, int hops) {
  std::string bare(BareOf(r->to));
  size_t home = HomeOf(bare);
  loop(home).Post([this, home, bare = std::move(bare), r = std::move(r), gone, hops]() mutable {
    RunOnAccount(home, bare, [this, r = std::move(r), gone, hops](AccountState& st) {
      if (hops > 4) {
        // The sessions keep vanishing under us: keep it for later.
        if (st.Ready()) StoreOffline(st, r);
        return;
      }
      MessageToAccount(st, r, true, gone, hops);
    });
  });
}

xmpp::OnGone HubImpl::ReroutingOnGone(const Routed& r, int hops) {
  xmpp::RerouteInfo info;
  info.origin_id = r.origin.id;
  info.origin_loop = r.origin.loop;
  info.has_origin = r.has_origin;
  info.external = r.external;
  info.offline_ok = r.offline_ok;
  info.type = r.type;
  info.hops = static_cast<uint8_t>(std::min(hops, 255));
  info.stamp_ms = r.stamp_ms;
  return xmpp::OnGone(this, info);
}

void HubImpl::RerouteText(xmpp::SessionRef gone, std::string_view xml, const xmpp::RerouteInfo& info) {
  // Only messages get here (ReroutingOnGone), with the text a session was
  // given, which this server serialised: from, to and id are read back from
  // its root's start tag (not a parse of the whole stanza, which would be
  // held to other limits than the stream that took it, and cost more for a
  // session ending with thousands unacknowledged). What the text does not
  // say (the sender's session, first receipt) came along in `info`. Fields
  // a reroute does not use (archive and carbon eligibility, origin-id) stay
  // unset: a rerouted message is never archived or carbon-copied again.
  auto to = RootAttrText(xml, "to");
  if (!to) {
    spdlog::error("im: a message to reroute from session {} has no readable 'to'; dropped: {}", gone.id,
                  xml.substr(0, 200));
    return;
  }
  auto r = std::make_shared<Routed>();
  r->kind = Kind::kMessage;
  r->type = info.type;
  r->offline_ok = info.offline_ok;
  r->has_origin = info.has_origin;
  r->external = info.external;
  r->origin = xmpp::SessionRef{info.origin_loop, info.origin_id};
  r->stamp_ms = info.stamp_ms;
  r->from = RootAttrText(xml, "from").value_or("");
  r->to = std::move(*to);
  r->id = RootAttrText(xml, "id").value_or("");
  r->xml = std::string(xml);
  Reroute(std::move(r), gone, info.hops);
}

void HubImpl::IqToFullJid(size_t home, const RoutedPtr& r) {
  JidView to = SplitJid(r->to);
  const bool request = r->iq_type() == IqType::kGet || r->iq_type() == IqType::kSet;
  AccountState* st = FindAccount(home, to.Bare());
  Resource* res = st != nullptr && !st->Blocks(r->from) ? st->FindByName(to.resource) : nullptr;
  if (res == nullptr) {
    // RFC 6121 §8.5.3.2.3 (and §8.5.1 for no such account).
    if (request) Bounce(*r, "service-unavailable");
    return;
  }
  std::function<void()> on_gone;
  if (request) on_gone = [this, r] { Bounce(*r, "service-unavailable"); };
  DeliverTo(*res, SharedXml(r), std::move(on_gone));
}

// ---------------------------------------------------------------------------
// IQs

bool HubImpl::ClientIq(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza, const Config& config,
                       std::optional<uint64_t> ticket) {
  const IqType type = ParseIqType(stanza.Attr("type"));
  if (type == IqType::kInvalid) return false;  // the session answers malformed IQs
  const bool request = type == IqType::kGet || type == IqType::kSet;
  std::string own_bare = from.BareString();
  Scope scope = kScopeSelf;
  std::string account;
  if (const std::string* to_attr = stanza.FindAttr("to")) {
    JidView to = SplitJid(*to_attr);
    if (to.domain == config.domain && to.local.empty()) {
      if (!to.IsBare()) {
        if (request) SendToSessionError(ref, stanza, "service-unavailable");
        return false;
      }
      scope = kScopeServer;
    } else if (to.domain != config.domain || !to.IsBare()) {
      // To a resource (RFC 6121 §8.5.3), or elsewhere (Route finds a
      // component serving it, or bounces): deliver it.
      auto r = std::make_shared<Routed>();
      r->kind = Kind::kIq;
      r->type = static_cast<uint8_t>(type);
      r->has_origin = true;
      r->origin = ref;
      r->from = std::string(stanza.Attr("from"));
      r->to = *to_attr;
      r->id = std::string(stanza.Attr("id"));
      stanza.SerializeTo(r->xml, ns::kClient);
      Route(std::move(r), ref.loop, /*may_inline=*/true);
      return false;
    } else if (to.Bare() == own_bare) {
      scope = kScopeSelf;
    } else {
      scope = kScopeAccount;
      account = std::string(to.Bare());
    }
  }
  if (!request) {
    // XEP-0115: a client answering the server's question about its capabilities.
    if (scope == kScopeServer) HandleCapsReply(stanza, from, config);
    return false;  // other results and errors for the server or a bare JID: nobody waits for them
  }
  if (scope == kScopeSelf) account = own_bare;

  std::vector<const xml::Element*> children = stanza.Children();
  if (children.size() != 1) {
    SendToSessionError(ref, stanza, "bad-request");
    return false;
  }
  const IqHandler* handler = registry_.Find(children.front()->ns(), type == IqType::kSet, scope, config);
  if (handler == nullptr) {
    // RFC 6120 §8.4: a namespace nobody here understands.
    SendToSessionError(ref, stanza, "service-unavailable");
    return false;
  }
  auto call = std::make_shared<IqCall>();
  call->iq = std::move(stanza);
  call->origin = ref;
  call->from = from.Full();
  call->account = std::move(account);
  call->scope = scope;
  // An IQ set usually changes something in the store, and the handler
  // answers once that write has landed (or failed). Its XEP-0198 count waits
  // as long: until the last holder of the call lets go, after the answer
  // (G1). A get changes nothing: handled at once.
  const bool counted = ticket.has_value() && type == IqType::kSet;
  if (counted) call->done = std::make_shared<OriginNotifier>(port_cell_, ref, *ticket);
  if (scope == kScopeServer) {
    handler->fn(*this, call, nullptr);
    return counted;
  }
  std::string target = call->account;
  PostToAccount(std::move(target), [this, call, handler](AccountState& st) {
    if (st.load == Load::kMissing) {
      ReplyError(*call, "service-unavailable");  // §8.5.1
      return;
    }
    if (st.load != Load::kReady) {
      ReplyError(*call, "internal-server-error");
      return;
    }
    if (call->scope == kScopeAccount && st.Blocks(call->from)) {
      ReplyError(*call, "service-unavailable");  // XEP-0191 §3.3: as if it were not there
      return;
    }
    handler->fn(*this, call, &st);
  });
  return counted;
}

void HubImpl::SendToSessionError(xmpp::SessionRef ref, const xml::Element& stanza,
                                 std::string_view condition) {
  xml::Element reply = xmpp::MakeErrorReply(stanza, xmpp::DefaultErrorType(condition), condition);
  port_->Deliver(ref, std::make_shared<const std::string>(reply.Serialize(ns::kClient)), {});
}

void HubImpl::ReplyResult(const IqCall& call, std::string_view inner_xml) {
  std::string out;
  out.reserve(96 + call.from.size() + inner_xml.size());
  out.append("<iq type='result'");
  if (const std::string* id = call.iq.FindAttr("id")) AppendAttr(out, "id", *id);
  AppendAttr(out, "to", call.from);
  if (const std::string* to = call.iq.FindAttr("to")) AppendAttr(out, "from", *to);
  if (inner_xml.empty()) {
    out.append("/>");
  } else {
    out.push_back('>');
    out.append(inner_xml);
    out.append("</iq>");
  }
  port_->Deliver(call.origin, std::make_shared<const std::string>(std::move(out)), {});
}

void HubImpl::ReplyStanza(const IqCall& call, const xml::Element& reply) {
  port_->Deliver(call.origin, std::make_shared<const std::string>(reply.Serialize(ns::kClient)), {});
}

void HubImpl::ReplyError(const IqCall& call, std::string_view condition, std::string_view text) {
  xml::Element reply = xmpp::MakeErrorReply(call.iq, xmpp::DefaultErrorType(condition), condition, text);
  port_->Deliver(call.origin, std::make_shared<const std::string>(reply.Serialize(ns::kClient)), {});
}

// ---------------------------------------------------------------------------
// Presence entry: everything goes to the sender's home first.

bool HubImpl::ClientPresenceEntry(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza,
                                  const Config& config, uint64_t ticket) {
  PresType type = ParsePresType(stanza.Attr("type"));
  if (type == PresType::kInvalid) {
    SendToSessionError(ref, stanza, "bad-request");
    return false;
  }
  if (type == PresType::kProbe) return false;  // probes are the server's business (RFC 6121 §4.3)
  if (type == PresType::kError) {
    // An error answering someone's presence: pass it on.
    if (!stanza.HasAttr("to")) return false;
    auto r = std::make_shared<Routed>();
    r->kind = Kind::kPresence;
    r->type = static_cast<uint8_t>(type);
    r->from = std::string(stanza.Attr("from"));
    r->to = std::string(stanza.Attr("to"));
    r->id = std::string(stanza.Attr("id"));
    stanza.SerializeTo(r->xml, ns::kClient);
    Route(std::move(r), ref.loop, /*may_inline=*/true);
    return false;
  }
  // A subscription request or answer changes the sender's roster: its
  // XEP-0198 count waits until that write is durable (G1).
  const bool counted = type == PresType::kSubscribe || type == PresType::kSubscribed ||
                       type == PresType::kUnsubscribe || type == PresType::kUnsubscribed;
  std::shared_ptr<OriginNotifier> done;
  if (counted) done = std::make_shared<OriginNotifier>(port_cell_, ref, ticket);
  std::string bare = from.BareString();
  size_t home = HomeOf(bare);
  auto op = [this, ref, type, stanza = std::move(stanza), done = std::move(done)](AccountState& st) mutable {
    ClientPresence(st, ref, std::move(stanza), type, std::move(done));
  };
  if (home == ref.loop && loop(home).InLoop()) {
    RunOnAccount(home, bare, std::move(op));
    return counted;
  }
  loop(home).Post([this, home, bare = std::move(bare), op = std::move(op)]() mutable {
    RunOnAccount(home, bare, std::move(op));
  });
  return counted;
}

// ---------------------------------------------------------------------------
// Delivery helpers

void HubImpl::DeliverTo(const Resource& resource, std::shared_ptr<const std::string> xml,
                        xmpp::OnGone on_gone, int64_t archive_id) {
  if (resource.Replayed(archive_id)) return;  // replayed already
  port_->Deliver(resource.ref, std::move(xml), std::move(on_gone), archive_id);
}

void HubImpl::DeliverToAvailable(AccountState& st, const std::shared_ptr<const std::string>& xml) {
  for (const auto& res : st.resources) {
    if (res.available) DeliverTo(res, xml);
  }
}

RoutedPtr HubImpl::MakeServerStanza(Kind kind, uint8_t type, std::string from, std::string to,
                                    std::string xml) {
  auto r = std::make_shared<Routed>();
  r->kind = kind;
  r->type = type;
  r->from = std::move(from);
  r->to = std::move(to);
  r->xml = std::move(xml);
  return r;
}

void HubImpl::Bounce(const Routed& r, std::string_view condition, std::string_view text) {
  if (!r.has_origin || IsErrorType(r)) return;
  if (r.kind == Kind::kPresence && r.pres_type() != PresType::kSubscribe &&
      r.pres_type() != PresType::kSubscribed && r.pres_type() != PresType::kUnsubscribe &&
      r.pres_type() != PresType::kUnsubscribed && r.pres_type() != PresType::kAvailable &&
      r.pres_type() != PresType::kUnavailable) {
    return;
  }
  port_->Deliver(
      r.origin,
      std::make_shared<const std::string>(ErrorXml(KindName(r.kind), r.to, r.from, r.id, condition, text)),
      {});
}

}  // namespace nines::im
