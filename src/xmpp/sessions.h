// Sessions: the per-loop tables of live client sessions, and delivery to them.
//
// Each loop has its own table (id -> session), touched only on that loop, so
// lookups take no lock. Deliver() posts the bytes to the session's loop.
//
// Thread safety: Deliver/Kick may be called from any thread. Add/Remove only
// on the session's own loop.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/loop_pool.h"
#include "xmpp/session_ref.h"

namespace nines::xmpp {

class C2sSession;

class Sessions {
 public:
  explicit Sessions(net::LoopPool& loops);

  // Posts `xml` (one serialised stanza) to the session. If the session no
  // longer exists when the post runs, `on_gone` (if set) runs on that loop.
  // A session with XEP-0198 enabled keeps `on_gone` until its client
  // acknowledges the stanza, and runs it if the session ends first.
  // `archive_id`: see im::SessionPort::Deliver.
  void Deliver(SessionRef ref, std::shared_ptr<const std::string> xml, std::function<void()> on_gone = {},
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
  size_t CountOnLoop(size_t loop) const { return tables_[loop].size(); }
  // Every session on `loop` (loop thread only), e.g. for shutdown and ticks.
  std::vector<C2sSession*> AllOnLoop(size_t loop) const;

  net::LoopPool& loops() { return loops_; }

 private:
  net::LoopPool& loops_;
  std::vector<std::unordered_map<uint64_t, C2sSession*>> tables_;  // [loop] -> table, loop-owned
};

}  // namespace nines::xmpp
