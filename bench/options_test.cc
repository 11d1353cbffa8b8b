#include "bench/options.h"

#include <gtest/gtest.h>

#include <sstream>
#include <vector>

namespace nines::bench {
namespace {

int Parse(std::vector<const char*> args, Options& o, std::string* err_text = nullptr) {
  args.insert(args.begin(), "nines-bench");
  std::ostringstream out, err;
  const int r = ParseOptions(static_cast<int>(args.size()), args.data(), o, out, err);
  if (err_text) *err_text = err.str();
  return r;
}

TEST(Options, Defaults) {
  Options o;
  ASSERT_EQ(Parse({"connect"}, o), -1);
  EXPECT_EQ(o.scenario, Scenario::kConnect);
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 5222);
  EXPECT_EQ(o.tls, TlsMode::kNone);
  EXPECT_EQ(o.mechanism, Mechanism::kAuto);
  EXPECT_EQ(o.password, "bench");
  EXPECT_EQ(FinishOptions(o, 20000), "");
  EXPECT_EQ(o.procs, 1u);
  EXPECT_EQ(o.sources, 1u);
}

TEST(Options, MessageScenarioFlagsBeforeAndAfterTheSubcommand) {
  Options o;
  ASSERT_EQ(Parse({"--port", "5300", "message", "-n", "1000", "--rate", "5000", "--window", "0", "--fanout", "3",
                   "--tls", "STARTTLS", "--mech", "scram-sha-256", "--json"},
                  o),
            -1);
  EXPECT_EQ(o.scenario, Scenario::kMessage);
  EXPECT_EQ(o.port, 5300);
  EXPECT_EQ(o.users, 1000u);
  EXPECT_EQ(o.rate, 5000);
  EXPECT_EQ(o.window, 0u);
  EXPECT_EQ(o.fanout, 3u);
  EXPECT_EQ(o.tls, TlsMode::kStartTls);
  EXPECT_EQ(o.mechanism, Mechanism::kScramSha256);
  EXPECT_TRUE(o.json);
  EXPECT_EQ(o.GroupSize(), 4u);
  EXPECT_EQ(FinishOptions(o, 20000), "");
}

TEST(Options, ProgressFlags) {
  Options a, b, c;
  ASSERT_EQ(Parse({"connect"}, a), -1);
  EXPECT_EQ(a.progress, -1);  // auto: when stderr is a terminal
  ASSERT_EQ(Parse({"connect", "--progress"}, b), -1);
  EXPECT_EQ(b.progress, 1);
  ASSERT_EQ(Parse({"connect", "--no-progress"}, c), -1);
  EXPECT_EQ(c.progress, 0);
}

TEST(Options, UsageErrors) {
  Options o;
  EXPECT_NE(Parse({}, o), -1);  // no subcommand
  Options a;
  EXPECT_NE(Parse({"connect", "--tls", "sometimes"}, a), -1);
  Options b;
  EXPECT_NE(Parse({"fly"}, b), -1);
  Options c;
  EXPECT_NE(Parse({"connect", "--users", "0"}, c), -1);
  Options h;
  EXPECT_EQ(Parse({"--help"}, h), 0);
}

TEST(Options, FinishChecksGroupsAndFiles) {
  Options o;
  ASSERT_EQ(Parse({"message", "-n", "1001"}, o), -1);
  EXPECT_NE(FinishOptions(o, 20000).find("multiple of the group size 2"), std::string::npos);

  Options p;
  ASSERT_EQ(Parse({"presence", "-n", "100", "-k", "9"}, p), -1);
  EXPECT_EQ(FinishOptions(p, 20000), "");

  Options w;
  ASSERT_EQ(Parse({"message", "-n", "10", "--window", "0"}, w), -1);
  EXPECT_NE(FinishOptions(w, 20000), "");  // unlimited window needs a rate

  // 19,000 sessions under a 20,000-file cap fit one process; 39,000 need two.
  Options big;
  ASSERT_EQ(Parse({"idle", "-n", "39000"}, big), -1);
  EXPECT_EQ(FinishOptions(big, 20000), "");
  EXPECT_EQ(big.procs, 2u);
  EXPECT_EQ(big.sources, 4u);

  Options forced;
  ASSERT_EQ(Parse({"idle", "-n", "39000", "--procs", "1"}, forced), -1);
  EXPECT_NE(FinishOptions(forced, 20000), "");

  // Fewer groups than loops: threads shrink.
  Options tiny;
  ASSERT_EQ(Parse({"message", "-n", "4", "--threads", "8"}, tiny), -1);
  EXPECT_EQ(FinishOptions(tiny, 20000), "");
  EXPECT_EQ(tiny.threads, 2u);

  Options remote;
  ASSERT_EQ(Parse({"connect", "--host", "192.0.2.1"}, remote), -1);
  EXPECT_EQ(FinishOptions(remote, 20000), "");
  EXPECT_EQ(remote.sources, 0u);
  Options bad_host;
  ASSERT_EQ(Parse({"connect", "--host", "localhost"}, bad_host), -1);
  EXPECT_NE(FinishOptions(bad_host, 20000), "");
}

}  // namespace
}  // namespace nines::bench
