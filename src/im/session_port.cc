#include "im/session_port.h"

#include "xmpp/c2s_session.h"
#include "xmpp/sessions.h"

namespace nines::im {
namespace {

class SessionsPort final : public SessionPort {
 public:
  explicit SessionsPort(xmpp::Sessions* sessions) : sessions_(sessions) {}
  void Deliver(xmpp::SessionRef ref, std::shared_ptr<const std::string> xml, xmpp::OnGone on_gone,
               int64_t archive_id) override {
    sessions_->Deliver(ref, std::move(xml), std::move(on_gone), archive_id);
  }
  void Kick(xmpp::SessionRef ref, std::string condition, std::string text) override {
    sessions_->Kick(ref, std::move(condition), std::move(text));
  }
  void StanzaDone(xmpp::SessionRef ref, uint64_t ticket) override {
    sessions_->StanzaDone(ref, ticket);
  }
  bool DeliverToDomain(std::string_view domain, std::shared_ptr<const std::string> xml,
                       std::function<void()> on_gone) override {
    return sessions_->DeliverToDomain(domain, std::move(xml), std::move(on_gone));
  }

 private:
  xmpp::Sessions* sessions_;
};

}  // namespace

std::unique_ptr<SessionPort> MakeSessionsPort(xmpp::Sessions* sessions) {
  return std::make_unique<SessionsPort>(sessions);
}

}  // namespace nines::im
