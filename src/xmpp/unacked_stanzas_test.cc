#include "xmpp/unacked_stanzas.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace nines::xmpp {
namespace {

std::vector<std::string> Texts(UnackedStanzas& kept) {
  std::vector<std::string> out;
  kept.ForEach([&](std::string_view xml, UnackedStanzas::Entry&) { out.emplace_back(xml); });
  return out;
}

TEST(UnackedStanzas, KeepsTheTextsInOrderUntilDropped) {
  UnackedStanzas kept;
  kept.Push("<message id='1'/>", {}, 7);
  kept.Push("<iq id='2'/>", {}, 0);
  kept.Push("<message id='3'/>", {}, 9);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].archive_id, 7);
  EXPECT_EQ(kept[2].archive_id, 9);
  EXPECT_EQ(Texts(kept),
            (std::vector<std::string>{"<message id='1'/>", "<iq id='2'/>", "<message id='3'/>"}));
  kept.Drop(1);
  EXPECT_EQ(kept[0].archive_id, 0);
  EXPECT_EQ(Texts(kept), (std::vector<std::string>{"<iq id='2'/>", "<message id='3'/>"}));
  kept.Drop(2);
  EXPECT_TRUE(kept.empty());
  EXPECT_TRUE(Texts(kept).empty());
  kept.Push("<message id='4'/>", {}, 0);
  EXPECT_EQ(Texts(kept), (std::vector<std::string>{"<message id='4'/>"}));
}

// Acknowledgements move an offset and now and then the rest of the buffer:
// whatever the pattern, what is left is exactly what was not dropped.
TEST(UnackedStanzas, DroppingInAnyPatternLeavesExactlyTheRest) {
  std::mt19937 random(42);
  UnackedStanzas kept;
  std::deque<std::string> model;
  int next = 0;
  for (int round = 0; round < 2000; ++round) {
    int pushes = static_cast<int>(random() % 20);
    for (int i = 0; i < pushes; ++i) {
      std::string text =
          "<message id='" + std::to_string(next++) + "'>" + std::string(random() % 300, 'x') + "</message>";
      kept.Push(text, {}, next);
      model.push_back(std::move(text));
    }
    size_t drop = model.empty() ? 0 : random() % (model.size() + 1);
    kept.Drop(drop);
    model.erase(model.begin(), model.begin() + static_cast<ptrdiff_t>(drop));
    ASSERT_EQ(kept.size(), model.size());
    if (round % 97 == 0) {
      ASSERT_EQ(Texts(kept), std::vector<std::string>(model.begin(), model.end())) << "round " << round;
    }
  }
  EXPECT_EQ(Texts(kept), std::vector<std::string>(model.begin(), model.end()));
}

TEST(UnackedStanzas, ReleasesItsMemoryOnlyWhenNothingIsKept) {
  UnackedStanzas kept;
  EXPECT_FALSE(kept.Release()) << "nothing to give back";
  kept.Push(std::string(2000, 'x'), {}, 0);
  EXPECT_FALSE(kept.Release()) << "a stanza is still waiting";
  EXPECT_EQ(Texts(kept).at(0).size(), 2000u);
  kept.Drop(1);
  EXPECT_TRUE(kept.Release());
  EXPECT_FALSE(kept.Release());
  kept.Push("<a/>", {}, 0);
  EXPECT_EQ(Texts(kept), std::vector<std::string>{"<a/>"});
}

class RecordingRerouter final : public Rerouter {
 public:
  void RerouteText(SessionRef gone, std::string_view xml, const RerouteInfo& info) override {
    calls.push_back({gone, std::string(xml), info});
  }
  struct Call {
    SessionRef gone;
    std::string xml;
    RerouteInfo info;
  };
  std::vector<Call> calls;
};

TEST(UnackedStanzas, EachOnGoneGetsItsOwnTextOnce) {
  RecordingRerouter hub;
  RerouteInfo info;
  info.has_origin = true;
  info.origin_id = 77;
  info.hops = 2;
  info.stamp_ms = 1700000000123;
  int closures = 0;
  UnackedStanzas kept;
  kept.Push("<message id='1'/>", OnGone(&hub, info), 0);
  kept.Push(
      "<iq id='2'/>", [&closures] { ++closures; }, 0);
  kept.Push("<message id='3'/>", {}, 0);  // nothing to do: not rerouted
  kept.Drop(0);
  SessionRef self{1, 5};
  int ran = 0;
  kept.ForEach([&](std::string_view xml, UnackedStanzas::Entry& entry) {
    if (!entry.on_gone) return;
    entry.on_gone.Run(self, xml);
    entry.on_gone.Run(self, xml);  // a second run does nothing
    ++ran;
  });
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(closures, 1);
  ASSERT_EQ(hub.calls.size(), 1u);
  EXPECT_EQ(hub.calls[0].gone, self);
  EXPECT_EQ(hub.calls[0].xml, "<message id='1'/>");
  EXPECT_EQ(hub.calls[0].info.origin_id, 77u);
  EXPECT_EQ(hub.calls[0].info.hops, 2);
  EXPECT_EQ(hub.calls[0].info.stamp_ms, 1700000000123);
}

}  // namespace
}  // namespace nines::xmpp
