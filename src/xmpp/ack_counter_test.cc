#include "xmpp/ack_counter.h"

#include <gtest/gtest.h>

namespace nines::xmpp {
namespace {

TEST(AckCounter, CountsStanzasHandledAtOnce) {
  AckCounter c(10);
  c.Read(10, false);
  c.Read(11, false);
  EXPECT_EQ(c.handled(), 2u);
  EXPECT_TRUE(c.idle());
}

TEST(AckCounter, IgnoresStanzasReadBeforeEnable) {
  AckCounter c(5);
  c.Read(3, false);
  c.Read(4, true);
  c.Finish(4);
  EXPECT_EQ(c.handled(), 0u);
  EXPECT_EQ(c.read(), 0u);
}

TEST(AckCounter, NeverCoversAStanzaStillWaiting) {
  AckCounter c(0);
  c.Read(0, true);   // a message waiting for its archive write
  c.Read(1, false);  // a presence, handled at once
  c.Read(2, true);
  EXPECT_EQ(c.handled(), 0u) << "the first is not durable yet";
  EXPECT_EQ(c.read(), 3u);
  c.Finish(2);  // writes finish out of order (different recipients' loops)
  EXPECT_EQ(c.handled(), 0u);
  c.Finish(0);
  EXPECT_EQ(c.handled(), 3u);
  EXPECT_TRUE(c.idle());
}

TEST(AckCounter, IgnoresUnknownAndRepeatedTickets) {
  AckCounter c(0);
  c.Read(0, true);
  c.Finish(7);
  c.Finish(0);
  c.Finish(0);
  EXPECT_EQ(c.handled(), 1u);
  c.Read(1, true);
  c.Finish(0);
  EXPECT_EQ(c.handled(), 1u);
}

TEST(AckCounter, CarriesOnFromABase) {
  AckCounter c(10, 4294967295u);  // resumed from the store one short of 2^32
  EXPECT_EQ(c.handled(), 4294967295u);
  c.Read(10, true);
  c.Read(11, false);
  EXPECT_EQ(c.read(), 4294967297u);
  EXPECT_EQ(c.handled(), 4294967295u);
  c.Finish(10);
  EXPECT_EQ(c.handled(), 4294967297u);
  EXPECT_EQ(static_cast<uint32_t>(c.handled()), 1u) << "the wire count wraps";
}

}  // namespace
}  // namespace nines::xmpp
