#include "xmpp/c2s_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <openssl/crypto.h>

#include <charconv>
#include <chrono>
#include <deque>

#include "base/log.h"
#include "xmpp/c2s_internal.h"
#include "xmpp/base64.h"
#include "xmpp/csi.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::xmpp {

namespace asio = boost::asio;
using xml::Element;
using xml::ParseEvent;

namespace {

constexpr int kMaxSaslFailures = 3;
constexpr int kReadsPerWakeup = 16;  // fairness between connections on one loop
constexpr int64_t kCompactAfterIdleSeconds = 10;
constexpr int64_t kCloseGraceSeconds = 5;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}


}  // namespace

void C2sSession::Start(ServerContext& context, net::Loop& loop, asio::ip::tcp::socket socket,
                       bool direct_tls) {
  SessionRef ref{static_cast<uint32_t>(loop.index()), context.next_session_id.fetch_add(1)};
  auto session = std::make_shared<C2sSession>(context, loop, std::move(socket), direct_tls, ref);
  session->Begin();
}

C2sSession::C2sSession(ServerContext& context, net::Loop& loop, asio::ip::tcp::socket socket, bool direct_tls,
                       SessionRef ref)
    : context_(context),
      loop_(loop),
      transport_(std::move(socket)),
      config_(context.config.Get()),
      parser_(xml::ParserLimits{}),
      ref_(ref),
      direct_tls_(direct_tls) {
  parser_.SetLimits(CurrentParserLimits());
  connected_at_ = loop_.now_seconds();
  last_read_ = connected_at_;
}

C2sSession::~C2sSession() = default;

xml::ParserLimits C2sSession::CurrentParserLimits() const {
  return ParserLimitsFor(config_->limits, authenticated_);
}

void C2sSession::Begin() {
  context_.sessions.Add(ref_, this);
  const Limits& l = config_->limits;
  rate_.Configure(static_cast<double>(l.stanzas_per_second), static_cast<double>(l.stanza_burst));
  if (context_.shutting_down.load()) {
    CloseWithStreamError("system-shutdown", "the server is shutting down");
    return;
  }
  int64_t total_cap = l.max_connections > 0 ? l.max_connections : context_.descriptor_connection_cap;
  if (!context_.connections.TryAcquire(transport_.remote_address(), l.connections_per_ip, total_cap)) {
    if (AllowPeerWarning()) {
      spdlog::warn("[C{}] {}: connection refused: too many connections", ref_.id,
                   transport_.remote_address());
    }
    if (direct_tls_) {  // no TLS yet, so no readable error: just close
      Finish();
      return;
    }
    CloseWithStreamError("policy-violation", "too many connections from your address");
    return;
  }
  counted_ = true;
  if (direct_tls_) {
    tls_context_ = context_.tls.load();
    if (!tls_context_ || !transport_.StartTls(tls_context_->native())) {
      Finish();
      return;
    }
    state_ = State::kTlsHandshake;
    DoHandshake();
    return;
  }
  ArmRead();
}

void C2sSession::DoHandshake() {
  auto r = transport_.Handshake();
  switch (r.status) {
    case net::Io::kOk:
      state_ = State::kStreamStart;
      header_sent_ = false;  // a new stream: errors need a new header first
      if (!direct_tls_) MarkStreamRestart();
      parser_.Reset();
      last_read_ = loop_.now_seconds();
      OnReadable();  // TLS may already hold application data
      return;
    case net::Io::kWantRead:
      transport_.WaitReadable([self = shared_from_this()](boost::system::error_code ec) {
        if (ec || self->state_ == State::kClosed) return;
        self->DoHandshake();
      });
      return;
    case net::Io::kWantWrite:
      transport_.WaitWritable([self = shared_from_this()](boost::system::error_code ec) {
        if (ec || self->state_ == State::kClosed) return;
        self->DoHandshake();
      });
      return;
    default:
      Finish();
  }
}

void C2sSession::ArmRead() {
  if (reading_ || state_ == State::kClosed || state_ == State::kTlsHandshake) return;
  if (!Attached()) return;
  reading_ = true;
  transport_.WaitReadable([self = shared_from_this(), gen = io_generation_](boost::system::error_code ec) {
    if (gen != self->io_generation_) return;  // armed on a connection since replaced
    self->reading_ = false;
    if (ec || self->state_ == State::kClosed) return;
    self->OnReadable();
  });
}

void C2sSession::OnReadable() {
  if (state_ == State::kClosed || state_ == State::kTlsHandshake || !Attached() || handing_over_) return;
  // Paused: the store, the rate limit or our own send queue holds us back.
  if (blocked_ > 0 || out_.size() - out_offset_ > static_cast<size_t>(config_->limits.send_queue) / 2) return;
  in_read_ = true;
  auto& scratch = loop_.scratch();
  static thread_local std::vector<ParseEvent> events;
  bool more = false;
  for (int i = 0; i < kReadsPerWakeup; ++i) {
    auto r = transport_.Read(scratch.data(), scratch.size());
    if (r.status == net::Io::kWantRead) break;
    if (r.status == net::Io::kWantWrite) {  // TLS wants to write before reading
      in_read_ = false;
      transport_.WaitWritable([self = shared_from_this(), gen = io_generation_](boost::system::error_code ec) {
        if (!ec && gen == self->io_generation_) self->OnReadable();
      });
      Flush();
      return;
    }
    if (r.status != net::Io::kOk) {
      in_read_ = false;
      LoseConnection();
      return;
    }
    last_read_ = loop_.now_seconds();
    if (stream_restarted_ && !stream_bytes_seen_) {
      for (size_t k = 0; k < r.bytes; ++k) {
        char c = scratch[k];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
        stream_bytes_seen_ = true;
        closes_old_stream_ = c == '<' && k + 1 < r.bytes && scratch[k + 1] == '/';
        break;
      }
    }
    events.clear();
    parser_.Feed(std::string_view(scratch.data(), r.bytes), events);
    if (parser_.InStanza()) {
      if (!stanza_started_) {
        stanza_started_ = true;
        stanza_started_at_ = last_read_;
      }
    } else {
      stanza_started_ = false;
    }
    ProcessEvents(events, 0);
    events.clear();
    if (state_ == State::kClosed || state_ == State::kClosing || state_ == State::kTlsHandshake) break;
    if (blocked_ > 0) break;
    if (r.drained) break;  // ArmRead's wait re-checks readiness
    if (i == kReadsPerWakeup - 1) more = true;
  }
  in_read_ = false;
  // What the read produced (answers, an <a/>) is written at the end of the
  // loop's pass, with the deliveries the pass's other reads bring this
  // client: one write, and one wakeup for the client, instead of two.
  if (out_offset_ < out_.size()) FlushLater();
  if (state_ == State::kClosed || state_ == State::kTlsHandshake || !Attached()) return;
  if (blocked_ > 0) return;
  if (more) {
    // Yield to other connections; TLS may hold decrypted bytes the socket
    // readiness would not show, so come back through the queue, not a wait.
    loop_.Post([self = shared_from_this()] { self->OnReadable(); });
    return;
  }
  ArmRead();
}

void C2sSession::ProcessEvents(std::vector<ParseEvent>& events, size_t from) {
  for (size_t i = from; i < events.size(); ++i) {
    if (state_ == State::kClosed || state_ == State::kClosing) return;
    if (blocked_ > 0) {
      for (size_t j = i; j < events.size(); ++j) pending_.push_back(std::move(events[j]));
      return;
    }
    if (!HandleEvent(events[i])) return;
  }
}

void C2sSession::MarkStreamRestart() {
  stream_restarted_ = true;
  stream_bytes_seen_ = false;
  closes_old_stream_ = false;
}

void C2sSession::StanzaDone(uint64_t ticket) {
  if (sm_) {
    sm_->inbound.Finish(ticket);
    SmAdvance();
  }
  if (in_flight_ > 0) --in_flight_;
  if (in_flight_blocked_ && in_flight_ <= config_->limits.messages_in_flight / 2) {
    in_flight_blocked_ = false;
    // Unblock may process queued stanzas and end the session: keep it alive
    // to the end of this call (the caller holds only a table pointer).
    auto self = std::move(in_flight_keep_alive_);
    Unblock();
  }
}

void C2sSession::Unblock() {
  if (--blocked_ > 0) return;
  while (!pending_.empty() && blocked_ == 0 && state_ != State::kClosed && state_ != State::kClosing) {
    ParseEvent event = std::move(pending_.front());
    pending_.pop_front();
    if (!HandleEvent(event)) pending_.clear();
  }
  Flush();
  if (blocked_ == 0 && state_ != State::kClosed && state_ != State::kClosing &&
      state_ != State::kTlsHandshake) {
    loop_.Post([self = shared_from_this()] { self->OnReadable(); });
  }
}

bool C2sSession::HandleEvent(ParseEvent& event) {
  switch (event.kind) {
    case ParseEvent::Kind::kError: {
      if (state_ == State::kStreamStart && !header_sent_ && closes_old_stream_) {
        // The peer closed the stream it had before TLS/SASL instead of
        // opening a new one (common right after <success/>): close quietly.
        state_ = State::kClosing;
        Send("</stream:stream>");
        return false;
      }
      const char* condition = xml::StreamErrorCondition(event.error);
      if (AllowPeerWarning()) {
        spdlog::info("[C{}] {}: stream error {}: {}", ref_.id, transport_.remote_address(), condition,
                     event.error_text);
      }
      CloseWithStreamError(condition);
      return false;
    }
    case ParseEvent::Kind::kStreamClose:
      if (state_ != State::kClosing) {
        state_ = State::kClosing;
        Send("</stream:stream>");
      }
      return false;
    case ParseEvent::Kind::kStreamOpen:
      HandleStreamOpen(event.element);
      return true;
    case ParseEvent::Kind::kStanza:
      break;
  }
  Element& stanza = event.element;
  if (state_ == State::kStreamStart) {
    CloseWithStreamError("not-well-formed", "stanza before stream header");
    return false;
  }
  // XEP-0198 and XEP-0352 elements are not stanzas: not counted, not rate limited.
  if (stanza.ns() == ns::kSm) return HandleSm(stanza);
  if (stanza.ns() == ns::kCsi) return HandleCsi(stanza);
  if (state_ == State::kBound) {
    if (!rate_.TryTake(NowMs())) {
      // Over the rate: hold this stanza and stop reading until a token is due.
      Block();
      pending_.push_front(std::move(event));
      if (!throttle_timer_) throttle_timer_ = std::make_unique<asio::steady_timer>(loop_.context());
      throttle_timer_->expires_after(std::chrono::milliseconds(rate_.MillisUntilToken(NowMs())));
      throttle_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (ec || self->state_ == State::kClosed) return;
        self->throttle_timer_.reset();
        self->Unblock();
      });
      return true;  // blocked now: the caller queues the rest of the batch behind this stanza
    }
    const uint64_t ticket = next_ticket_++;
    const bool pending = HandleBoundStanza(std::move(stanza), ticket);
    if (sm_) NoteInbound(ticket, pending);
    return true;
  }
  const std::string& name = stanza.name();
  const std::string& sns = stanza.ns();
  if (sns == ns::kTls && name == "starttls") {
    HandleStartTls();
    return false;  // anything pipelined after <starttls/> is discarded (RFC 6120 §5.4.3.3)
  }
  if (sns == ns::kSasl) {
    if (authenticated_) {
      CloseWithStreamError("policy-violation", "already authenticated");
      return false;
    }
    if (name == "auth") {
      HandleAuth(stanza);
    } else if (name == "response") {
      HandleSaslResponse(stanza);
    } else if (name == "abort") {
      SaslFailed(sasl::Failure::kAborted);
    } else {
      CloseWithStreamError("unsupported-stanza-type");
      return false;
    }
    // After <success/> the client must open a new stream: stop this batch.
    return state_ != State::kStreamStart;
  }
  HandlePreBindStanza(stanza);
  return state_ != State::kClosing && state_ != State::kClosed;
}

std::string C2sSession::HeaderXml() const {
  return fmt::format(
      "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
      "xmlns:stream='http://etherx.jabber.org/streams' "
      "id='{}' from='{}' version='1.0' xml:lang='en'>",
      stream_id_, config_->domain);
}

void C2sSession::HandleStreamOpen(const Element& header) {
  stream_id_ = RandomId(16);
  Send(HeaderXml());
  header_sent_ = true;
  if (header.Attr("xmlns") != ns::kClient) {
    CloseWithStreamError("invalid-namespace", "the content namespace must be jabber:client");
    return;
  }
  if (auto to = header.FindAttr("to")) {
    auto domain = Jid::NormalizeDomain(*to);
    if (!domain.ok() || *domain != config_->domain) {
      CloseWithStreamError("host-unknown", "this server does not serve that domain");
      return;
    }
  }
  std::string_view version = header.Attr("version");
  if (version.empty() || version[0] < '1' || version[0] > '9') {
    CloseWithStreamError("unsupported-version", "XMPP 1.0 is required");
    return;
  }
  state_ = State::kFeatures;
  SendFeatures();
}

std::vector<std::string> C2sSession::OfferedMechanisms() const {
  std::vector<std::string> out;
  bool tls = transport_.tls_established();
  bool exporter = tls && !transport_.TlsExporter().empty();
  for (const auto& m : config_->sasl_mechanisms) {
    bool plus = m.size() > 5 && m.compare(m.size() - 5, 5, "-PLUS") == 0;
    if (plus && !exporter) continue;
    if (m == "PLAIN" && !tls && !config_->allow_plain_without_tls) continue;
    out.push_back(m);
  }
  return out;
}

void C2sSession::SendFeatures() {
  std::string f = "<stream:features>";
  bool tls = transport_.tls_established();
  if (!authenticated_) {
    if (!tls) {
      f += config_->require_tls ? "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
                                : "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    }
    if (tls || !config_->require_tls) {
      f += "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>";
      for (const auto& m : OfferedMechanisms()) f += "<mechanism>" + m + "</mechanism>";
      f += "</mechanisms>";
      if (!transport_.TlsExporter().empty()) {
        f += "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/>"
             "</sasl-channel-binding>";
      }
      if (config_->registration_enabled) f += "<register xmlns='http://jabber.org/features/iq-register'/>";
    }
  } else {
    f += "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
         "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>";
    if (config_->sm_enabled) f += "<sm xmlns='urn:xmpp:sm:3'/>";
    if (config_->csi_enabled) f += "<csi xmlns='urn:xmpp:csi:0'/>";
    f += context_.hub_features;
  }
  f += "</stream:features>";
  Send(f);
}

void C2sSession::HandleStartTls() {
  if (transport_.tls()) {
    Send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    CloseWithStreamError("policy-violation", "TLS is already established");
    return;
  }
  tls_context_ = context_.tls.load();
  if (!tls_context_) {
    Send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>");
    state_ = State::kClosing;
    Flush();
    return;
  }
  Send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
  // The <proceed/> must reach the peer in the clear before the handshake.
  // It is a few bytes on a fresh connection, so the socket buffer takes it.
  Flush();
  if (out_offset_ < out_.size() || !transport_.StartTls(tls_context_->native())) {
    Finish();
    return;
  }
  out_.clear();
  out_offset_ = 0;
  pending_.clear();
  state_ = State::kTlsHandshake;
  DoHandshake();
}

void C2sSession::HandleAuth(const Element& auth) {
  if (config_->require_tls && !transport_.tls_established()) {
    SaslFailed(sasl::Failure::kEncryptionRequired);
    return;
  }
  std::string mechanism(auth.Attr("mechanism"));
  auto offered = OfferedMechanisms();
  if (std::find(offered.begin(), offered.end(), mechanism) == offered.end()) {
    SaslFailed(sasl::Failure::kInvalidMechanism);
    return;
  }
  if (LoginThrottled("")) {
    SaslFailed(sasl::Failure::kTemporaryAuthFailure,
               "too many failed logins from your address; try again later");
    return;
  }
  std::string text = auth.Text();
  std::optional<std::string> initial;
  if (text == "=") {
    initial = std::string();
  } else if (!text.empty()) {
    initial = Base64Decode(text);
    if (!initial) {
      SaslFailed(sasl::Failure::kIncorrectEncoding);
      return;
    }
  }
  sasl::ChannelBinding binding;
  binding.tls = transport_.tls_established();
  binding.tls_exporter = transport_.TlsExporter();
  for (const auto& m : offered) {
    if (m.size() > 5 && m.compare(m.size() - 5, 5, "-PLUS") == 0) binding.server_offers_plus = true;
  }
  sasl_ = sasl::CreateMechanism(mechanism, binding);
  if (!sasl_) {
    SaslFailed(sasl::Failure::kInvalidMechanism);
    return;
  }
  sasl_mechanism_ = mechanism;
  ContinueSasl(initial ? sasl_->Start(std::string_view(*initial)) : sasl_->Start(std::nullopt));
  if (initial) OPENSSL_cleanse(initial->data(), initial->size());  // PLAIN carries the password
}

void C2sSession::HandleSaslResponse(const Element& response) {
  if (!sasl_) {
    SaslFailed(sasl::Failure::kMalformedRequest, "no authentication in progress");
    return;
  }
  std::string text = response.Text();
  std::optional<std::string> data = text.empty() || text == "=" ? std::string() : Base64Decode(text);
  if (!data) {
    SaslFailed(sasl::Failure::kIncorrectEncoding);
    return;
  }
  ContinueSasl(sasl_->Step(*data));
  OPENSSL_cleanse(data->data(), data->size());
}

void C2sSession::ContinueSasl(sasl::StepResult step) {
  using Kind = sasl::StepResult::Kind;
  switch (step.kind) {
    case Kind::kChallenge:
      Send("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
           (step.data.empty() ? std::string("=") : Base64Encode(step.data)) + "</challenge>");
      return;
    case Kind::kNeedKeys: {
      username_ = step.username;
      if (LoginThrottled(username_)) {
        SaslFailed(sasl::Failure::kTemporaryAuthFailure,
                   "too many failed logins for this account; try again later");
        return;
      }
      bool sha1 = step.key_hash == sasl::Hash::kSha1;
      Block();
      context_.store.GetAccount(
          username_, store::Reply<store::Account>(loop_.executor(), [self = shared_from_this(),
                                                                     sha1](Result<store::Account> account) {
            if (self->state_ == State::kClosed) return;
            if (!account.ok() && account.error().code != Errc::kNotFound) {
              spdlog::error("[C{}] account lookup failed: {}", self->ref_.id, account.error().message);
              self->SaslFailed(sasl::Failure::kTemporaryAuthFailure, "the account store is unavailable");
            } else if (self->sasl_) {
              const store::ScramKeys* keys =
                  account.ok() ? (sha1 ? &account.value().sha1 : &account.value().sha256) : nullptr;
              self->ContinueSasl(self->sasl_->ProvideKeys(keys));
            }
            self->Unblock();
          }));
      return;
    }
    case Kind::kSuccess:
      authenticated_ = true;
      username_ = step.username;
      sasl_.reset();
      Send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
           (step.data.empty() ? std::string() : Base64Encode(step.data)) + "</success>");
      spdlog::debug("[C{}] {} authenticated as {} with {}", ref_.id, transport_.remote_address(), username_,
                    sasl_mechanism_);
      config_ = context_.config.Get();
      parser_.Reset();
      parser_.SetLimits(CurrentParserLimits());
      header_sent_ = false;
      MarkStreamRestart();
      state_ = State::kStreamStart;
      return;
    case Kind::kFailure:
      SaslFailed(step.failure);
      return;
  }
}

void C2sSession::SaslFailed(sasl::Failure failure, std::string_view text) {
  sasl_.reset();
  if (failure == sasl::Failure::kNotAuthorized) NoteFailedLogin(username_);
  std::string f = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><";
  f += sasl::FailureCondition(failure);
  f += "/>";
  if (!text.empty()) {
    f += "<text xml:lang='en'>";
    xml::AppendEscaped(f, text);
    f += "</text>";
  }
  f += "</failure>";
  Send(f);
  if (failure != sasl::Failure::kAborted && ++sasl_failures_ >= kMaxSaslFailures) {
    CloseWithStreamError("policy-violation", "too many failed authentication attempts");
  }
}

void C2sSession::NoteFailedLogin(const std::string& username) {
  std::chrono::seconds window(config_->limits.failed_login_window);
  context_.failed_logins_by_ip.Add(transport_.remote_address(), window);
  if (!username.empty()) context_.failed_logins_by_account.Add(username, window);
  if (AllowPeerWarning()) {
    spdlog::info("[C{}] {}: failed login{}", ref_.id, transport_.remote_address(),
                 username.empty() ? "" : " for " + username);
  }
}

bool C2sSession::LoginThrottled(const std::string& username) const {
  std::chrono::seconds window(config_->limits.failed_login_window);
  if (context_.failed_logins_by_ip.Count(transport_.remote_address(), window) >=
      config_->limits.failed_logins_per_ip) {
    return true;
  }
  return !username.empty() && context_.failed_logins_by_account.Count(username, window) >=
                                  config_->limits.failed_logins_per_account;
}

void C2sSession::HandlePreBindStanza(Element& stanza) {
  if (stanza.ns() != ns::kClient || stanza.name() != "iq") {
    CloseWithStreamError("not-authorized", authenticated_ ? "bind a resource first" : "authenticate first");
    return;
  }
  if (HandleRegistration(stanza, authenticated_)) return;
  if (!authenticated_) {
    CloseWithStreamError("not-authorized", "authenticate first");
    return;
  }
  std::string_view type = stanza.Attr("type");
  if (const Element* session = stanza.Child("session", ns::kSession); session && type == "set") {
    Send(MakeIqResult(stanza).Serialize(ns::kClient));
    return;
  }
  const Element* bind = stanza.Child("bind", ns::kBind);
  if (bind == nullptr || type != "set" || state_ == State::kBinding || !stanza.HasAttr("id")) {
    SendStanzaError(stanza, "cancel", bind ? "bad-request" : "not-authorized",
                    bind ? "" : "bind a resource first");
    return;
  }
  std::string requested;
  if (const Element* res = bind->Child("resource", ns::kBind)) {
    auto normalised = Jid::NormalizeResource(res->Text());
    if (!normalised.ok()) {
      SendStanzaError(stanza, "modify", "bad-request", "the resource is not valid");
      return;
    }
    requested = std::move(normalised.value());
  }
  auto bare = Jid::FromParts(username_, config_->domain, "");
  if (!bare.ok()) {
    CloseWithStreamError("internal-server-error");
    return;
  }
  state_ = State::kBinding;
  Block();
  // std::function needs a copyable capture, and Element is move-only.
  auto iq = std::make_shared<const Element>(stanza.Clone());
  context_.hub->Bind(ref_, *bare, requested, [self = shared_from_this(), iq](Result<Jid> jid) {
    if (self->state_ == State::kClosed || self->state_ == State::kClosing) {
      if (jid.ok()) self->context_.hub->Unbind(self->ref_, *jid);
      self->Unblock();
      return;
    }
    if (!jid.ok()) {
      self->state_ = State::kFeatures;
      if (jid.error().code == Errc::kLimitExceeded) {
        self->SendStanzaError(*iq, "wait", "resource-constraint", "too many sessions for this account");
      } else {
        self->SendStanzaError(*iq, "wait", "internal-server-error");
      }
      self->Unblock();
      return;
    }
    self->jid_ = std::move(jid.value());
    self->state_ = State::kBound;
    Element result = MakeIqResult(*iq);
    result.RemoveAttr("to");
    result.AddChild("bind", std::string(ns::kBind))
        .AddChild("jid", std::string(ns::kBind))
        .AddText(self->jid_.Full());
    self->Send(result.Serialize(ns::kClient));
    spdlog::debug("[C{}] bound {}", self->ref_.id, self->jid_.Full());
    self->Unblock();
  });
}

bool C2sSession::HandleRegistration(Element& iq, bool authenticated) {
  const Element* query = iq.Child("query", ns::kRegister);
  if (query == nullptr) return false;
  std::string_view type = iq.Attr("type");
  if (!config_->registration_enabled && !authenticated) {
    SendStanzaError(iq, "cancel", "service-unavailable", "in-band registration is disabled");
    return true;
  }
  if (!authenticated && config_->require_tls && !transport_.tls_established()) {
    SendStanzaError(iq, "auth", "not-authorized", "registration requires TLS");
    return true;
  }
  if (type == "get") {
    Element result = MakeIqResult(iq);
    auto& q = result.AddChild("query", std::string(ns::kRegister));
    if (authenticated) {
      q.AddChild("registered", std::string(ns::kRegister));
      q.AddChild("username", std::string(ns::kRegister)).AddText(username_);
    } else {
      q.AddChild("instructions", std::string(ns::kRegister)).AddText("Choose a username and password.");
      q.AddChild("username", std::string(ns::kRegister));
    }
    q.AddChild("password", std::string(ns::kRegister));
    SendOwnStanza(result.Serialize(ns::kClient));
    return true;
  }
  if (type != "set") {
    SendStanzaError(iq, "modify", "bad-request");
    return true;
  }
  if (query->Child("remove", ns::kRegister) != nullptr) {
    if (!authenticated) {
      SendStanzaError(iq, "auth", "not-authorized");
      return true;
    }
    Block();
    auto copy = std::make_shared<const Element>(iq.Clone());
    // Posted, so that it reaches the store after what this pass of the loop
    // already handed to it: the hub sends a pass's archive writes from a
    // handler posted behind the stanzas (im/archive.cc), and a message the
    // client sent before <remove/> must still be archived and delivered.
    boost::asio::post(loop_.executor(), [self = shared_from_this(), copy] {
      self->context_.store.DeleteAccount(
          self->username_, store::Reply<void>(self->loop_.executor(), [self, copy](Result<void> r) {
            // XEP-0077 §3.2: the account's other sessions end too, and its
            // contacts' subscriptions with it, even if this client has
            // already gone.
            if (r.ok()) self->TellHubAccountRemoved();
            if (self->state_ != State::kClosed) {
              if (r.ok()) {
                self->SendOwnStanza(MakeIqResult(*copy).Serialize(ns::kClient));
                self->CloseWithStreamError("not-authorized", "the account has been removed");
              } else {
                self->SendStanzaError(*copy, "wait", "internal-server-error");
              }
            }
            self->Unblock();
          }));
    });
    return true;
  }
  std::string username_text = query->ChildText("username", ns::kRegister);
  std::string password = query->ChildText("password", ns::kRegister);
  if (username_text.empty() || password.empty()) {
    SendStanzaError(iq, "modify", "not-acceptable", "username and password are required");
    return true;
  }
  auto username = Jid::NormalizeLocal(username_text);
  if (!username.ok()) {
    SendStanzaError(iq, "modify", "not-acceptable", "that username is not allowed");
    return true;
  }
  if (authenticated && *username != username_) {
    SendStanzaError(iq, "modify", "not-acceptable", "you can only change your own password");
    return true;
  }
  int64_t iterations = config_->scram_iterations;
  auto sha1 = sasl::DeriveKeys(sasl::Hash::kSha1, password, iterations);
  auto sha256 = sasl::DeriveKeys(sasl::Hash::kSha256, password, iterations);
  if (!sha1.ok() || !sha256.ok()) {
    SendStanzaError(iq, "modify", "not-acceptable", "that password is not allowed");
    return true;
  }
  auto copy = std::make_shared<const Element>(iq.Clone());
  auto done = [self = shared_from_this(), copy](Result<void> r) {
    if (self->state_ != State::kClosed) {
      if (r.ok()) {
        self->SendOwnStanza(MakeIqResult(*copy).Serialize(ns::kClient));
      } else if (r.error().code == Errc::kConflict) {
        self->SendStanzaError(*copy, "cancel", "conflict", "that username is taken");
      } else if (r.error().code == Errc::kNotFound) {
        self->SendStanzaError(*copy, "cancel", "item-not-found");
      } else {
        self->SendStanzaError(*copy, "wait", "internal-server-error");
      }
    }
    self->Unblock();
  };
  Block();
  if (authenticated) {
    context_.store.SetCredentials(username_, std::move(sha1.value()), std::move(sha256.value()),
                                  store::Reply<void>(loop_.executor(), std::move(done)));
    return true;
  }
  std::chrono::hours hour(1);
  if (context_.registrations_by_ip.Count(transport_.remote_address(), hour) >=
      config_->limits.registrations_per_ip) {
    Unblock();
    SendStanzaError(iq, "wait", "resource-constraint", "too many registrations from your address; try later");
    return true;
  }
  context_.registrations_by_ip.Add(transport_.remote_address(), hour);
  store::Account account;
  account.username = std::move(username.value());
  account.sha1 = std::move(sha1.value());
  account.sha256 = std::move(sha256.value());
  account.created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  context_.store.CreateAccount(std::move(account), store::Reply<void>(loop_.executor(), std::move(done)));
  return true;
}

bool C2sSession::HandleBoundStanza(Element stanza, uint64_t ticket) {
  const std::string& name = stanza.name();
  if (stanza.ns() != ns::kClient || (name != "message" && name != "presence" && name != "iq")) {
    CloseWithStreamError("unsupported-stanza-type");
    return false;
  }
  // RFC 6120 §8.1.2.1: the server stamps 'from'; a client may only name itself.
  if (const std::string* from = stanza.FindAttr("from")) {
    auto claimed = Jid::Parse(*from);
    if (!claimed.ok() || (*claimed != jid_ && *claimed != jid_.Bare())) {
      CloseWithStreamError("invalid-from", "you can only send as yourself");
      return false;
    }
  }
  stanza.SetAttr("from", jid_.Full());
  if (const std::string* to = stanza.FindAttr("to")) {
    auto target = Jid::Parse(*to);
    if (!target.ok()) {
      if (stanza.Attr("type") != "error") SendStanzaError(stanza, "modify", "jid-malformed");
      return false;
    }
    stanza.SetAttr("to", target->Full());
  }
  if (name == "iq") {
    if (std::string_view problem = IqShapeProblem(stanza); !problem.empty()) {
      SendStanzaError(stanza, "modify", "bad-request", problem);
      return false;
    }
    std::string_view type = stanza.Attr("type");
    bool request = type == "get" || type == "set";
    bool to_server = !stanza.HasAttr("to") || stanza.Attr("to") == config_->domain;
    if (!request && to_server && ping_sent_at_ != 0 &&
        stanza.Attr("id") == fmt::format("nines-ping-{}", ping_counter_)) {
      ping_sent_at_ = 0;  // the answer to our XEP-0199 ping
      return false;
    }
    bool to_self = !stanza.HasAttr("to") || stanza.Attr("to") == jid_.BareString();
    if (request && (to_server || to_self) && HandleRegistration(stanza, true)) return false;
  }
  if (sm_ && sm_->device && name != "message") NoteForDevice(stanza);
  if (!context_.hub->HandleStanza(ref_, jid_, std::move(stanza), ticket)) return false;
  ++in_flight_;
  if (!in_flight_blocked_ && in_flight_ >= config_->limits.messages_in_flight) {
    in_flight_blocked_ = true;  // the rest of this read waits in pending_
    in_flight_keep_alive_ = shared_from_this();
    Block();
  }
  return true;
}

void C2sSession::SendStanzaError(const Element& stanza, std::string_view type, std::string_view condition,
                                 std::string_view text) {
  Element reply = MakeErrorReply(stanza, type, condition, text);
  if (!authenticated_ || state_ != State::kBound) reply.RemoveAttr("to");
  SendOwnStanza(reply.Serialize(ns::kClient));
}

void C2sSession::Send(std::string_view xml) {
  if (state_ == State::kClosed || !Attached()) return;
  if (out_offset_ == out_.size()) {
    out_.clear();
    out_offset_ = 0;
  }
  if (sm_ && !sm_->ack_waiting.empty()) {  // a waiting <a/> rides with this write
    out_.append(sm_->ack_waiting);
    sm_->ack_waiting.clear();
  }
  out_.append(xml);
  if (out_.size() - out_offset_ > static_cast<size_t>(config_->limits.send_queue)) {
    // The peer is not reading: it cannot get a stream error either. Cut it off.
    if (AllowPeerWarning()) {
      spdlog::info("[C{}] {}: send queue over {} bytes; disconnecting", ref_.id, transport_.remote_address(),
                   config_->limits.send_queue);
    }
    LoseConnection();
    return;
  }
  if (!in_read_ && !writing_) Flush();
}

void C2sSession::Flush() {
  if (state_ == State::kClosed || state_ == State::kTlsHandshake || !Attached() || handing_over_) return;
  while (out_offset_ < out_.size()) {
    auto r = transport_.Write(out_.data() + out_offset_, out_.size() - out_offset_);
    if (r.status == net::Io::kOk) {
      out_offset_ += r.bytes;
      continue;
    }
    if (r.status == net::Io::kWantWrite || r.status == net::Io::kWantRead) {
      if (!writing_) {
        writing_ = true;
        transport_.WaitWritable([self = shared_from_this(), gen = io_generation_](boost::system::error_code ec) {
          if (gen != self->io_generation_) return;  // armed on a connection since replaced
          self->writing_ = false;
          if (ec || self->state_ == State::kClosed) return;
          self->OnWritable();
        });
      }
      return;
    }
    LoseConnection();
    return;
  }
  out_.clear();
  out_offset_ = 0;
  if (out_.capacity() > 16 * 1024) std::string().swap(out_);  // give big bursts' memory back
  if (state_ == State::kClosing) Finish();
}

void C2sSession::OnWritable() {
  size_t queued_before = out_.size() - out_offset_;
  Flush();
  size_t half = static_cast<size_t>(config_->limits.send_queue) / 2;
  // Reading was paused because the peer was not reading; resume once drained.
  if (queued_before > half && out_.size() - out_offset_ <= half && state_ != State::kClosed) OnReadable();
}

void C2sSession::TellHubAccountRemoved() {
  if (auto bare = Jid::FromParts(username_, config_->domain, ""); bare.ok()) {
    context_.hub->AccountRemoved(ref_, *bare);
  }
}

void C2sSession::CloseWithStreamError(std::string_view condition, std::string_view text,
                                      std::string_view app_condition) {
  if (state_ == State::kClosed || state_ == State::kClosing) return;
  if (state_ == State::kTlsHandshake || (sm_ && sm_->detached)) {
    Finish();  // no connection to tell
    return;
  }
  if (sm_ && sm_->resuming) sm_->resuming = false;  // the error goes on the new connection
  if (!header_sent_) {
    if (stream_id_.empty()) stream_id_ = RandomId(16);
    Send(HeaderXml());
    header_sent_ = true;
  }
  Send(StreamErrorXml(condition, text, app_condition));
  state_ = State::kClosing;
  closing_since_ = loop_.now_seconds();
  if (!writing_) Flush();
}

bool C2sSession::CheckDeadlines() {
  if (state_ == State::kClosed || handing_over_) return false;
  int64_t now = loop_.now_seconds();
  const Limits& l = config_->limits;
  if (sm_ && sm_->detached) {
    if (now - sm_->detached_since > sm_->resume_timeout) {
      spdlog::debug("[C{}] {}: not resumed in {} s; ending the session", ref_.id, jid_.Full(),
                    sm_->resume_timeout);
      Finish();
    }
    return false;
  }
  if (sm_ && sm_->resuming) return false;
  if (state_ == State::kClosing) {
    if (now - closing_since_ > kCloseGraceSeconds) Finish();
    return false;
  }
  if (state_ != State::kBound) {
    if (now - connected_at_ > l.auth_timeout)
      CloseWithStreamError("connection-timeout", "authentication took too long");
    return false;
  }
  if (stanza_started_ && now - stanza_started_at_ > l.stanza_timeout) {
    CloseWithStreamError("connection-timeout", "a stanza took too long to arrive");
    return false;
  }
  if (ping_sent_at_ != 0) {
    if (now - ping_sent_at_ > l.ping_timeout) {
      if (Resumable()) {
        LoseConnection();  // the client may come back and resume
      } else {
        CloseWithStreamError("connection-timeout", "no answer to ping");
      }
    }
    return false;
  }
  if (sm_ && !sm_->unacked.empty() && !sm_->request_outstanding) RequestAck();
  if (now - last_read_ > l.idle_timeout) {
    ping_sent_at_ = now;
    ++ping_counter_;
    SendOwnStanza(
        fmt::format("<iq type='get' id='nines-ping-{}' from='{}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                    ping_counter_, config_->domain, jid_.Full()));
    return false;
  }
  if (stanza_started_ || blocked_ > 0 || now - last_read_ < kCompactAfterIdleSeconds) return false;
  bool freed = parser_.Compact();
  if (sm_ && sm_->unacked.Release()) freed = true;
  if (!writing_ && out_offset_ == out_.size() && out_.capacity() > std::string().capacity()) {
    // The last burst's capacity, kept for nothing while idle. Only a buffer
    // of some size is worth a heap trim (base/memory.h).
    freed = freed || out_.capacity() >= 1024;
    std::string().swap(out_);
    out_offset_ = 0;
  }
  return freed;
}

void C2sSession::Finish() {
  if (state_ == State::kClosed) return;
  bool was_bound = state_ == State::kBound || (state_ == State::kClosing && !jid_.empty());
  state_ = State::kClosed;
  transport_.Close();
  if (throttle_timer_) throttle_timer_->cancel();
  // Released from a later handler: the caller's stack may still use `this`.
  if (in_flight_keep_alive_) loop_.Post([keep = std::move(in_flight_keep_alive_)] {});
  // Sent but unacknowledged, then held back (CSI): in the order they came.
  UnackedStanzas unacked;
  std::unique_ptr<std::list<Held>> held = std::move(held_);
  if (sm_) {
    if (sm_->device) {
      EndDevice();  // the token stays, ended, until the stored state is gone
    } else if (!sm_->token.empty()) {
      context_.resume_tokens.Remove(sm_->token, ref_);
    }
    if (sm_->keep_alive) loop_.Post([keep = std::move(sm_->keep_alive)] {});
    unacked = std::exchange(sm_->unacked, {});
  }
  pending_.clear();
  if (was_bound) context_.hub->Unbind(ref_, jid_);
  context_.sessions.Remove(ref_);
  if (counted_) {
    context_.connections.Release(transport_.remote_address());
    counted_ = false;
  }
  // XEP-0198 §4: what the client never acknowledged it may never have got.
  // The hub reroutes those messages (to another resource or offline storage).
  size_t rerouted = 0;
  unacked.ForEach([&](std::string_view xml, UnackedStanzas::Entry& stanza) {
    if (stanza.on_gone) {
      stanza.on_gone.Run(ref_, xml);
      ++rerouted;
    }
  });
  if (held) {
    for (auto& h : *held) {
      if (h.on_gone) {
        h.on_gone.Run(ref_, *h.xml);
        ++rerouted;
      }
    }
  }
  if (rerouted > 0) spdlog::debug("[C{}] {} unacknowledged messages rerouted", ref_.id, rerouted);
}

// ---------------------------------------------------------------------------
// Client state indication (XEP-0352)

bool C2sSession::HandleCsi(const Element& element) {
  const std::string& name = element.name();
  if (name != "active" && name != "inactive") {
    CloseWithStreamError("unsupported-stanza-type", "not a client state indication");
    return false;
  }
  if (!config_->csi_enabled || state_ != State::kBound) return true;  // not offered: nothing to do
  if (name == "inactive") {
    inactive_ = true;
    ReportAsleep();
    return true;
  }
  inactive_ = false;
  FlushHeld();
  ReportAsleep();
  return true;
}

bool C2sSession::HoldForCsi(std::shared_ptr<const std::string>& xml, OnGone& on_gone, int64_t archive_id) {
  CsiClass what = ClassifyForCsi(*xml);
  if (what.important) {
    FlushHeld();  // what came before it first
    return false;
  }
  if (!held_) held_ = std::make_unique<std::list<Held>>();
  if (!what.collapse_key.empty()) {
    for (auto it = held_->begin(); it != held_->end(); ++it) {
      if (it->collapse_key == what.collapse_key) {
        held_->erase(it);  // superseded; at most one per key is held
        break;
      }
    }
  }
  held_->push_back({std::move(what.collapse_key), std::move(xml), std::move(on_gone), archive_id});
  if (static_cast<int64_t>(held_->size()) > config_->csi_max_held) FlushHeld();
  return true;
}

void C2sSession::FlushHeld() {
  if (!held_) return;
  auto held = std::move(held_);
  const bool was_inactive = std::exchange(inactive_, false);  // so SendStanza does not hold them again
  const bool batching = in_read_;
  in_read_ = true;  // one write for the lot
  for (auto& h : *held) SendStanza(std::move(h.xml), std::move(h.on_gone), h.archive_id);
  in_read_ = batching;
  inactive_ = was_inactive;
  if (!in_read_ && !writing_) Flush();
}

}  // namespace nines::xmpp

