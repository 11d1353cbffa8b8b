// C2sSession: one client-to-server XMPP stream (RFC 6120), from TCP accept
// to close: STARTTLS or direct TLS, SASL, resource binding, then stanzas to
// the Hub.
//
// Life cycle
//   Start() creates the session on the accepting loop and registers it in
//   Sessions. It lives on that loop until it closes; async handlers hold a
//   shared_ptr to it. Close paths (peer close, stream error, timeout,
//   shutdown) all end in Finish(), which unbinds from the Hub, releases the
//   connection slot and removes the session from Sessions.
//
// Flow control
//   Input is read into the loop's scratch buffer and parsed at once. Reading
//   pauses (TCP backpressure reaches the peer) while the session waits on the
//   store, while the peer exceeds limits.stanzas_per_second, while
//   limits.messages_in_flight of its messages wait for their archive write,
//   and while more than half of limits.send_queue is queued to it. A peer whose queue passes
//   limits.send_queue is disconnected.
//
// Deadlines are checked by the loop's one-second tick: auth_timeout until
// bound, stanza_timeout for a started stanza (slowloris), idle_timeout then
// ping_timeout once bound.
//
// Stream management (XEP-0198, `stream_management.*`)
//   After <enable/> the session numbers the stanzas it reads (tickets) and
//   answers <r/> with the count handled, where a stanza the hub took as
//   pending counts only once StanzaDone(ticket) says it is durable (G1);
//   the count is of a prefix, so an ack never covers a stanza still waiting.
//   Stanzas it sends are kept (their bytes, in one buffer:
//   UnackedStanzas), with the hub's OnGone, until the client acknowledges
//   them. If the session ends with some unacknowledged, their OnGone runs
//   (the hub reroutes the message to another resource or to offline
//   storage), so nothing is lost by a dropped connection.
//   With resumption, a connection lost while bound detaches the session
//   instead of ending it: it stays bound (and keeps its keep-alive itself)
//   for the resume timeout, collecting stanzas. A new connection that
//   authenticates as the same account and presents the token hands its
//   transport, parser and unread input to the detached session on that
//   session's loop (Handover), so the hub's view of the resource never
//   changes; the session answers <resumed/> once every stanza it had read is
//   handled, then resends what the client has not acknowledged.
//
// Thread safety: every member is touched only on the session's loop.
//
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/limiter.h"
#include "net/transport.h"
#include "xml/stream_parser.h"
#include "xmpp/jid/jid.h"
#include "xmpp/on_gone.h"
#include "xmpp/sasl/sasl.h"
#include "xmpp/server_context.h"
#include "xmpp/session_ref.h"

namespace nines::xmpp {

class C2sSession : public std::enable_shared_from_this<C2sSession> {
 public:
  // Takes the accepted socket. `direct_tls`: XEP-0368 port, TLS before XMPP.
  static void Start(ServerContext& context, net::Loop& loop, boost::asio::ip::tcp::socket socket,
                    bool direct_tls);

  C2sSession(ServerContext& context, net::Loop& loop, boost::asio::ip::tcp::socket socket, bool direct_tls,
             SessionRef ref);
  ~C2sSession();

  // Queues serialised XML for the peer and writes what the socket takes.
  void Send(std::string_view xml);
  // Queues one stanza from the hub (Sessions::Deliver). With stream
  // management the session keeps its text, with `on_gone`, until the client
  // acknowledges it, and runs `on_gone` if the session ends first.
  // `archive_id`: see im::SessionPort::Deliver.
  void SendStanza(std::shared_ptr<const std::string> xml, OnGone on_gone = {}, int64_t archive_id = 0);
  // Sends <stream:error> with an RFC 6120 §4.9.3 condition (and an optional
  // application-specific condition element), closes the stream.
  void CloseWithStreamError(std::string_view condition, std::string_view text = {},
                            std::string_view app_condition = {});
  // Called by the loop tick. Returns true when it gave an idle session's
  // parser and buffers back to the allocator.
  bool CheckDeadlines();
  // The stanza `ticket`, which the hub took as pending
  // (xmpp::Hub::HandleStanza returned true), is finished. Reading resumes
  // once the count of such stanzas is back under half of
  // limits.messages_in_flight; XEP-0198 acknowledgements may now cover it.
  void StanzaDone(uint64_t ticket);

  SessionRef ref() const { return ref_; }
  const Jid& jid() const { return jid_; }
  bool bound() const { return state_ == State::kBound; }

 private:
  enum class State { kStreamStart, kTlsHandshake, kFeatures, kBinding, kBound, kClosing, kClosed };

  void Begin();
  void DoHandshake();
  void ArmRead();
  void OnReadable();
  void ProcessEvents(std::vector<xml::ParseEvent>& events, size_t from);
  // Returns false when processing must stop (blocked on async work or closed).
  bool HandleEvent(xml::ParseEvent& event);
  void HandleStreamOpen(const xml::Element& header);
  void SendFeatures();
  void HandleStartTls();
  void HandleAuth(const xml::Element& auth);
  void HandleSaslResponse(const xml::Element& response);
  void ContinueSasl(sasl::StepResult step);
  void SaslFailed(sasl::Failure failure, std::string_view text = {});
  void HandlePreBindStanza(xml::Element& stanza);
  // Returns true if the hub took the stanza as pending (see StanzaDone).
  bool HandleBoundStanza(xml::Element stanza, uint64_t ticket);
  bool HandleRegistration(xml::Element& iq, bool authenticated);
  void SendStanzaError(const xml::Element& stanza, std::string_view type, std::string_view condition,
                       std::string_view text = {});

  // Stream management (XEP-0198). State in StreamManagement (c2s_session.cc),
  // allocated at <enable/>, so sessions without it pay one pointer.
  struct StreamManagement;
  struct Handover;
  // Client state indication (XEP-0352, see csi.h).
  struct Held {
    std::string collapse_key;
    std::shared_ptr<const std::string> xml;
    OnGone on_gone;
    int64_t archive_id = 0;
  };
  bool HandleCsi(const xml::Element& element);
  // Holds a stanza for an inactive client; false: it is important, send it
  // (after flushing what is held).
  bool HoldForCsi(std::shared_ptr<const std::string>& xml, OnGone& on_gone, int64_t archive_id);
  void FlushHeld();
  bool HandleSm(const xml::Element& element);
  void HandleEnable(const xml::Element& enable);
  void HandleResume(const xml::Element& resume);
  void SmFailed(std::string_view condition);
  void NoteInbound(uint64_t ticket, bool pending);
  void SmAdvance();  // sends an owed <a/>; completes a resume once all is handled
  bool ApplyAck(uint32_t h);  // false: the count was impossible (stream closed)
  void RequestAck();
  // A stanza this session makes itself (errors, results, pings): counted
  // and kept for acknowledgement like those from the hub.
  void SendOwnStanza(std::string xml);
  bool Resumable() const;
  bool Attached() const;  // has a connection to write to (not detached or mid-resume)
  // The connection broke: detach if resumable, else Finish().
  void LoseConnection();
  void Detach();
  // Tells the hub if the session became asleep (detached or inactive) or
  // awake since it was last told (Hub::SetAsleep, for XEP-0357 push).
  // Writes what is queued once the loop has run the tasks already queued
  // on it (deliveries, acks), so that they share one write. Nothing if a
  // read is being handled (its end flushes) or a write is waiting.
  void FlushLater();
  // Sends sm_->ack_waiting after `delay` unless a write takes it along first.
  void SendAckAfter(std::chrono::milliseconds delay);
  void ReportAsleep();
  void StartHandover(SessionRef target, std::string previd, uint32_t h);
  void AdoptConnection(std::shared_ptr<Handover> handover);
  void HandoverFailed(std::shared_ptr<Handover> handover);
  void HandoverDone();
  void CompleteResume();
  // Resumption from the store (c2s_stream_management.cc).
  void StartDevice();  // at <enable resume='true'/>
  void PersistDevice();  // writes the row (or marks it dirty behind the write in flight)
  // True if the store has inbound count `h`; else has it written (SmAdvance
  // runs again when it lands).
  bool DeviceCovers(uint64_t h);
  void DevicePersisted(uint64_t written_h, bool ok);
  // The store no longer has this session's account (deleted by <remove/> or
  // behind the server's back): the hub ends its other sessions and forgets
  // it (xmpp::Hub::AccountRemoved); this one closes itself.
  void TellHubAccountRemoved();
  void NoteForDevice(const xml::Element& stanza);  // presence, carbons and roster flags the row keeps
  void EndDevice();  // at Finish: delete the row, or keep it detached across a shutdown
  void ResumeFromStore(std::string previd, uint32_t h);
  void StoredDeviceFound(Result<store::DeviceState> state, std::string previd, uint32_t h);
  void Restored(Result<Jid> jid);

  void Block() { ++blocked_; }
  // After STARTTLS or SASL success the peer must open a new stream. Some
  // close the old one instead (`</stream:stream>` right after <success/>);
  // that is answered with a plain close, not a stream error.
  void MarkStreamRestart();
  void Unblock();
  void Flush();
  void OnWritable();
  void Finish();
  std::string HeaderXml() const;
  std::vector<std::string> OfferedMechanisms() const;
  xml::ParserLimits CurrentParserLimits() const;
  void NoteFailedLogin(const std::string& username);
  bool LoginThrottled(const std::string& username) const;

  ServerContext& context_;
  net::Loop& loop_;
  net::Transport transport_;
  std::shared_ptr<const Config> config_;  // snapshot taken at connect and refreshed at auth
  std::shared_ptr<const net::TlsContext> tls_context_;
  xml::StreamParser parser_;
  SessionRef ref_;
  State state_ = State::kStreamStart;
  bool direct_tls_;
  bool header_sent_ = false;
  bool authenticated_ = false;
  bool reading_ = false;  // a read wait is armed
  bool writing_ = false;  // a write wait is armed
  bool in_read_ = false;  // inside OnReadable: output waits for FlushLater at the end
  bool counted_ = false;  // holds a ConnectionCounter slot
  bool stanza_started_ = false;
  bool stream_restarted_ = false;
  bool stream_bytes_seen_ = false;  // of the restarted stream
  bool closes_old_stream_ = false;  // its first bytes were an end tag
  int blocked_ = 0;                 // >0: async work in progress; reading paused
  int64_t in_flight_ = 0;           // stanzas the hub reported as pending (see StanzaDone)
  bool in_flight_blocked_ = false;  // holds one Block() for in_flight_
  // While reading is paused for in_flight_, no read or write handler owns
  // the session (handlers are what keep it alive): this does, until
  // StanzaDone() resumes reading or Finish() lets go.
  std::shared_ptr<C2sSession> in_flight_keep_alive_;
  std::unique_ptr<StreamManagement> sm_;  // XEP-0198, after <enable/>
  bool inactive_ = false;                 // XEP-0352: the client said <inactive/>
  bool reported_asleep_ = false;          // what the hub was last told (Hub::SetAsleep)
  std::unique_ptr<std::list<Held>> held_;  // while inactive
  uint64_t next_ticket_ = 0;              // the next bound stanza's number
  int64_t last_archive_id_ = 0;           // of the last incoming archived message sent (device cursor start)
  // Bumped whenever the transport is closed, detached or replaced: read and
  // write handlers armed on the old one check it and do nothing.
  uint32_t io_generation_ = 0;
  bool handing_over_ = false;  // this connection is moving to the session it resumes
  bool flush_posted_ = false;  // a deferred Flush() is queued on the loop (FlushLater)
  bool ack_flush_due_ = false;  // SendAckAfter's callback is queued on the loop
  std::shared_ptr<C2sSession> handover_keep_alive_;  // while handing over
  int sasl_failures_ = 0;
  int64_t connected_at_ = 0;  // loop seconds
  int64_t last_read_ = 0;
  int64_t stanza_started_at_ = 0;
  int64_t ping_sent_at_ = 0;  // 0: no ping outstanding
  int64_t closing_since_ = 0;
  uint64_t ping_counter_ = 0;
  std::string stream_id_;
  std::string sasl_mechanism_;
  std::string username_;
  Jid jid_;
  std::unique_ptr<sasl::Mechanism> sasl_;
  std::string out_;        // bytes queued for the peer
  size_t out_offset_ = 0;  // bytes of out_ already written
  // Parsed while blocked. A list, not a deque: an empty libstdc++ deque still
  // allocates ~600 bytes, and every idle session has an empty one.
  std::list<xml::ParseEvent> pending_;
  net::TokenBucket rate_;
  std::unique_ptr<boost::asio::steady_timer> throttle_timer_;  // only while throttled
};

}  // namespace nines::xmpp
