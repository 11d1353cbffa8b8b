// Sessions: the per-loop tables of live client and component sessions, and
// delivery to them.
//
// Each loop has its own tables (id -> session), touched only on that loop, so
// lookups take no lock. Deliver() posts the bytes to the session's loop.
// External components (XEP-0114) are also found by the domain they serve:
// that table is shared by all loops and changes only when a component
// authenticates or goes, so it sits behind a reader-writer lock.
//
// Thread safety: Deliver/Kick/DeliverToDomain/ClaimDomain/ReleaseDomain may
// be called from any thread. Add/Remove only on the session's own loop.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net/loop_pool.h"
#include "xmpp/on_gone.h"
#include "xmpp/session_ref.h"

namespace nines::xmpp {

class C2sSession;
class ComponentSession;

class Sessions {
 public:
  explicit Sessions(net::LoopPool& loops);

  // Posts `xml` (one serialised stanza) to the session. If the session no
  // longer exists when the post runs, `on_gone` (if set) runs on that loop.
  // A session with XEP-0198 enabled keeps `on_gone` until its client
  // acknowledges the stanza, and runs it if the session ends first.
  // `archive_id`: see im::SessionPort::Deliver.
  void Deliver(SessionRef ref, std::shared_ptr<const std::string> xml, OnGone on_gone = {},
               int64_t archive_id = 0);

  // Closes the session with a stream error condition (e.g. "conflict").
  void Kick(SessionRef ref, std::string condition, std::string text = {});

  // C2sSession::StanzaDone(ticket) on the session's loop, if it still
  // exists. Once per message, so no std::function on the way.
  void StanzaDone(SessionRef ref, uint64_t ticket);

  // Runs `fn(session)` on the session's loop if it still exists, else
  // `on_gone` (if set) on that loop.
  void With(SessionRef ref, std::function<void(C2sSession&)> fn, std::function<void()> on_gone = {});

  // Loop-local table access (loop thread only).
  void Add(SessionRef ref, C2sSession* session);
  void Remove(SessionRef ref);
  C2sSession* Find(SessionRef ref);
  // Client and component sessions on `loop` (loop thread only).
  size_t CountOnLoop(size_t loop) const { return tables_[loop].size() + components_[loop].size(); }
  // Every session on `loop` (loop thread only), e.g. for shutdown and ticks.
  std::vector<C2sSession*> AllOnLoop(size_t loop) const;

  // External components (XEP-0114). Deliver() reaches them too.
  void AddComponent(SessionRef ref, ComponentSession* session);
  void RemoveComponent(SessionRef ref);
  std::vector<ComponentSession*> AllComponentsOnLoop(size_t loop) const;
  // Makes `ref` the route for `domain`; false if another session holds it.
  bool ClaimDomain(const std::string& domain, SessionRef ref);
  void ReleaseDomain(const std::string& domain, SessionRef ref);
  std::optional<SessionRef> FindDomain(std::string_view domain) const;
  // Deliver() to the component serving `domain`; false (and nothing sent)
  // if none is connected.
  bool DeliverToDomain(std::string_view domain, std::shared_ptr<const std::string> xml,
                       std::function<void()> on_gone = {});

  net::LoopPool& loops() { return loops_; }

 private:
  ComponentSession* FindComponent(SessionRef ref);

  net::LoopPool& loops_;
  std::vector<std::unordered_map<uint64_t, C2sSession*>> tables_;  // [loop] -> table, loop-owned
  std::vector<std::unordered_map<uint64_t, ComponentSession*>> components_;  // [loop] -> table, loop-owned
  mutable std::shared_mutex domains_mutex_;
  std::unordered_map<std::string, SessionRef> domains_;  // component domain -> its session
};

}  // namespace nines::xmpp
