// C2sSession, continued: XEP-0198 stream management (acknowledgements,
// resumption in memory and from the store). See c2s_session.h.

#include <fmt/format.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>

#include "base/log.h"
#include "xmpp/base64.h"
#include "xmpp/c2s_internal.h"
#include "xmpp/namespaces.h"
#include "xmpp/sessions.h"
#include "xmpp/stanza.h"

namespace nines::xmpp {

namespace asio = boost::asio;
using xml::Element;

namespace {

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The store keys a device by a hash of its token, so that reading the
// store does not hand out live resumption tokens.
std::string DeviceKey(std::string_view token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(token.data(), token.size(), digest, &size, EVP_sha256(), nullptr);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), size));
}


// An XEP-0198 'h' or 'max': a decimal unsigned 32-bit number.
std::optional<uint32_t> ParseU32(std::string_view text) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

}  // namespace

// ---------------------------------------------------------------------------
// Stream management (XEP-0198)

void C2sSession::SendStanza(std::shared_ptr<const std::string> xml, OnGone on_gone, int64_t archive_id) {
  if (state_ == State::kClosed || (state_ == State::kClosing && !sm_)) {
    // The stream has ended (or its end is being written): the hub routes
    // the message elsewhere rather than lose it after </stream:stream>.
    if (on_gone) on_gone.Run(ref_, *xml);
    return;
  }
  if (state_ == State::kClosing) {
    sm_->unacked.Push(*xml, std::move(on_gone), archive_id);  // rerouted by Finish()
    return;
  }
  if (inactive_ && HoldForCsi(xml, on_gone, archive_id)) return;
  if (state_ == State::kClosed || state_ == State::kClosing) {
    // Flushing what CSI held ended the stream (a write over the send queue,
    // say): this one goes where the stream's end sends it (the top).
    SendStanza(std::move(xml), std::move(on_gone), archive_id);
    return;
  }
  if (archive_id != 0) last_archive_id_ = archive_id;
  if (!sm_) {
    // Deliveries that reach this session in one pass of the loop (a burst
    // read from one sender, say) go out in one write.
    const bool batching = in_read_;
    in_read_ = true;
    Send(*xml);
    in_read_ = batching;
    FlushLater();
    return;
  }
  // Kept as bytes (UnackedStanzas); `xml` and what it keeps alive go now.
  sm_->unacked.Push(*xml, std::move(on_gone), archive_id);
  if (static_cast<int64_t>(sm_->unacked.size()) > config_->sm_max_unacked) {
    if (AllowPeerWarning()) {
      spdlog::info("[C{}] {}: over {} unacknowledged stanzas; ending the session", ref_.id, jid_.Full(),
                   config_->sm_max_unacked);
    }
    CloseWithStreamError("policy-violation", "too many unacknowledged stanzas");
    return;
  }
  if (!Attached()) return;  // held until the session is resumed
  // One write for the stanza and the request that may follow it.
  const bool batching = in_read_;
  in_read_ = true;
  Send(*xml);
  if (!sm_->request_outstanding && static_cast<int64_t>(sm_->unacked.size()) >= config_->sm_request_every) {
    RequestAck();
  }
  in_read_ = batching;
  FlushLater();
}

void C2sSession::FlushLater() {
  if (in_read_ || writing_ || flush_posted_ || state_ == State::kClosed) return;
  flush_posted_ = true;
  loop_.Post([self = shared_from_this()] {
    self->flush_posted_ = false;
    if (!self->in_read_ && !self->writing_) self->Flush();
  });
}

void C2sSession::SendAckAfter(std::chrono::milliseconds delay) {
  if (ack_flush_due_ || state_ == State::kClosed) return;
  ack_flush_due_ = true;
  loop_.RunAfter(delay, [self = shared_from_this()] {
    self->ack_flush_due_ = false;
    // Gone if a write took it along; otherwise the <a/> goes out alone.
    if (!self->sm_ || self->sm_->ack_waiting.empty()) return;
    // The answer this wait was armed for rode with a write, and a newer one
    // has waited less than the delay: it gets the rest of its own.
    const auto full = std::chrono::milliseconds(self->config_->sm_ack_delay_ms);
    const auto waited = std::chrono::steady_clock::now() - self->sm_->ack_waiting_since;
    if (waited < full) {
      self->SendAckAfter(std::chrono::ceil<std::chrono::milliseconds>(full - waited));
      return;
    }
    self->Send(std::string_view());
  });
}

void C2sSession::SendOwnStanza(std::string xml) {
  if (!sm_) {
    if (inactive_) FlushHeld();  // an answer the client waits for: keep order
    Send(xml);
    return;
  }
  SendStanza(std::make_shared<const std::string>(std::move(xml)));
}

bool C2sSession::Resumable() const {
  return sm_ && !sm_->token.empty() && state_ == State::kBound && !context_.shutting_down.load();
}

bool C2sSession::Attached() const { return !sm_ || (!sm_->detached && !sm_->resuming); }

void C2sSession::RequestAck() {
  if (!Attached()) return;
  sm_->request_outstanding = true;
  Send("<r xmlns='urn:xmpp:sm:3'/>");
}

void C2sSession::SmFailed(std::string_view condition) {
  Send(fmt::format("<failed xmlns='urn:xmpp:sm:3'><{} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>",
                   condition));
}

bool C2sSession::HandleSm(const Element& element) {
  const std::string& name = element.name();
  if (name == "enable") {
    HandleEnable(element);
  } else if (name == "resume") {
    HandleResume(element);
  } else if (name == "r") {
    if (sm_) {
      // Answered once every stanza read before it is handled (durable).
      sm_->ack_owed = true;
      sm_->ack_threshold = sm_->inbound.read();
      SmAdvance();
    }
  } else if (name == "a") {
    auto h = ParseU32(element.Attr("h"));
    if (!h) {
      CloseWithStreamError("invalid-xml", "<a/> needs a numeric 'h'");
      return false;
    }
    if (sm_) ApplyAck(*h);
  } else {
    CloseWithStreamError("unsupported-stanza-type", "not a stream management request");
  }
  return state_ != State::kClosing && state_ != State::kClosed;
}

void C2sSession::HandleEnable(const Element& enable) {
  if (!config_->sm_enabled) {
    SmFailed("feature-not-implemented");
    return;
  }
  if (state_ != State::kBound || sm_) {
    SmFailed("unexpected-request");  // before binding, or twice (XEP-0198 §3)
    return;
  }
  sm_ = std::make_unique<StreamManagement>(next_ticket_);
  std::string_view resume = enable.Attr("resume");
  if ((resume == "true" || resume == "1") && config_->sm_resume_timeout > 0) {
    sm_->resume_timeout = config_->sm_resume_timeout;
    if (auto max = ParseU32(enable.Attr("max")); max && *max > 0) {
      sm_->resume_timeout = std::min<int64_t>(sm_->resume_timeout, *max);
    }
    sm_->token = context_.resume_tokens.Issue(ref_, username_);
    if (config_->sm_resume_from_store) StartDevice();
    Send(fmt::format("<enabled xmlns='urn:xmpp:sm:3' id='{}' resume='true' max='{}'/>", sm_->token,
                     sm_->resume_timeout));
    return;
  }
  Send("<enabled xmlns='urn:xmpp:sm:3'/>");
}

void C2sSession::NoteInbound(uint64_t ticket, bool pending) {
  sm_->inbound.Read(ticket, pending);
  SmAdvance();
}

void C2sSession::SmAdvance() {
  auto* device = sm_->device.get();
  if (sm_->resuming) {
    if (!sm_->inbound.idle() || state_ != State::kBound) return;  // (from the store: not restored yet)
    // <resumed/> reports no more than the store has.
    if (device && !DeviceCovers(sm_->inbound.handled())) return;
    CompleteResume();
    return;
  }
  if (sm_->ack_owed && sm_->inbound.handled() >= sm_->ack_threshold) {
    uint64_t h = sm_->inbound.handled();
    if (device) {
      // The count goes into the store before the client hears it (see
      // StreamManagement::Device). Later stanzas may be handled by the time
      // the write lands; the ack then covers what was written.
      if (device->durable_h < sm_->ack_threshold) {
        DeviceCovers(h);
        return;
      }
      h = device->durable_h;
    }
    sm_->ack_owed = false;
    // Usually reached from StanzaDone, one handler per finished message. The
    // write waits for the next stanza to this client, for at most
    // stream_management.ack_delay_ms (or, at 0, for the end of this pass of
    // the loop), so that an ack and the deliveries around it share a syscall
    // and the client one wakeup. XEP-0198 sets no deadline for the answer.
    char digits[16];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, static_cast<uint32_t>(h));
    std::string ack = "<a xmlns='urn:xmpp:sm:3' h='";
    ack.append(digits, end);
    ack += "'/>";
    if (config_->sm_ack_delay_ms > 0) {
      if (sm_->ack_waiting.empty()) sm_->ack_waiting_since = std::chrono::steady_clock::now();
      sm_->ack_waiting = std::move(ack);
      SendAckAfter(std::chrono::milliseconds(config_->sm_ack_delay_ms));
      return;
    }
    const bool batching = in_read_;
    in_read_ = true;  // appended now, written by FlushLater with the pass's other output
    Send(ack);
    in_read_ = batching;
    FlushLater();
  }
}

bool C2sSession::ApplyAck(uint32_t h) {
  // Counts are mod 2^32 (XEP-0198 §4): the difference is what is new.
  uint32_t delta = h - static_cast<uint32_t>(sm_->acked);
  if (delta > sm_->unacked.size()) {
    auto sent = static_cast<uint32_t>(sm_->acked + sm_->unacked.size());
    CloseWithStreamError(
        "undefined-condition", "you acknowledged more stanzas than were sent",
        fmt::format("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='{}' send-count='{}'/>", h, sent));
    return false;
  }
  if (auto* device = sm_->device.get(); device && delta > 0) {
    // Archived incoming messages reach the session in id order, so the
    // last acknowledged one is the cursor (store.h, DeviceState).
    int64_t cursor = device->row.cursor;
    for (uint32_t i = 0; i < delta; ++i) cursor = std::max(cursor, sm_->unacked[i].archive_id);
    if (cursor != device->row.cursor) {
      device->row.cursor = cursor;
      PersistDevice();
    }
  }
  sm_->unacked.Drop(delta);
  sm_->acked += delta;
  sm_->request_outstanding = false;
  return true;
}

void C2sSession::LoseConnection() {
  if (Resumable()) {
    if (!sm_->detached) Detach();
    return;
  }
  Finish();
}

void C2sSession::Detach() {
  spdlog::debug("[C{}] {}: connection lost; resumable for {} s", ref_.id, jid_.Full(), sm_->resume_timeout);
  transport_.Close();
  ++io_generation_;
  reading_ = writing_ = false;
  if (counted_) {
    context_.connections.Release(transport_.remote_address());
    counted_ = false;
  }
  out_.clear();
  out_offset_ = 0;
  std::string().swap(out_);
  sm_->ack_waiting.clear();  // for the old connection: <resumed/> reports the count
  // Read but not handled, so not counted: the client sends them again.
  pending_.clear();
  parser_.Reset();
  stanza_started_ = false;
  ping_sent_at_ = 0;
  sm_->detached = true;
  sm_->resuming = false;
  sm_->detached_since = loop_.now_seconds();
  if (sm_->device) {
    sm_->device->row.detached_ms = UnixMs();
    PersistDevice();
  }
  sm_->request_outstanding = false;
  sm_->ack_owed = false;
  sm_->keep_alive = shared_from_this();
  ReportAsleep();
}

void C2sSession::ReportAsleep() {
  const bool asleep = (sm_ && sm_->detached) || inactive_;
  if (asleep == reported_asleep_ || state_ != State::kBound) return;
  reported_asleep_ = asleep;
  context_.hub->SetAsleep(ref_, jid_, asleep);
}

void C2sSession::HandleResume(const Element& resume) {
  if (!config_->sm_enabled) {
    SmFailed("feature-not-implemented");
    return;
  }
  if (!authenticated_ || state_ != State::kFeatures || sm_ || handing_over_) {
    SmFailed("unexpected-request");
    return;
  }
  auto h = ParseU32(resume.Attr("h"));
  std::string previd(resume.Attr("previd"));
  if (!h || previd.empty()) {
    SmFailed("bad-request");
    return;
  }
  auto entry = context_.resume_tokens.Find(previd);
  if (entry && entry->ended) {
    // That session is over, and its stored state is on its way out.
    SmFailed("item-not-found");
    return;
  }
  if (!entry && config_->sm_resume_from_store) {
    // Not a session of this process: perhaps one the store kept (the
    // server restarted, or crashed).
    ResumeFromStore(std::move(previd), *h);
    return;
  }
  // A token of another account is as good as none: say nothing more.
  if (!entry || entry->username != username_) {
    SmFailed("item-not-found");
    return;
  }
  // Hand over once this read's remaining input is in pending_ (the caller
  // moves it there because we are blocked now).
  Block();
  handing_over_ = true;
  loop_.Post([self = shared_from_this(), target = entry->ref, previd = std::move(previd), h = *h]() mutable {
    self->StartHandover(target, std::move(previd), h);
  });
}

void C2sSession::StartHandover(SessionRef target, std::string previd, uint32_t h) {
  if (state_ == State::kClosed) return;
  auto handover = std::make_shared<Handover>();
  handover->from = ref_;
  handover->previd = std::move(previd);
  handover->h = h;
  handover->username = username_;
  handover->remote_address = transport_.remote_address();
  handover->connection = transport_.Detach();
  ++io_generation_;
  reading_ = writing_ = false;
  handover->counted = std::exchange(counted_, false);
  handover->parser.emplace(std::move(parser_));
  parser_ = xml::StreamParser(CurrentParserLimits());
  handover->pending = std::move(pending_);
  pending_.clear();
  handover->out = out_.substr(out_offset_);
  out_.clear();
  out_offset_ = 0;
  handover->tls_context = tls_context_;
  handover->config = config_;
  handover->stream_id = stream_id_;
  // Nothing else owns this session until the answer comes back (through
  // Sessions, on this loop: no closure elsewhere holds it).
  handover_keep_alive_ = shared_from_this();
  auto& sessions = context_.sessions;
  auto& connections = context_.connections;
  context_.sessions.With(
      target, [handover](C2sSession& old) { old.AdoptConnection(handover); },
      [&sessions, &connections, handover] {
        sessions.With(
            handover->from, [handover](C2sSession& fresh) { fresh.HandoverFailed(handover); },
            [&connections, handover] {
              if (handover->counted) connections.Release(handover->remote_address);
            });
      });
}

void C2sSession::HandoverFailed(std::shared_ptr<Handover> handover) {
  if (state_ == State::kClosed) {
    if (handover->counted) context_.connections.Release(handover->remote_address);
    if (handover_keep_alive_) loop_.Post([keep = std::move(handover_keep_alive_)] {});
    return;  // `handover` closes the connection
  }
  transport_.Adopt(std::move(handover->connection));
  ++io_generation_;
  counted_ = handover->counted;
  parser_ = std::move(*handover->parser);
  pending_ = std::move(handover->pending);
  out_ = std::move(handover->out);
  out_offset_ = 0;
  handing_over_ = false;
  SmFailed("item-not-found");
  auto self = std::move(handover_keep_alive_);
  Unblock();
}

void C2sSession::HandoverDone() {
  handing_over_ = false;
  Finish();  // not bound, and the connection and its slot have moved: nothing else to release
  if (handover_keep_alive_) loop_.Post([keep = std::move(handover_keep_alive_)] {});
}

void C2sSession::AdoptConnection(std::shared_ptr<Handover> handover) {
  if (state_ != State::kBound || !sm_ || sm_->token != handover->previd || username_ != handover->username ||
      sm_->resuming) {
    auto& connections = context_.connections;
    context_.sessions.With(
        handover->from, [handover](C2sSession& fresh) { fresh.HandoverFailed(handover); },
        [&connections, handover] {
          if (handover->counted) connections.Release(handover->remote_address);
        });
    return;
  }
  if (!sm_->detached) {
    // The old connection looked alive (the client moved networks, say): it
    // is replaced without a word, as it may be dead.
    transport_.Close();
    if (counted_) context_.connections.Release(transport_.remote_address());
    counted_ = false;
    sm_->ack_waiting.clear();  // owed to that connection: <resumed/> reports the count
  }
  ++io_generation_;
  reading_ = writing_ = false;
  transport_.Adopt(std::move(handover->connection));
  counted_ = handover->counted;
  parser_ = std::move(*handover->parser);
  // Our own unread input belonged to the dead connection and was never
  // counted: the client resends it.
  pending_ = std::move(handover->pending);
  out_ = std::move(handover->out);
  out_offset_ = 0;
  tls_context_ = std::move(handover->tls_context);
  config_ = std::move(handover->config);
  stream_id_ = std::move(handover->stream_id);
  header_sent_ = true;
  stream_restarted_ = stream_bytes_seen_ = closes_old_stream_ = false;
  stanza_started_ = false;
  last_read_ = loop_.now_seconds();
  ping_sent_at_ = 0;
  sm_->detached = false;
  if (sm_->device) {
    sm_->device->row.detached_ms = 0;
    PersistDevice();
  }
  // Keep-alive stays until CompleteResume has armed a read on the new
  // connection (until then no handler owns the session).
  if (!sm_->keep_alive) sm_->keep_alive = shared_from_this();
  context_.sessions.With(handover->from, [](C2sSession& fresh) { fresh.HandoverDone(); });
  spdlog::debug("[C{}] {}: resumed from {}", ref_.id, jid_.Full(), transport_.remote_address());
  if (!ApplyAck(handover->h)) return;
  // <resumed/> reports what was handled; wait until that is everything read
  // on the old connection, so the client resends nothing we have.
  Block();
  sm_->resuming = true;
  // XEP-0352: a new stream starts active. What was held joins the
  // unacknowledged stanzas, which go out after <resumed/>.
  inactive_ = false;
  if (held_) {
    auto held = std::move(held_);
    for (auto& h : *held) SendStanza(std::move(h.xml), std::move(h.on_gone), h.archive_id);
  }
  ReportAsleep();
  SmAdvance();
}

void C2sSession::CompleteResume() {
  sm_->resuming = false;
  sm_->ack_owed = false;
  sm_->request_outstanding = false;
  // SmAdvance saw to it that the store has this count (with a device).
  Send(fmt::format("<resumed xmlns='urn:xmpp:sm:3' h='{}' previd='{}'/>",
                   static_cast<uint32_t>(sm_->inbound.handled()), sm_->token));
  // One Send per stanza, as the socket takes them (a single Send of them all
  // would be held to limits.send_queue at once), from a copy: a failed
  // write may end the session, which takes the kept stanzas away.
  if (!sm_->unacked.empty()) {
    const std::string kept(sm_->unacked.text());
    std::vector<uint32_t> sizes;
    sizes.reserve(sm_->unacked.size());
    sm_->unacked.ForEach(
        [&sizes](std::string_view xml, UnackedStanzas::Entry&) { sizes.push_back(xml.size()); });
    size_t at = 0;
    for (uint32_t size : sizes) {
      if (state_ == State::kClosed || !Attached()) break;
      Send(std::string_view(kept).substr(at, size));
      at += size;
    }
  }
  if (!sm_->unacked.empty()) RequestAck();
  Unblock();  // posts a read, which holds the session from now on
  // Unless a write above failed (the new connection was reset meanwhile):
  // then the session is detached again and its keep-alive, which Detach
  // took, is all that holds it until the next resume or the timeout.
  if (sm_->keep_alive && !sm_->detached) loop_.Post([keep = std::move(sm_->keep_alive)] {});
}

// ---------------------------------------------------------------------------
// Resumption from the store (docs/architecture.md, "Resumption from the store")

void C2sSession::StartDevice() {
  auto device = std::make_unique<StreamManagement::Device>();
  store::DeviceState& row = device->row;
  row.key = DeviceKey(sm_->token);
  row.username = username_;
  row.resource = jid_.resource();
  row.inbound_h = static_cast<int64_t>(sm_->inbound.handled());
  // Archived messages reach a session in id order: after the last one it
  // was sent, a replay misses none. With none yet, two seconds back covers
  // any archived just before <enable/> and still on its way here.
  row.cursor = last_archive_id_ != 0 ? last_archive_id_ : (UnixMs() - 2000) * 1000;
  row.resume_timeout_s = sm_->resume_timeout;
  device->durable_h = sm_->inbound.handled();
  sm_->device = std::move(device);
  PersistDevice();
}

bool C2sSession::DeviceCovers(uint64_t h) {
  auto* device = sm_->device.get();
  if (device->durable_h >= h) return true;
  // Written when the write in flight (if any) lands; a failed write is
  // retried by DevicePersisted.
  if (device->row.inbound_h < static_cast<int64_t>(h)) {
    device->row.inbound_h = static_cast<int64_t>(h);
    PersistDevice();
  }
  return false;
}

void C2sSession::PersistDevice() {
  auto* device = sm_->device.get();
  if (device->writing) {
    device->dirty = true;
    return;
  }
  device->writing = true;
  device->dirty = false;
  const auto written_h = static_cast<uint64_t>(device->row.inbound_h);
  context_.store.PutDeviceState(
      device->row, store::Reply<void>(loop_.executor(), [weak = weak_from_this(), written_h](Result<void> r) {
        auto self = weak.lock();
        if (!self) return;
        if (!r.ok() && r.error().code == Errc::kNotFound) {
          // The account is gone (deleted by `nines user del`, or by another
          // session): the session cannot be acknowledged or resumed, so it
          // ends rather than retrying for ever.
          spdlog::info("[C{}] {}: the account no longer exists; ending the session", self->ref_.id,
                       self->jid_.Full());
          if (self->sm_ && self->sm_->device) self->sm_->device->writing = false;
          self->TellHubAccountRemoved();
          self->CloseWithStreamError("not-authorized", "the account has been removed");
          return;
        }
        if (!r.ok()) {
          spdlog::warn("[C{}] {}: storing the resumption state failed: {}", self->ref_.id, self->jid_.Full(),
                       r.error().message);
        }
        self->DevicePersisted(written_h, r.ok());
      }));
}

void C2sSession::DevicePersisted(uint64_t written_h, bool ok) {
  if (!sm_ || !sm_->device) return;  // the session ended meanwhile (EndDevice took over)
  auto* device = sm_->device.get();
  device->writing = false;
  if (ok) {
    device->durable_h = std::max(device->durable_h, written_h);
  } else {
    device->dirty = true;  // try again: acks wait for it (G1)
  }
  if (device->dirty) {
    if (ok) {
      PersistDevice();
    } else {
      // Not at once: a store that fails fast would spin the loop.
      auto timer = std::make_shared<asio::steady_timer>(loop_.context(), std::chrono::milliseconds(200));
      timer->async_wait([weak = weak_from_this(), timer](boost::system::error_code) {
        auto self = weak.lock();
        if (self && self->sm_ && self->sm_->device && !self->sm_->device->writing) self->PersistDevice();
      });
    }
  }
  if (state_ != State::kClosed) SmAdvance();
}

void C2sSession::NoteForDevice(const Element& stanza) {
  auto& row = sm_->device->row;
  const std::string& name = stanza.name();
  bool changed = false;
  if (name == "presence") {
    const std::string* to = stanza.FindAttr("to");
    if (to != nullptr && *to != jid_.BareString()) return;  // directed presence
    std::string_view type = stanza.Attr("type");
    if (type.empty()) {
      xml::Element copy = stanza.Clone();
      copy.RemoveAttr("to");
      row.presence = copy.Serialize(ns::kClient);  // as the hub broadcasts it
      row.priority = PresencePriority(stanza);
      changed = true;
    } else if (type == "unavailable") {
      changed = !row.presence.empty();
      row.presence.clear();
    }
  } else if (name == "iq" && stanza.Children().size() == 1) {
    const Element& payload = *stanza.Children().front();
    std::string_view type = stanza.Attr("type");
    if (type == "set" && payload.ns() == "urn:xmpp:carbons:2" &&
        (payload.name() == "enable" || payload.name() == "disable")) {
      bool on = payload.name() == "enable";
      changed = row.carbons != on;
      row.carbons = on;
    } else if (type == "get" && payload.ns() == "jabber:iq:roster" && payload.name() == "query" && !row.roster_requested) {
      row.roster_requested = changed = true;
    }
  }
  if (changed) PersistDevice();
}

void C2sSession::EndDevice() {
  auto device = std::move(sm_->device);
  auto& tokens = context_.resume_tokens;
  if (context_.shutting_down.load() && !jid_.empty()) {
    // A planned restart: the client may resume with the next process.
    tokens.Remove(sm_->token, ref_);
    if (device->row.detached_ms == 0) device->row.detached_ms = UnixMs();
    context_.store.PutDeviceState(std::move(device->row), store::Reply<void>(loop_.executor(), [](Result<void>) {}));
    return;
  }
  // Over for good. Until the delete lands a read of the store could still
  // find the state, so the token stays behind, ended, and a <resume/> with
  // it fails here instead of reading the store (resume_tokens.h).
  tokens.End(sm_->token, ref_);
  context_.store.DeleteDeviceState(
      device->row.key,
      store::Reply<void>(loop_.executor(), [&tokens, token = sm_->token, ref = ref_](Result<void> done) {
        if (!done.ok()) {
          // The state stays until it expires (the sweep at start marks it
          // detached): keep refusing its token while this process runs.
          spdlog::warn("deleting a resumption state failed: {}", done.error().message);
          return;
        }
        tokens.Remove(token, ref);
      }));
}

void C2sSession::ResumeFromStore(std::string previd, uint32_t h) {
  Block();
  std::string key = DeviceKey(previd);  // before previd moves into the reply
  context_.store.GetDeviceState(
      std::move(key),
      store::Reply<store::DeviceState>(
          loop_.executor(), [self = shared_from_this(), previd = std::move(previd), h](
                                Result<store::DeviceState> state) mutable {
            self->StoredDeviceFound(std::move(state), std::move(previd), h);
          }));
}

void C2sSession::StoredDeviceFound(Result<store::DeviceState> state, std::string previd, uint32_t h) {
  if (state_ == State::kClosed || state_ == State::kClosing) {
    Unblock();
    return;
  }
  auto fail = [&](std::string_view why) {
    spdlog::debug("[C{}] no resumption from the store: {}", ref_.id, why);
    SmFailed("item-not-found");
    Unblock();
  };
  if (!state.ok()) {
    if (state.error().code != Errc::kNotFound) {
      spdlog::warn("[C{}] reading a resumption state failed: {}", ref_.id, state.error().message);
    }
    return fail("no such state");
  }
  // A token of another account is as good as none.
  if (state->username != username_) return fail("another account's");
  const int64_t now = UnixMs();
  if (state->detached_ms != 0 && now > state->detached_ms + state->resume_timeout_s * 1000) {
    context_.store.DeleteDeviceState(state->key, store::Reply<void>(loop_.executor(), [](Result<void>) {}));
    return fail("expired");
  }
  // Meanwhile this process may have resumed it already, from another
  // connection (then that session is the one to take over), or that
  // session may have ended for good (its token stays, ended, until the
  // state is deleted).
  if (context_.resume_tokens.Find(previd)) return fail("resumed meanwhile, or ended");
  auto bare = Jid::FromParts(username_, config_->domain, "");
  if (!bare.ok()) return fail("invalid JID");
  sm_ = std::make_unique<StreamManagement>(next_ticket_, static_cast<uint64_t>(state->inbound_h));
  sm_->token = previd;
  sm_->resume_timeout = state->resume_timeout_s;
  sm_->acked = h;  // what the client got from the old session: ours count on from there
  sm_->resuming = true;  // deliveries queue until <resumed/>
  auto device = std::make_unique<StreamManagement::Device>();
  device->durable_h = static_cast<uint64_t>(state->inbound_h);
  device->row = *state;
  device->row.detached_ms = 0;
  sm_->device = std::move(device);
  context_.resume_tokens.Register(previd, ref_, username_);
  RestoredResource restored;
  restored.resource = state->resource;
  restored.presence = state->presence;
  restored.priority = static_cast<int>(state->priority);
  restored.carbons = state->carbons;
  restored.roster_requested = state->roster_requested;
  restored.cursor = state->cursor;
  restored.max_replay = config_->sm_max_unacked;
  state_ = State::kBinding;
  context_.hub->Restore(ref_, *bare, std::move(restored),
                        [self = shared_from_this()](Result<Jid> jid) { self->Restored(std::move(jid)); });
}

void C2sSession::Restored(Result<Jid> jid) {
  if (state_ == State::kClosed || state_ == State::kClosing) {
    if (jid.ok()) context_.hub->Unbind(ref_, *jid);
    Unblock();
    return;
  }
  if (!jid.ok()) {
    spdlog::info("[C{}] resuming {}@{} from the store failed: {}", ref_.id, username_, config_->domain,
                 jid.error().message);
    context_.resume_tokens.Remove(sm_->token, ref_);
    // Not bound (any more): what reached us meanwhile goes elsewhere.
    UnackedStanzas unacked = std::exchange(sm_->unacked, {});
    sm_.reset();
    unacked.ForEach([this](std::string_view xml, UnackedStanzas::Entry& stanza) {
      if (stanza.on_gone) stanza.on_gone.Run(ref_, xml);
    });
    state_ = State::kFeatures;
    SmFailed("item-not-found");
    Unblock();
    return;
  }
  jid_ = std::move(jid.value());
  state_ = State::kBound;
  spdlog::debug("[C{}] {}: resumed from the store, after archive id {}", ref_.id, jid_.Full(),
                sm_->device->row.cursor);
  PersistDevice();  // attached again
  // <resumed/> once the device row covers the count it reports (SmAdvance),
  // then the replayed messages and whatever came since (CompleteResume).
  SmAdvance();
}

}  // namespace nines::xmpp
