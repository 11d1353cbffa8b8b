#include "xmpp/component_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base/log.h"
#include "xmpp/base64.h"
#include "xmpp/jid/jid.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::xmpp {

namespace asio = boost::asio;
using xml::Element;
using xml::ParseEvent;

namespace {

constexpr int kReadsPerWakeup = 16;
constexpr int64_t kCloseGraceSeconds = 5;


std::string HeaderXml(std::string_view id, std::string_view from) {
  std::string out =
      "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
      "xmlns:stream='http://etherx.jabber.org/streams' id='";
  xml::AppendEscaped(out, id);
  out += "' from='";
  xml::AppendEscaped(out, from);
  out += "'>";
  return out;
}

}  // namespace

std::string ComponentHandshake(std::string_view stream_id, std::string_view secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr);
  EVP_DigestUpdate(ctx, stream_id.data(), stream_id.size());
  EVP_DigestUpdate(ctx, secret.data(), secret.size());
  EVP_DigestFinal_ex(ctx, digest, &size);
  EVP_MD_CTX_free(ctx);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), size));
}

void ComponentSession::Start(ServerContext& context, net::Loop& loop, asio::ip::tcp::socket socket) {
  SessionRef ref{static_cast<uint32_t>(loop.index()), context.next_session_id.fetch_add(1)};
  auto session = std::make_shared<ComponentSession>(context, loop, std::move(socket), ref);
  session->Begin();
}

ComponentSession::ComponentSession(ServerContext& context, net::Loop& loop, asio::ip::tcp::socket socket,
                                   SessionRef ref)
    : context_(context),
      loop_(loop),
      transport_(std::move(socket)),
      config_(context.config.Get()),
      parser_(ParserLimitsFor(config_->limits, false)),
      ref_(ref) {
  connected_at_ = loop_.now_seconds();
}

ComponentSession::~ComponentSession() = default;

void ComponentSession::Begin() {
  context_.sessions.AddComponent(ref_, this);
  if (context_.shutting_down.load()) {
    CloseWithStreamError("system-shutdown", "the server is shutting down");
    return;
  }
  const Limits& l = config_->limits;
  int64_t total_cap = l.max_connections > 0 ? l.max_connections : context_.descriptor_connection_cap;
  if (!context_.connections.TryAcquire(transport_.remote_address(), l.connections_per_ip, total_cap)) {
    CloseWithStreamError("policy-violation", "too many connections from your address");
    return;
  }
  counted_ = true;
  ArmRead();
}

void ComponentSession::ArmRead() {
  if (reading_ || state_ == State::kClosed) return;
  reading_ = true;
  transport_.WaitReadable([self = shared_from_this()](boost::system::error_code ec) {
    self->reading_ = false;
    if (ec || self->state_ == State::kClosed) return;
    self->OnReadable();
  });
}

void ComponentSession::OnReadable() {
  if (state_ == State::kClosed) return;
  // The component is not reading what we send: stop reading from it too.
  if (out_.size() - out_offset_ > static_cast<size_t>(config_->limits.send_queue) / 2) return;
  in_read_ = true;
  auto& scratch = loop_.scratch();
  std::vector<ParseEvent> events;
  bool more = false;
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    auto r = transport_.Read(scratch.data(), scratch.size());
    if (r.status == net::Io::kWantRead) break;
    if (r.status != net::Io::kOk) {
      in_read_ = false;
      Finish();
      return;
    }
    events.clear();
    parser_.Feed(std::string_view(scratch.data(), r.bytes), events);
    if (parser_.InStanza()) {
      if (!stanza_started_) {
        stanza_started_ = true;
        stanza_started_at_ = loop_.now_seconds();
      }
    } else {
      stanza_started_ = false;
    }
    for (auto& event : events) {
      if (state_ == State::kClosed || state_ == State::kClosing) break;
      HandleEvent(event);
    }
    if (state_ == State::kClosed || state_ == State::kClosing) break;
    if (r.drained) break;
    if (i == kReadsPerWakeup - 1) more = true;
  }
  in_read_ = false;
  Flush();
  if (state_ == State::kClosed) return;
  if (more) {
    loop_.Post([self = shared_from_this()] { self->OnReadable(); });
    return;
  }
  ArmRead();
}

void ComponentSession::HandleEvent(ParseEvent& event) {
  switch (event.kind) {
    case ParseEvent::Kind::kStreamOpen:
      HandleStreamOpen(event.element);
      return;
    case ParseEvent::Kind::kStreamClose:
      Send("</stream:stream>");
      state_ = State::kClosing;
      closing_since_ = loop_.now_seconds();
      Flush();
      return;
    case ParseEvent::Kind::kError:
      CloseWithStreamError(xml::StreamErrorCondition(event.error), event.error_text);
      return;
    case ParseEvent::Kind::kStanza:
      if (state_ == State::kHandshake) {
        HandleHandshake(event.element);
      } else if (state_ == State::kBound) {
        HandleStanza(std::move(event.element));
      }
      return;
  }
}

void ComponentSession::HandleStreamOpen(const Element& header) {
  stream_id_ = RandomId(24);
  std::string_view to = header.Attr("to");
  auto domain = Jid::NormalizeDomain(to);
  std::string from = domain.ok() ? *domain : config_->domain;
  Send(HeaderXml(stream_id_, from));
  header_sent_ = true;
  if (header.Attr("xmlns") != ns::kComponent) {
    CloseWithStreamError("invalid-namespace", "the content namespace must be jabber:component:accept");
    return;
  }
  if (!domain.ok() || config_->ComponentSecret(*domain).empty()) {
    if (AllowPeerWarning()) {
      spdlog::warn("[K{}] {}: component stream for unknown domain '{}'", ref_.id, transport_.remote_address(),
                   to);
    }
    CloseWithStreamError("host-unknown", "no component is configured for that domain");
    return;
  }
  domain_ = *domain;
  state_ = State::kHandshake;
}

void ComponentSession::HandleHandshake(const Element& handshake) {
  if (handshake.name() != "handshake" || handshake.ns() != ns::kComponent) {
    CloseWithStreamError("not-authorized", "send <handshake/> first");
    return;
  }
  // The secret may have changed on SIGHUP since the connection opened.
  config_ = context_.config.Get();
  std::string secret = config_->ComponentSecret(domain_);
  std::string want = ComponentHandshake(stream_id_, secret);
  std::string got = handshake.Text();
  for (char& c : got) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  if (secret.empty() || got.size() != want.size() || CRYPTO_memcmp(got.data(), want.data(), want.size()) != 0) {
    if (AllowPeerWarning()) {
      spdlog::warn("[K{}] {}: component handshake for {} failed", ref_.id, transport_.remote_address(), domain_);
    }
    CloseWithStreamError("not-authorized", "wrong handshake");
    return;
  }
  if (!context_.sessions.ClaimDomain(domain_, ref_)) {
    spdlog::warn("[K{}] {}: component {} is already connected; refusing the second connection", ref_.id,
                 transport_.remote_address(), domain_);
    CloseWithStreamError("conflict", "a component for this domain is already connected");
    return;
  }
  claimed_ = true;
  state_ = State::kBound;
  parser_.SetLimits(ParserLimitsFor(config_->limits, true));
  Send("<handshake/>");
  spdlog::info("[K{}] component {} connected from {}", ref_.id, domain_, transport_.remote_address());
}

void ComponentSession::HandleStanza(Element stanza) {
  const std::string& name = stanza.name();
  if (stanza.ns() != ns::kComponent || (name != "message" && name != "presence" && name != "iq")) {
    CloseWithStreamError("unsupported-stanza-type");
    return;
  }
  auto from = Jid::Parse(stanza.Attr("from"));
  if (!from.ok() || from->domain() != domain_) {
    CloseWithStreamError("invalid-from", fmt::format("stanzas from this stream must be from {}", domain_));
    return;
  }
  if (!stanza.HasAttr("to")) {
    CloseWithStreamError("improper-addressing", "a stanza from a component needs a 'to'");
    return;
  }
  stanza.SetAttr("from", from->Full());
  stanza.RenameNamespace(ns::kComponent, ns::kClient);
  auto to = Jid::Parse(stanza.Attr("to"));
  if (!to.ok()) {
    if (stanza.Attr("type") != "error") {
      SendStanza(MakeErrorReply(stanza, "modify", "jid-malformed").Serialize(ns::kClient));
    }
    return;
  }
  stanza.SetAttr("to", to->Full());
  if (name == "iq") {
    if (std::string_view problem = IqShapeProblem(stanza); !problem.empty()) {
      if (stanza.Attr("type") != "error") {
        SendStanza(MakeErrorReply(stanza, "modify", "bad-request", problem).Serialize(ns::kClient));
      }
      return;
    }
  }
  context_.hub->HandleFromComponent(ref_, std::move(stanza));
}

void ComponentSession::SendStanza(std::string_view xml) {
  if (state_ != State::kBound) return;
  Send(xml);
}

void ComponentSession::Send(std::string_view xml) {
  if (state_ == State::kClosed) return;
  if (out_offset_ == out_.size()) {
    out_.clear();
    out_offset_ = 0;
  }
  out_.append(xml);
  if (out_.size() - out_offset_ > static_cast<size_t>(config_->limits.send_queue)) {
    spdlog::warn("[K{}] component {}: send queue over {} bytes; disconnecting", ref_.id, domain_,
                 config_->limits.send_queue);
    Finish();
    return;
  }
  if (!in_read_ && !writing_) Flush();
}

void ComponentSession::Flush() {
  if (state_ == State::kClosed) return;
  size_t before = out_.size() - out_offset_;
  while (out_offset_ < out_.size()) {
    auto r = transport_.Write(out_.data() + out_offset_, out_.size() - out_offset_);
    if (r.status == net::Io::kOk) {
      out_offset_ += r.bytes;
      continue;
    }
    if (r.status == net::Io::kWantWrite || r.status == net::Io::kWantRead) {
      if (!writing_) {
        writing_ = true;
        transport_.WaitWritable([self = shared_from_this()](boost::system::error_code ec) {
          self->writing_ = false;
          if (ec || self->state_ == State::kClosed) return;
          size_t half = static_cast<size_t>(self->config_->limits.send_queue) / 2;
          size_t queued = self->out_.size() - self->out_offset_;
          self->Flush();
          if (queued > half && self->out_.size() - self->out_offset_ <= half) self->OnReadable();
        });
      }
      return;
    }
    Finish();
    return;
  }
  out_.clear();
  out_offset_ = 0;
  if (before > 0 && out_.capacity() > 16 * 1024) std::string().swap(out_);
  if (state_ == State::kClosing) Finish();
}

void ComponentSession::CloseWithStreamError(std::string_view condition, std::string_view text) {
  if (state_ == State::kClosed || state_ == State::kClosing) return;
  if (!header_sent_) {
    if (stream_id_.empty()) stream_id_ = RandomId(24);
    Send(HeaderXml(stream_id_, config_->domain));
    header_sent_ = true;
  }
  Send(StreamErrorXml(condition, text));
  state_ = State::kClosing;
  closing_since_ = loop_.now_seconds();
  if (!writing_) Flush();
}

void ComponentSession::CheckDeadlines() {
  if (state_ == State::kClosed) return;
  int64_t now = loop_.now_seconds();
  const Limits& l = config_->limits;
  if (state_ == State::kClosing) {
    if (now - closing_since_ > kCloseGraceSeconds) Finish();
    return;
  }
  if (state_ != State::kBound && now - connected_at_ > l.auth_timeout) {
    CloseWithStreamError("connection-timeout", "the handshake took too long");
    return;
  }
  if (stanza_started_ && now - stanza_started_at_ > l.stanza_timeout) {
    CloseWithStreamError("connection-timeout", "a stanza took too long to arrive");
  }
}

void ComponentSession::Finish() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  transport_.Close();
  if (claimed_) {
    context_.sessions.ReleaseDomain(domain_, ref_);
    claimed_ = false;
    spdlog::info("[K{}] component {} disconnected", ref_.id, domain_);
  }
  context_.sessions.RemoveComponent(ref_);
  if (counted_) {
    context_.connections.Release(transport_.remote_address());
    counted_ = false;
  }
}

}  // namespace nines::xmpp
