// Restoring a resource for a session resumed from the store (XEP-0198
// resumption after the process that held the session went away; see
// xmpp::Hub::Restore and docs/architecture.md, "Resumption from the store").
//
// The session's device state says where its client had got to in the
// archive (the cursor). On the account's home loop the resource is bound
// again, the archive after the cursor is read, and what this resource would
// have been given is delivered to it, oldest first. While that read is in
// flight the account's outbox holds newer messages back (FlushOutbox waits
// for `replaying`), so nothing overtakes the replay; afterwards the
// resource's `replayed` ids make DeliverTo skip any message the replay
// already gave it (only those: one it left out may still come). Archive
// ids follow commit order, so every message committed after the read's
// snapshot has a larger id than all it returned: the replay and the live
// stream meet without a gap or an overlap. Then the stored presence is
// broadcast again as initial presence; its offline delivery leaves out the
// messages the replay gave.

#include <spdlog/spdlog.h>

#include <algorithm>

#include "im/hub_impl.h"
#include "im/stanza_text.h"

namespace nines::im {

void HubImpl::Restore(xmpp::SessionRef ref, const xmpp::Jid& bare, xmpp::RestoredResource restored,
                      std::function<void(Result<xmpp::Jid>)> done) {
  std::string key = bare.BareString();
  size_t home = HomeOf(key);
  loop(home).Post([this, ref, home, key = std::move(key), restored = std::move(restored),
                   done = std::move(done)]() mutable {
    RunOnAccount(home, key,
                 [this, ref, restored = std::move(restored), done = std::move(done)](AccountState& st) mutable {
                   ReplayForRestore(st, ref, std::move(restored), std::move(done));
                 });
  });
}

void HubImpl::ReplayForRestore(AccountState& st, xmpp::SessionRef ref, xmpp::RestoredResource restored,
                               std::function<void(Result<xmpp::Jid>)> done) {
  auto answer = [this, ref](std::function<void(Result<xmpp::Jid>)> done, Result<xmpp::Jid> result) {
    loop(ref.loop).Post(
        [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
  };
  if (st.load == AccountState::Load::kMissing) {
    answer(std::move(done), MakeError(Errc::kNotFound, "no account " + st.bare));
    return;
  }
  if (!st.Ready()) {
    answer(std::move(done), MakeError(Errc::kUnavailable, "the account could not be loaded"));
    return;
  }
  auto bound = BindResource(st, ref, restored.resource);
  if (!bound.ok()) {
    answer(std::move(done), bound.error());
    return;
  }
  (*bound)->carbons = restored.carbons;
  (*bound)->interested = restored.roster_requested;
  store::ArchiveQuery query;
  query.after_id = restored.cursor;
  query.max = restored.max_replay + 1;
  ++st.replaying;
  ++st.busy;
  store_->QueryArchive(
      st.user, std::move(query),
      store::Reply<store::ArchivePage>(
          loop(st.home).executor(), [this, home = st.home, bare = st.bare, ref, restored = std::move(restored),
                                     done = std::move(done), answer](Result<store::ArchivePage> page) mutable {
            AccountState* st = FindAccount(home, bare);
            if (st == nullptr) return;  // cannot happen: busy > 0 keeps the state
            --st->busy;
            --st->replaying;
            ++st->running;
            Result<xmpp::Jid> result = MakeError(Errc::kUnavailable, "the resource was taken over meanwhile");
            auto drop = [&] {
              std::erase_if(st->resources, [&](const Resource& r) { return r.ref == ref; });
            };
            Resource* res = st->FindByRef(ref);
            if (res == nullptr) {
              // Replaced by a newer session: result stays kUnavailable.
            } else if (!page.ok()) {
              spdlog::warn("im: replaying the archive to {} failed: {}", res->full, page.error().message);
              result = page.error();
              drop();
            } else if (static_cast<int64_t>(page->messages.size()) > restored.max_replay) {
              result = MakeError(Errc::kLimitExceeded, "more than " + std::to_string(restored.max_replay) +
                                                           " messages to replay");
              drop();
            } else {
              const Config& config = ConfigOn(home);
              std::string own, to_bare;
              AppendAttr(own, "to", res->full);
              AppendAttr(to_bare, "to", st->bare);
              int64_t last = restored.cursor;
              size_t replayed = 0;
              res->replayed.clear();
              for (const auto& m : page->messages) {
                last = std::max(last, m.id);
                if (m.outgoing) continue;  // sent carbons are not replayed: MAM has them
                auto to = RootAttr(m.stanza, "to");
                if (!to) continue;
                // Compared in their serialised form (" to='...'").
                const bool for_us = own.compare(5, own.size() - 6, *to) == 0;
                const bool for_bare = to_bare.compare(5, to_bare.size() - 6, *to) == 0;
                if (!for_us && !(for_bare && restored.priority >= 0) && !restored.carbons) continue;
                std::string xml = WithStanzaId(m.stanza, st->bare, m.id);
                AppendChildXml(xml, DelayXml(config.domain, m.stamp_ms));
                if (!for_us && !(for_bare && restored.priority >= 0)) {
                  // A received carbon: the message itself went elsewhere.
                  xml = ReceivedCopy(st->bare, res->full, RootAttr(m.stanza, "type") == "chat", xml);
                  DeliverTo(*res, std::make_shared<const std::string>(std::move(xml)), {}, m.id);
                } else {
                  // If the client never acknowledges it, it is rerouted as a
                  // live delivery would be (another resource, else offline
                  // storage), not lost to a client without MAM.
                  auto r = std::make_shared<Routed>();
                  r->kind = Kind::kMessage;
                  r->type = static_cast<uint8_t>(ParseMsgType(RootAttr(m.stanza, "type").value_or("")));
                  r->offline_ok = true;
                  r->stamp_ms = m.stamp_ms;  // with the delay stamp in `xml`, which offline storage takes off
                  r->from = std::string(RootAttr(m.stanza, "from").value_or(""));
                  r->to = for_us ? res->full : st->bare;
                  r->xml = std::move(xml);
                  DeliverTo(
                      *res, SharedXml(r), [this, r, gone = res->ref] { Reroute(r, gone, 1); }, m.id);
                }
                res->replayed.push_back(m.id);
                ++replayed;
              }
              std::sort(res->replayed.begin(), res->replayed.end());
              res->replayed_up_to = last;
              spdlog::debug("im: {} restored; {} archived messages replayed after {}", res->full, replayed,
                            restored.cursor);
              auto jid = xmpp::Jid::Parse(res->full);
              result = jid.ok() ? Result<xmpp::Jid>(std::move(jid).value()) : Result<xmpp::Jid>(jid.error());
              if (!restored.presence.empty()) {
                // XEP-0115: the stored presence still says what the device
                // wants PEP events of.
                std::optional<xml::Element> presence = ParseElement(restored.presence);
                BroadcastAvailable(*st, *res, std::make_shared<const std::string>(std::move(restored.presence)),
                                   restored.priority, last);
                if (presence) NoteCaps(*st, *res, *presence, nullptr);
              }
            }
            FlushOutbox(*st);
            answer(std::move(done), std::move(result));
            --st->running;
            MaybeEvict(*st);
          }));
}

}  // namespace nines::im
