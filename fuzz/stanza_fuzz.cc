// libFuzzer target: stanza handling.
//
// The input is a client's byte stream after authentication. It is parsed with
// the post-auth limits, each stanza is checked and stamped exactly as
// C2sSession::HandleBoundStanza does, and handed to a real im::Hub (over an
// in-memory store, with loops polled on this thread) from one of three bound
// sessions of two accounts. The first byte of every stanza's 'id' chooses the
// session; a stanza whose id starts with '!' logs that session out and in
// again, and one starting with '~' puts it to sleep or wakes it (XEP-0198
// detach / XEP-0352, Hub::SetAsleep). A stanza whose id starts with '#'
// comes from the external component push.example.com instead (checked as
// ComponentSession does), which is also where stanzas for that domain go.
// Crashes, sanitizer reports and leaks are the findings.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/config.h"
#include "im/hub.h"
#include "im/session_port.h"
#include "im/testing/fake_store.h"
#include "net/loop_pool.h"
#include "xml/stream_parser.h"
#include "xmpp/jid/jid.h"
#include "xmpp/stanza.h"

namespace {

using nines::xmpp::Jid;
using nines::xmpp::SessionRef;

class NullPort final : public nines::im::SessionPort {
 public:
  void Deliver(SessionRef, std::shared_ptr<const std::string> xml, nines::xmpp::OnGone, int64_t) override {
    bytes += xml->size();
  }
  void Kick(SessionRef, std::string, std::string) override {}
  void StanzaDone(SessionRef, uint64_t) override {}
  bool DeliverToDomain(std::string_view domain, std::shared_ptr<const std::string> xml,
                       std::function<void()>) override {
    if (domain != "push.example.com") return false;
    bytes += xml->size();
    return true;
  }
  size_t bytes = 0;
};

struct World {
  nines::net::LoopPool loops{2};
  nines::im::testing::FakeStore store;
  std::unique_ptr<nines::ConfigSource> config;
  NullPort port;
  std::unique_ptr<nines::im::Hub> hub;
  struct Client {
    SessionRef ref;
    Jid jid;
    bool asleep = false;
  };
  SessionRef component{0, 1000000};
  std::vector<Client> clients;
  uint64_t next_id = 1;
  uint64_t next_ticket = 0;

  World() {
    nines::Config c;
    c.domain = "example.com";
    c.component_secrets = {"push.example.com=0123456789abcdef"};
    config = std::make_unique<nines::ConfigSource>(c);
    hub = std::make_unique<nines::im::Hub>(nines::im::HubDeps{&loops, nullptr, &store, config.get(), &port});
    store.AddAccount("alice");
    store.AddAccount("bob");
    for (auto [user, res] : {std::pair{"alice", "a1"}, std::pair{"alice", "a2"}, std::pair{"bob", "b1"}}) {
      clients.push_back(Bind(user, res));
    }
  }
  ~World() {
    Drain();
    hub.reset();
  }
  void Drain() { loops.PollUntilIdle(); }
  Client Bind(const char* user, const char* resource) {
    SessionRef ref{static_cast<uint32_t>(next_id % loops.size()), next_id};
    ++next_id;
    auto bare = Jid::Parse(std::string(user) + "@example.com");
    Jid bound;
    hub->Bind(ref, *bare, resource, [&](nines::Result<Jid> r) {
      if (r.ok()) bound = *r;
    });
    Drain();
    return {ref, bound};
  }
};

// Mirrors C2sSession::HandleBoundStanza's checks before the hub.
void Deliver(World& world, World::Client& client, nines::xml::Element stanza) {
  const std::string& name = stanza.name();
  if (stanza.ns() != "jabber:client" || (name != "message" && name != "presence" && name != "iq")) return;
  if (const std::string* from = stanza.FindAttr("from")) {
    auto claimed = Jid::Parse(*from);
    if (!claimed.ok() || (*claimed != client.jid && *claimed != client.jid.Bare())) return;
  }
  stanza.SetAttr("from", client.jid.Full());
  if (const std::string* to = stanza.FindAttr("to")) {
    auto target = Jid::Parse(*to);
    if (!target.ok()) return;
    stanza.SetAttr("to", target->Full());
  }
  if (name == "iq" && !nines::xmpp::IqShapeProblem(stanza).empty()) return;
  world.hub->HandleStanza(client.ref, client.jid, std::move(stanza), world.next_ticket++);
}

// Mirrors ComponentSession::HandleStanza's checks before the hub.
void FromComponent(World& world, nines::xml::Element stanza) {
  const std::string& name = stanza.name();
  if (stanza.ns() != "jabber:client" || (name != "message" && name != "presence" && name != "iq")) return;
  auto from = Jid::Parse(stanza.HasAttr("from") ? stanza.Attr("from") : "push.example.com");
  if (!from.ok() || from->domain() != "push.example.com") return;
  stanza.SetAttr("from", from->Full());
  auto to = Jid::Parse(stanza.Attr("to"));
  if (!stanza.HasAttr("to") || !to.ok()) return;
  stanza.SetAttr("to", to->Full());
  if (name == "iq" && !nines::xmpp::IqShapeProblem(stanza).empty()) return;
  world.hub->HandleFromComponent(world.component, std::move(stanza));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World world;
  nines::xml::StreamParser parser(nines::xml::ParserLimits{});
  std::vector<nines::xml::ParseEvent> events;
  parser.Feed(
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' "
      "version='1.0'>",
      events);
  parser.Feed(std::string_view(reinterpret_cast<const char*>(data), size), events);
  for (auto& event : events) {
    if (event.kind != nines::xml::ParseEvent::Kind::kStanza) continue;
    std::string_view id = event.element.Attr("id");
    if (!id.empty() && id[0] == '#') {
      FromComponent(world, std::move(event.element));
      world.Drain();
      continue;
    }
    size_t which = id.empty() ? 0 : static_cast<unsigned char>(id[0]) % world.clients.size();
    auto& client = world.clients[which];
    if (!id.empty() && id[0] == '!') {
      world.hub->Unbind(client.ref, client.jid);
      world.Drain();
      client = world.Bind(which == 2 ? "bob" : "alice", which == 0 ? "a1" : which == 1 ? "a2" : "b1");
      continue;
    }
    if (!id.empty() && id[0] == '~') {
      client.asleep = !client.asleep;
      world.hub->SetAsleep(client.ref, client.jid, client.asleep);
      world.Drain();
      continue;
    }
    Deliver(world, client, std::move(event.element));
    world.Drain();
  }
  return 0;
}
