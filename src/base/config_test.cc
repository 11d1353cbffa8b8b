#include "base/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace nines {
namespace {

TEST(ConfigTest, EmptyTextGivesDefaults) {
  auto c = ParseConfig("", "test.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->domain, "localhost");
  EXPECT_EQ(c->c2s_port, 5222);
  EXPECT_TRUE(c->require_tls);
  EXPECT_EQ(c->SqlitePath(), "nines-data/nines.db");
}

TEST(ConfigTest, ParsesKeysInSections) {
  auto c = ParseConfig(
      "[server]\ndomain = \"example.org\"\ndata_dir = \"/tmp/x\"\n"
      "[listen]\nc2s_port = 0\n[limits]\nstanza_size = 4096\n[auth]\nmechanisms = [\"PLAIN\"]\n",
      "t.toml");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->domain, "example.org");
  EXPECT_EQ(c->c2s_port, 0);
  EXPECT_EQ(c->limits.stanza_size, 4096);
  EXPECT_EQ(c->sasl_mechanisms, std::vector<std::string>{"PLAIN"});
  EXPECT_EQ(c->SqlitePath(), "/tmp/x/nines.db");
}

TEST(ConfigTest, UnknownKeyNamesKeyAndLine) {
  auto c = ParseConfig("[server]\ndomain = \"a\"\n\ndoman = \"b\"\n", "my.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("server.doman"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("line 4"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("my.toml"), std::string::npos) << c.error().message;
}

TEST(ConfigTest, UnknownSectionIsAnError) {
  auto c = ParseConfig("[nope]\nx = 1\n", "t.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("nope.x"), std::string::npos) << c.error().message;
}

TEST(ConfigTest, TopLevelKeyIsAnError) {
  auto c = ParseConfig("domain = \"x\"\n", "t.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("'domain'"), std::string::npos) << c.error().message;
}

TEST(ConfigTest, WrongTypeAndBoundsAreErrors) {
  auto t = ParseConfig("[limits]\nstanza_size = \"big\"\n", "t.toml");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("must be an integer"), std::string::npos);
  auto b = ParseConfig("[limits]\nstanza_size = 10\n", "t.toml");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("outside"), std::string::npos) << b.error().message;
}

TEST(ConfigTest, SyntaxErrorNamesLine) {
  auto c = ParseConfig("[server]\ndomain = \n", "t.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("line 2"), std::string::npos) << c.error().message;
}

TEST(ConfigTest, UnknownMechanismIsAnError) {
  auto c = ParseConfig("[auth]\nmechanisms = [\"CRAM-MD5\"]\n", "t.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("CRAM-MD5"), std::string::npos);
}

TEST(ConfigTest, MergeReloadableTakesOnlyReloadableKeys) {
  Config current;
  Config fresh;
  fresh.domain = "other";                 // restart-only
  fresh.limits.stanza_size = 1234;        // reloadable
  fresh.registration_enabled = true;      // reloadable
  Config merged = MergeReloadable(current, fresh);
  EXPECT_EQ(merged.domain, "localhost");
  EXPECT_EQ(merged.limits.stanza_size, 1234);
  EXPECT_TRUE(merged.registration_enabled);
}

TEST(ConfigTest, RestartOnlyChangesNamesOnlyRestartKeys) {
  Config current;
  Config fresh;
  fresh.domain = "other";           // restart-only
  fresh.c2s_port = 1;               // restart-only
  fresh.limits.stanza_size = 1234;  // reloadable: not listed
  EXPECT_EQ(RestartOnlyChanges(current, fresh), (std::vector<std::string>{"server.domain", "listen.c2s_port"}));
  EXPECT_TRUE(RestartOnlyChanges(current, current).empty());
}

TEST(ConfigTest, ComponentSecretsAreCheckedAndLookedUp) {
  auto ok = ParseConfig("[components]\nsecrets = [\"push.localhost=0123456789abcdef=x\", \"gw.localhost=fedcba9876543210\"]\n",
                        "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->ComponentSecret("push.localhost"), "0123456789abcdef=x") << "split at the first '='";
  EXPECT_EQ(ok->ComponentSecret("gw.localhost"), "fedcba9876543210");
  EXPECT_EQ(ok->ComponentSecret("other.localhost"), "");
  EXPECT_EQ(ok->ComponentSecret("push"), "");

  struct Case {
    const char* value;
    const char* says;
  };
  for (const Case& c : {Case{"\"push.localhost\"", "is not"}, Case{"\"=0123456789abcdef\"", "is not"},
                        Case{"\"push.localhost=short\"", "shorter than 16"},
                        Case{"\"Push.localhost=0123456789abcdef\"", "lower case"},
                        Case{"\"localhost=0123456789abcdef\"", "own domain"},
                        Case{"\"a.localhost=0123456789abcdef\", \"a.localhost=0123456789abcdeg\"", "twice"}}) {
    auto bad = ParseConfig(std::string("[components]\nsecrets = [") + c.value + "]\n", "t.toml");
    ASSERT_FALSE(bad.ok()) << c.value;
    EXPECT_NE(bad.error().message.find(c.says), std::string::npos) << bad.error().message;
    EXPECT_NE(bad.error().message.find("components.secrets"), std::string::npos) << bad.error().message;
  }
}

TEST(ConfigTest, ServiceUrisAreParsedAndChecked) {
  auto stun = ParseServiceUri("stun:stun.example.org");
  ASSERT_TRUE(stun.ok());
  EXPECT_EQ(stun->type, "stun");
  EXPECT_EQ(stun->host, "stun.example.org");
  EXPECT_EQ(stun->port, 3478);
  EXPECT_EQ(stun->transport, "udp");
  auto turns = ParseServiceUri("turns:[2001:db8::1]:443?transport=tcp");
  ASSERT_TRUE(turns.ok()) << turns.error().message;
  EXPECT_EQ(turns->host, "2001:db8::1");
  EXPECT_EQ(turns->port, 443);
  EXPECT_EQ(turns->transport, "tcp");
  auto turn = ParseServiceUri("turn:turn.example.org?transport=tcp");
  ASSERT_TRUE(turn.ok());
  EXPECT_EQ(turn->port, 3478);
  EXPECT_EQ(turn->transport, "tcp");
  EXPECT_EQ(ParseServiceUri("turns:t.example.org")->port, 5349);
  for (const char* bad : {"http://x", "stun:", "stun:host:0", "stun:host:99999", "stun:host:12ab",
                          "stun:host?transport=tcp", "turn:host?transport=sctp", "turn:[::1", "turn:a@b"}) {
    EXPECT_FALSE(ParseServiceUri(bad).ok()) << bad;
  }
  auto config = ParseConfig("[external_services]\nuris = [\"stun:ok.example\", \"turn:bad:0\"]\n", "t.toml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.error().message.find("external_services.uris"), std::string::npos) << config.error().message;
  EXPECT_NE(config.error().message.find("turn:bad:0"), std::string::npos);
}

// docs/config.md is generated from the schema; this keeps them in step.
TEST(ConfigTest, DocsMatchSchema) {
  const char* src = std::getenv("NINES_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "run through ctest (sets NINES_SOURCE_DIR)";
  std::ifstream in(std::string(src) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md missing";
  std::stringstream s;
  s << in.rdbuf();
  EXPECT_EQ(s.str(), ConfigDocMarkdown())
      << "docs/config.md is stale: regenerate with `nines config doc > docs/config.md`";
}

}  // namespace
}  // namespace nines
