// Test fixture for im::Hub: real loops (not started; the test thread polls
// them), a FakeStore, and a FakePort that records what each session got.
//
// The fixture plays the session layer's part: Send() stamps 'from' and
// normalises 'to' exactly as C2sSession does before calling the hub.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/config.h"
#include "im/hub.h"
#include "im/iq_registry.h"
#include "im/session_port.h"
#include "im/testing/fake_store.h"
#include "net/loop_pool.h"
#include "xml/stream_parser.h"
#include "xmpp/jid/jid.h"

namespace nines::im::testing {

// Parses one stanza (in a jabber:client stream) from text.
inline xml::Element Parse(std::string_view text) {
  xml::StreamParser parser(xml::ParserLimits{});
  std::vector<xml::ParseEvent> events;
  parser.Feed(
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
      "to='example.com' version='1.0'>",
      events);
  parser.Feed(text, events);
  for (auto& e : events) {
    if (e.kind == xml::ParseEvent::Kind::kStanza) return std::move(e.element);
    if (e.kind == xml::ParseEvent::Kind::kError) {
      ADD_FAILURE() << "not well-formed: " << e.error_text << "\n" << text;
      return {};
    }
  }
  ADD_FAILURE() << "no stanza in: " << text;
  return {};
}

class FakePort final : public SessionPort {
 public:
  explicit FakePort(net::LoopPool& loops) : loops_(loops) {}

  struct Delivery {
    xmpp::SessionRef ref;
    std::string xml;
    int64_t archive_id = 0;
  };

  void Deliver(xmpp::SessionRef ref, std::shared_ptr<const std::string> xml, xmpp::OnGone on_gone,
               int64_t archive_id) override {
    if (gone_.count(ref.id) != 0) {
      if (on_gone) {
        loops_.loop(ref.loop).Post(
            [ref, xml = std::move(xml), on_gone = std::move(on_gone)]() mutable { on_gone.Run(ref, *xml); });
      }
      return;
    }
    deliveries_.push_back(Delivery{ref, *xml, archive_id});
  }
  void Kick(xmpp::SessionRef ref, std::string condition, std::string /*text*/) override {
    kicks_.emplace_back(ref, std::move(condition));
  }
  void StanzaDone(xmpp::SessionRef ref, uint64_t /*ticket*/) override { ++done_[ref.id]; }
  bool DeliverToDomain(std::string_view domain, std::shared_ptr<const std::string> xml,
                       std::function<void()> on_gone) override {
    auto it = domains_.find(std::string(domain));
    if (it == domains_.end()) return false;
    Deliver(it->second, std::move(xml), std::move(on_gone), 0);
    return true;
  }
  // An external component serving `domain` as session `ref` (XEP-0114):
  // what the hub routes there is recorded for `ref`.
  void ConnectDomain(std::string domain, xmpp::SessionRef ref) { domains_[std::move(domain)] = ref; }
  void DisconnectDomain(const std::string& domain) { domains_.erase(domain); }
  // How many pending stanzas of `ref` the hub reported finished.
  int done(xmpp::SessionRef ref) const {
    auto it = done_.find(ref.id);
    return it == done_.end() ? 0 : it->second;
  }

  // The session vanished (as if closed): deliveries run on_gone from now on.
  void SetGone(xmpp::SessionRef ref) { gone_.insert(ref.id); }

  // What `ref` received since the last call, parsed.
  std::vector<xml::Element> Take(xmpp::SessionRef ref) {
    std::vector<xml::Element> out;
    std::vector<Delivery> keep;
    for (auto& d : deliveries_) {
      if (d.ref == ref) {
        out.push_back(Parse(d.xml));
      } else {
        keep.push_back(std::move(d));
      }
    }
    deliveries_ = std::move(keep);
    return out;
  }
  std::vector<std::string> TakeRaw(xmpp::SessionRef ref) {
    std::vector<std::string> out;
    std::vector<Delivery> keep;
    for (auto& d : deliveries_) {
      if (d.ref == ref) {
        out.push_back(std::move(d.xml));
      } else {
        keep.push_back(std::move(d));
      }
    }
    deliveries_ = std::move(keep);
    return out;
  }
  // The archive ids (SessionPort::Deliver) of what `ref` has waiting, in order.
  std::vector<int64_t> ArchiveIds(xmpp::SessionRef ref) const {
    std::vector<int64_t> out;
    for (const auto& d : deliveries_) {
      if (d.ref == ref) out.push_back(d.archive_id);
    }
    return out;
  }
  const std::vector<std::pair<xmpp::SessionRef, std::string>>& kicks() const { return kicks_; }

 private:
  net::LoopPool& loops_;
  std::vector<Delivery> deliveries_;
  std::set<uint64_t> gone_;
  std::vector<std::pair<xmpp::SessionRef, std::string>> kicks_;
  std::map<uint64_t, int> done_;
  std::map<std::string, xmpp::SessionRef> domains_;
};

struct Session {
  xmpp::SessionRef ref;
  xmpp::Jid jid;  // bound full JID
  std::string full() const { return jid.Full(); }
  std::string bare() const { return jid.BareString(); }
};

class HubTest : public ::testing::Test {
 protected:
  static constexpr const char* kDomain = "example.com";

  explicit HubTest(size_t loops = 3) : loops_(loops) {}

  void SetUp() override { MakeHub(DefaultConfig()); }

  static Config DefaultConfig() {
    Config c;
    c.domain = kDomain;
    return c;
  }
  void MakeHub(Config config) {
    hub_.reset();
    config_ = std::make_unique<ConfigSource>(std::move(config));
    port_ = std::make_unique<FakePort>(loops_);
    hub_ = std::make_unique<Hub>(HubDeps{&loops_, nullptr, &store_, config_.get(), port_.get()});
    Drain();
  }
  void TearDown() override {
    Drain();
    hub_.reset();
  }

  // Runs every loop until no work is left.
  void Drain() {
    if (!loops_.PollUntilIdle()) FAIL() << "loops never went idle";
  }

  std::string Bare(std::string_view user) { return std::string(user) + "@" + kDomain; }

  // Creates the account (if needed) and binds a session on loop `loop`.
  Result<xmpp::Jid> TryBind(std::string_view user, std::string_view resource, xmpp::SessionRef ref) {
    store_.AddAccount(std::string(user));
    auto bare = xmpp::Jid::Parse(Bare(user));
    EXPECT_TRUE(bare.ok());
    std::optional<Result<xmpp::Jid>> out;
    hub_->Bind(ref, *bare, std::string(resource), [&](Result<xmpp::Jid> r) { out = std::move(r); });
    Drain();
    if (!out) return MakeError(Errc::kInternal, "bind never completed");
    return std::move(*out);
  }
  Session Login(std::string_view user, std::string_view resource = "res") {
    xmpp::SessionRef ref{static_cast<uint32_t>(next_id_ % loops_.size()), next_id_};
    ++next_id_;
    auto jid = TryBind(user, resource, ref);
    EXPECT_TRUE(jid.ok()) << (jid.ok() ? "" : jid.error().message);
    return Session{ref, jid.ok() ? *jid : xmpp::Jid()};
  }
  // Login, roster get, initial presence, and forget what arrived.
  Session Online(std::string_view user, std::string_view resource = "res", int priority = 0) {
    Session s = Login(user, resource);
    Send(s, "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    Send(s, "<presence><priority>" + std::to_string(priority) + "</priority></presence>");
    Forget(s);
    return s;
  }
  void Logout(const Session& s) {
    port_->SetGone(s.ref);
    hub_->Unbind(s.ref, s.jid);
    Drain();
  }

  // Sends a stanza as the session (stamped like C2sSession does) and drains.
  void Send(const Session& s, std::string_view text) {
    SendNoDrain(s, text);
    Drain();
  }
  void SendNoDrain(const Session& s, std::string_view text) {
    xml::Element stanza = Parse(text);
    stanza.SetAttr("from", s.full());
    if (const std::string* to = stanza.FindAttr("to")) {
      auto target = xmpp::Jid::Parse(*to);
      ASSERT_TRUE(target.ok()) << *to;
      stanza.SetAttr("to", target->Full());
    }
    hub_->HandleStanza(s.ref, s.jid, std::move(stanza), ++tickets_);
  }

  std::vector<xml::Element> Got(const Session& s) { return port_->Take(s.ref); }
  void Forget(const Session& s) { port_->Take(s.ref); }

  // What `s` received that has this element name (and type, if given).
  std::vector<xml::Element> GotNamed(const Session& s, std::string_view name,
                                     std::optional<std::string_view> type = std::nullopt) {
    std::vector<xml::Element> out;
    for (auto& e : Got(s)) {
      if (e.name() == name && (!type || e.Attr("type") == *type)) out.push_back(std::move(e));
    }
    return out;
  }

  // The stanzas in `v` with this element name (and type, if given; "" means no type).
  static std::vector<const xml::Element*> Named(const std::vector<xml::Element>& v, std::string_view name,
                                                std::optional<std::string_view> type = std::nullopt) {
    std::vector<const xml::Element*> out;
    for (auto& e : v) {
      if (e.name() == name && (!type || e.Attr("type") == *type)) out.push_back(&e);
    }
    return out;
  }
  // Sends `iq` as `s` and returns the one stanza that comes back.
  xml::Element Ask(const Session& s, const std::string& iq) {
    Forget(s);
    Send(s, iq);
    auto got = Got(s);
    EXPECT_EQ(got.size(), 1u) << iq;
    if (got.empty()) return {};
    return std::move(got[0]);
  }
  // The sorted disco#info features of an IQ result.
  static std::vector<std::string> Features(const xml::Element& result) {
    std::vector<std::string> out;
    const xml::Element* q = result.Child("query", "http://jabber.org/protocol/disco#info");
    if (q == nullptr) return out;
    for (const xml::Element* c : q->Children()) {
      if (c->name() == "feature") out.emplace_back(c->Attr("var"));
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  static bool Has(const std::vector<std::string>& v, std::string_view item) {
    return std::find(v.begin(), v.end(), item) != v.end();
  }
  static std::string ErrorCondition(const xml::Element& stanza) {
    const xml::Element* error = stanza.Child("error");
    if (error == nullptr) return "";
    for (const xml::Element* c : error->Children()) {
      if (c->name() != "text") return c->name();
    }
    return "";
  }

  net::LoopPool loops_;
  FakeStore store_;
  std::unique_ptr<ConfigSource> config_;
  std::unique_ptr<FakePort> port_;
  std::unique_ptr<Hub> hub_;
  uint64_t tickets_ = 0;  // the session's stanza numbers (xmpp::Hub::HandleStanza)
  uint64_t next_id_ = 1;
};

}  // namespace nines::im::testing
