// XEP-0215 external service discovery through the hub.

#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "im/stanza_text.h"
#include "im/testing/hub_fixture.h"
#include "xmpp/base64.h"

namespace nines::im {
namespace {

using testing::HubTest;
using testing::Session;

class ExtDiscoTest : public HubTest {
 protected:
  void SetUp() override {
    Config c = DefaultConfig();
    c.external_services = {"stun:stun.example.com", "turn:turn.example.com?transport=tcp",
                           "turns:turn.example.com:443?transport=tcp"};
    c.turn_secret = "coturn-shared-secret";
    c.turn_credential_lifetime = 600;
    MakeHub(c);
  }
  static std::vector<const xml::Element*> ServicesIn(const xml::Element& iq, std::string_view wrapper) {
    const xml::Element* w = iq.Child(wrapper, "urn:xmpp:extdisco:2");
    return w != nullptr ? w->Children() : std::vector<const xml::Element*>{};
  }
};

TEST_F(ExtDiscoTest, ServicesWithTurnRestCredentials) {
  Session alice = Online("alice", "phone");
  auto info = Ask(alice, "<iq type='get' id='d' to='example.com'><query "
                         "xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  EXPECT_TRUE(Has(Features(info), "urn:xmpp:extdisco:2"));

  const int64_t before = NowUnixMs() / 1000;
  xml::Element r = Ask(alice, "<iq type='get' id='s' to='example.com'><services xmlns='urn:xmpp:extdisco:2'/></iq>");
  ASSERT_EQ(r.Attr("type"), "result") << r.Serialize();
  auto services = ServicesIn(r, "services");
  ASSERT_EQ(services.size(), 3u);
  const xml::Element& stun = *services[0];
  EXPECT_EQ(stun.Attr("type"), "stun");
  EXPECT_EQ(stun.Attr("host"), "stun.example.com");
  EXPECT_EQ(stun.Attr("port"), "3478");
  EXPECT_EQ(stun.Attr("transport"), "udp");
  EXPECT_FALSE(stun.HasAttr("username")) << "STUN needs no credentials";
  const xml::Element& turn = *services[1];
  EXPECT_EQ(turn.Attr("type"), "turn");
  EXPECT_EQ(turn.Attr("transport"), "tcp");
  EXPECT_EQ(turn.Attr("restricted"), "1");
  std::string username(turn.Attr("username"));
  size_t colon = username.find(':');
  ASSERT_NE(colon, std::string::npos) << username;
  EXPECT_EQ(username.substr(colon + 1), "alice@example.com");
  const int64_t expiry = std::stoll(username.substr(0, colon));
  EXPECT_GE(expiry, before + 600);
  EXPECT_LE(expiry, before + 602);
  int64_t expires_ms = 0;
  ASSERT_TRUE(ParseTimestamp(turn.Attr("expires"), expires_ms));
  EXPECT_EQ(expires_ms, expiry * 1000);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const std::string secret = "coturn-shared-secret";
  HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(username.data()), username.size(), mac, &len);
  EXPECT_EQ(turn.Attr("password"), xmpp::Base64Encode(std::string_view(reinterpret_cast<const char*>(mac), len)));
  EXPECT_EQ(services[2]->Attr("port"), "443");
  EXPECT_EQ(services[2]->Attr("type"), "turns");

  r = Ask(alice, "<iq type='get' id='t' to='example.com'><services xmlns='urn:xmpp:extdisco:2' type='stun'/></iq>");
  services = ServicesIn(r, "services");
  ASSERT_EQ(services.size(), 1u) << "filtered by type";
  EXPECT_EQ(services[0]->Attr("type"), "stun");

  r = Ask(alice, "<iq type='get' id='c' to='example.com'><credentials xmlns='urn:xmpp:extdisco:2'>"
                 "<service host='turn.example.com' type='turns'/></credentials></iq>");
  services = ServicesIn(r, "credentials");
  ASSERT_EQ(services.size(), 1u) << r.Serialize();
  EXPECT_EQ(services[0]->Attr("port"), "443");
  EXPECT_TRUE(services[0]->HasAttr("password"));
  r = Ask(alice, "<iq type='get' id='c2' to='example.com'><credentials xmlns='urn:xmpp:extdisco:2'>"
                 "<service host='elsewhere.example.com' type='turn'/></credentials></iq>");
  EXPECT_EQ(ErrorCondition(r), "item-not-found");
  r = Ask(alice, "<iq type='get' id='c3' to='example.com'><credentials xmlns='urn:xmpp:extdisco:2'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "bad-request");
}

TEST_F(ExtDiscoTest, NotOfferedWithoutServicesAndNoCredentialsWithoutASecret) {
  Config c = DefaultConfig();
  MakeHub(c);
  Session alice = Online("alice", "phone");
  auto info = Ask(alice, "<iq type='get' id='d' to='example.com'><query "
                         "xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  EXPECT_FALSE(Has(Features(info), "urn:xmpp:extdisco:2"));
  xml::Element r = Ask(alice, "<iq type='get' id='s' to='example.com'><services xmlns='urn:xmpp:extdisco:2'/></iq>");
  EXPECT_EQ(ErrorCondition(r), "service-unavailable");

  c.external_services = {"turn:turn.example.com"};
  MakeHub(c);
  Session bob = Online("bob", "desk");
  r = Ask(bob, "<iq type='get' id='s' to='example.com'><services xmlns='urn:xmpp:extdisco:2'/></iq>");
  auto services = ServicesIn(r, "services");
  ASSERT_EQ(services.size(), 1u);
  EXPECT_FALSE(services[0]->HasAttr("username")) << "no secret: the TURN server has its own users";
}

}  // namespace
}  // namespace nines::im
