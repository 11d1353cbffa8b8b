// C2sSession's private state for XEP-0198 stream management, shared by
// c2s_session.cc and c2s_stream_management.cc (nothing else includes it).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "store/store.h"
#include "xmpp/ack_counter.h"
#include "xmpp/c2s_session.h"
#include "xmpp/unacked_stanzas.h"

namespace nines::xmpp {

// XEP-0198 state of one session. Tickets: every stanza read while bound
// gets the next number (next_ticket_); AckCounter turns them into 'h'.
struct C2sSession::StreamManagement {
  std::string token;           // resumption id (ResumeTokens); empty: not resumable
  int64_t resume_timeout = 0;  // seconds
  StreamManagement(uint64_t first_ticket, uint64_t base_h = 0) : inbound(first_ticket, base_h) {}
  // Inbound: client to server.
  AckCounter inbound;
  bool ack_owed = false;       // an <r/> waits for its <a/> ...
  uint64_t ack_threshold = 0;  // ... until inbound.handled() reaches this
  // An <a/> ready to go, waiting (stream_management.ack_delay_ms) for other
  // output to ride with: the next Send() takes it along, or the loop's
  // RunAfter sends it alone. Acks are cumulative, so a newer one replaces it.
  std::string ack_waiting;
  // When ack_waiting last went from empty to set: what its wait counts
  // from (an answer that replaces a waiting one keeps the older start).
  std::chrono::steady_clock::time_point ack_waiting_since;
  // Outbound: server to client.
  uint64_t acked = 0;      // stanzas the client has acknowledged
  UnackedStanzas unacked;  // sent (or held while detached), in order
  bool request_outstanding = false;
  // Detached: the connection is gone, the session waits to be resumed.
  bool detached = false;
  int64_t detached_since = 0;
  std::shared_ptr<C2sSession> keep_alive;  // while detached nothing else owns the session
  bool resuming = false;  // adopted a connection; <resumed/> waits for pending stanzas

  // Resumption from the store (stream_management.resume_from_store): the
  // session keeps `row` up to date in the store, one write in flight at a
  // time. An <a/> or <resumed/> reports at most `durable_h`, the inbound
  // count the store has, so a resume from the store never reports less
  // than the client was told.
  struct Device {
    store::DeviceState row;  // what the store should hold
    bool writing = false;    // a PutDeviceState is in flight
    bool dirty = false;      // `row` changed since that write was issued
    uint64_t durable_h = 0;
  };
  std::unique_ptr<Device> device;
};

// A new connection on its way to the session it resumes (see the header).
struct C2sSession::Handover {
  SessionRef from;  // the connection's own (short-lived) session
  std::string previd;
  uint32_t h = 0;  // what the client says it received
  std::string username;
  net::Transport::Detached connection;
  std::string remote_address;
  bool counted = false;  // holds a ConnectionCounter slot for remote_address
  std::optional<xml::StreamParser> parser;
  std::list<xml::ParseEvent> pending;
  std::string out;  // bytes not yet written to the connection
  std::shared_ptr<const net::TlsContext> tls_context;
  std::shared_ptr<const Config> config;
  std::string stream_id;
};

}  // namespace nines::xmpp
