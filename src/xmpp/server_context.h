// ServerContext: what every client session shares.
//
// Thread safety: the members are either immutable after startup, atomics, or
// themselves thread-safe (documented on each type).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/config.h"
#include "net/limiter.h"
#include "net/loop_pool.h"
#include "net/tls.h"
#include "store/store.h"
#include "xmpp/hub.h"
#include "xmpp/resume_tokens.h"
#include "xmpp/sessions.h"

namespace nines::xmpp {

struct ServerContext {
  ServerContext(net::LoopPool& l, ConfigSource& c, store::Store& s, Sessions& ss)
      : loops(l), config(c), store(s), sessions(ss) {}

  net::LoopPool& loops;
  ConfigSource& config;
  store::Store& store;
  Sessions& sessions;
  Hub* hub = nullptr;  // set before listeners start
  // Stream features the hub implements, advertised after authentication next
  // to <bind/> (e.g. roster versioning). Set before listeners start.
  std::string hub_features;

  // The TLS context new connections use; swapped on SIGHUP.
  std::atomic<std::shared_ptr<const net::TlsContext>> tls;

  ResumeTokens resume_tokens;  // XEP-0198

  net::ConnectionCounter connections;
  net::WindowCounter failed_logins_by_ip;
  net::WindowCounter failed_logins_by_account;
  net::WindowCounter registrations_by_ip;

  // The connection cap when limits.max_connections is 0 (from RLIMIT_NOFILE).
  int64_t descriptor_connection_cap = 0;

  std::atomic<uint64_t> next_session_id{1};
  std::atomic<bool> shutting_down{false};
};

}  // namespace nines::xmpp
