#include "xmpp/sessions.h"

#include <mutex>

#include "xmpp/c2s_session.h"
#include "xmpp/component_session.h"

namespace nines::xmpp {

Sessions::Sessions(net::LoopPool& loops) : loops_(loops), tables_(loops.size()), components_(loops.size()) {}

void Sessions::Deliver(SessionRef ref, std::shared_ptr<const std::string> xml, OnGone on_gone,
                       int64_t archive_id) {
  auto& loop = loops_.loop(ref.loop);
  auto run = [this, ref, xml = std::move(xml), on_gone = std::move(on_gone), archive_id]() mutable {
    if (C2sSession* s = Find(ref)) {
      s->SendStanza(std::move(xml), std::move(on_gone), archive_id);
    } else if (ComponentSession* c = FindComponent(ref)) {
      c->SendStanza(*xml);
    } else if (on_gone) {
      on_gone.Run(ref, *xml);
    }
  };
  if (loop.InLoop()) {
    run();
  } else {
    loop.Post(std::move(run));
  }
}

void Sessions::Kick(SessionRef ref, std::string condition, std::string text) {
  loops_.loop(ref.loop).Post([this, ref, condition = std::move(condition), text = std::move(text)] {
    if (C2sSession* s = Find(ref)) {
      s->CloseWithStreamError(condition, text);
    } else if (ComponentSession* c = FindComponent(ref)) {
      c->CloseWithStreamError(condition, text);
    }
  });
}

void Sessions::StanzaDone(SessionRef ref, uint64_t ticket) {
  loops_.loop(ref.loop).Post([this, ref, ticket] {
    if (C2sSession* s = Find(ref)) s->StanzaDone(ticket);
  });
}

void Sessions::With(SessionRef ref, std::function<void(C2sSession&)> fn, std::function<void()> on_gone) {
  loops_.loop(ref.loop).Post([this, ref, fn = std::move(fn), on_gone = std::move(on_gone)] {
    if (C2sSession* s = Find(ref)) {
      fn(*s);
    } else if (on_gone) {
      on_gone();
    }
  });
}

void Sessions::Add(SessionRef ref, C2sSession* session) { tables_[ref.loop][ref.id] = session; }

void Sessions::Remove(SessionRef ref) { tables_[ref.loop].erase(ref.id); }

C2sSession* Sessions::Find(SessionRef ref) {
  auto& table = tables_[ref.loop];
  auto it = table.find(ref.id);
  return it == table.end() ? nullptr : it->second;
}

std::vector<C2sSession*> Sessions::AllOnLoop(size_t loop) const {
  std::vector<C2sSession*> out;
  out.reserve(tables_[loop].size());
  for (auto& [id, s] : tables_[loop]) out.push_back(s);
  return out;
}

void Sessions::AddComponent(SessionRef ref, ComponentSession* session) { components_[ref.loop][ref.id] = session; }

void Sessions::RemoveComponent(SessionRef ref) { components_[ref.loop].erase(ref.id); }

ComponentSession* Sessions::FindComponent(SessionRef ref) {
  auto& table = components_[ref.loop];
  auto it = table.find(ref.id);
  return it == table.end() ? nullptr : it->second;
}

std::vector<ComponentSession*> Sessions::AllComponentsOnLoop(size_t loop) const {
  std::vector<ComponentSession*> out;
  for (auto& [id, c] : components_[loop]) out.push_back(c);
  return out;
}

bool Sessions::ClaimDomain(const std::string& domain, SessionRef ref) {
  std::unique_lock lock(domains_mutex_);
  return domains_.try_emplace(domain, ref).second;
}

void Sessions::ReleaseDomain(const std::string& domain, SessionRef ref) {
  std::unique_lock lock(domains_mutex_);
  auto it = domains_.find(domain);
  if (it != domains_.end() && it->second == ref) domains_.erase(it);
}

std::optional<SessionRef> Sessions::FindDomain(std::string_view domain) const {
  std::shared_lock lock(domains_mutex_);
  auto it = domains_.find(std::string(domain));
  if (it == domains_.end()) return std::nullopt;
  return it->second;
}

bool Sessions::DeliverToDomain(std::string_view domain, std::shared_ptr<const std::string> xml,
                               std::function<void()> on_gone) {
  auto ref = FindDomain(domain);
  if (!ref) return false;
  Deliver(*ref, std::move(xml), std::move(on_gone));
  return true;
}

}  // namespace nines::xmpp
