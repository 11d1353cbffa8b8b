#include "im/hub.h"

#include "im/hub_impl.h"

namespace nines::im {

Hub::Hub(HubDeps deps) : impl_(std::make_unique<HubImpl>(deps)) {}
Hub::~Hub() = default;

void Hub::Bind(xmpp::SessionRef ref, const xmpp::Jid& bare, const std::string& requested,
               std::function<void(Result<xmpp::Jid>)> done) {
  impl_->Bind(ref, bare, requested, std::move(done));
}

void Hub::Restore(xmpp::SessionRef ref, const xmpp::Jid& bare, xmpp::RestoredResource restored,
                  std::function<void(Result<xmpp::Jid>)> done) {
  impl_->Restore(ref, bare, std::move(restored), std::move(done));
}

bool Hub::HandleStanza(xmpp::SessionRef ref, const xmpp::Jid& from, xml::Element stanza, uint64_t ticket) {
  return impl_->HandleStanza(ref, from, std::move(stanza), ticket);
}

void Hub::HandleFromComponent(xmpp::SessionRef ref, xml::Element stanza) {
  impl_->HandleFromComponent(ref, std::move(stanza));
}

void Hub::SetAsleep(xmpp::SessionRef ref, const xmpp::Jid& full, bool asleep) {
  impl_->SetAsleep(ref, full, asleep);
}

void Hub::Unbind(xmpp::SessionRef ref, const xmpp::Jid& full) { impl_->Unbind(ref, full); }
void Hub::AccountRemoved(xmpp::SessionRef by, const xmpp::Jid& bare) { impl_->AccountRemoved(by, bare); }

const IqRegistry& Hub::registry() const { return impl_->registry(); }

}  // namespace nines::im
