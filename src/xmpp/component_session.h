// ComponentSession: one external component connection (XEP-0114, the
// jabber:component:accept protocol), from TCP accept to close.
//
// What a component is
//   A separate program (a push app server, a gateway, a bot host) that serves
//   a whole domain, e.g. push.example.org, through this server. It connects
//   to `components.address`:`components.port`, opens a stream to its domain,
//   proves it knows the secret configured for that domain
//   (`components.secrets`) with <handshake>hex(SHA-1(stream id + secret))
//   </handshake>, and from then on sends and receives stanzas for any JID
//   at its domain. The protocol has no TLS and no SASL, so the listener
//   belongs on loopback or a private network (the default is 127.0.0.1).
//
// Routing
//   After the handshake the session claims its domain in Sessions: stanzas
//   the hub routes to that domain (or any JID at it) are delivered here. A
//   second connection for a domain already connected is refused with
//   <conflict/>, so the one that works keeps working. Stanzas the component
//   sends must come from its domain (else <invalid-from/>) and name a
//   recipient (else <improper-addressing/>); they are moved into the
//   jabber:client namespace and handed to Hub::HandleFromComponent.
//
// Limits: the stanza size, depth and attribute caps of limits.* (the
// pre-authentication ones until the handshake), limits.auth_timeout to
// finish the handshake, limits.stanza_timeout for a partial stanza,
// limits.send_queue for a component that stops reading, and
// limits.connections_per_ip. No per-second rate limit: a component is
// trusted with the secret, and a gateway may carry many users' traffic.
//
// Thread safety: every member is touched only on the session's loop.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/transport.h"
#include "xml/stream_parser.h"
#include "xmpp/server_context.h"
#include "xmpp/session_ref.h"

namespace nines::xmpp {

class ComponentSession : public std::enable_shared_from_this<ComponentSession> {
 public:
  static void Start(ServerContext& context, net::Loop& loop, boost::asio::ip::tcp::socket socket);

  ComponentSession(ServerContext& context, net::Loop& loop, boost::asio::ip::tcp::socket socket, SessionRef ref);
  ~ComponentSession();

  // One serialised stanza for the component (from Sessions::Deliver).
  void SendStanza(std::string_view xml);
  void CloseWithStreamError(std::string_view condition, std::string_view text = {});
  // The loop's one-second tick: handshake and partial-stanza deadlines.
  void CheckDeadlines();

  SessionRef ref() const { return ref_; }
  const std::string& domain() const { return domain_; }

 private:
  enum class State { kStreamStart, kHandshake, kBound, kClosing, kClosed };

  void Begin();
  void ArmRead();
  void OnReadable();
  void HandleEvent(xml::ParseEvent& event);
  void HandleStreamOpen(const xml::Element& header);
  void HandleHandshake(const xml::Element& handshake);
  void HandleStanza(xml::Element stanza);
  void Send(std::string_view xml);
  void Flush();
  void Finish();

  ServerContext& context_;
  net::Loop& loop_;
  net::Transport transport_;
  std::shared_ptr<const Config> config_;
  xml::StreamParser parser_;
  SessionRef ref_;
  State state_ = State::kStreamStart;
  bool header_sent_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool in_read_ = false;
  bool counted_ = false;
  bool claimed_ = false;  // holds the route for domain_
  bool stanza_started_ = false;
  int64_t connected_at_ = 0;
  int64_t stanza_started_at_ = 0;
  int64_t closing_since_ = 0;
  std::string stream_id_;
  std::string domain_;
  std::string out_;
  size_t out_offset_ = 0;
};

// The XEP-0114 handshake value: lower-case hex of SHA-1(stream_id + secret).
std::string ComponentHandshake(std::string_view stream_id, std::string_view secret);

}  // namespace nines::xmpp
