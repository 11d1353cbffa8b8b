// RFC 6121 Appendix A, table by table: every state x every verb x both directions.

#include "im/subscription.h"

#include <gtest/gtest.h>

#include <array>
#include <string>

namespace nines::im {
namespace {

using store::Subscription;

// The nine states in the order Appendix A lists them.
const std::array<SubState, 9> kStates = {{
    {Subscription::kNone, false, false},
    {Subscription::kNone, true, false},
    {Subscription::kNone, false, true},
    {Subscription::kNone, true, true},
    {Subscription::kTo, false, false},
    {Subscription::kTo, false, true},
    {Subscription::kFrom, false, false},
    {Subscription::kFrom, true, false},
    {Subscription::kBoth, false, false},
}};

const std::array<const char*, 9> kNames = {"None",
                                           "None + Pending Out",
                                           "None + Pending In",
                                           "None + Pending Out/In",
                                           "To",
                                           "To + Pending In",
                                           "From",
                                           "From + Pending Out",
                                           "Both"};

struct Table {
  const char* section;
  Direction direction;
  SubVerb verb;
  std::array<const char*, 9> after;  // expected state after the verb, per row of kStates
};

// Transcribed from RFC 6121 Appendix A.2 (outbound) and A.3 (inbound);
// "no state change" rows repeat the row's own state.
const Table kTables[] = {
    {"A.2.1 outbound subscribe",
     Direction::kOutbound,
     SubVerb::kSubscribe,
     {"None + Pending Out", "None + Pending Out", "None + Pending Out/In", "None + Pending Out/In", "To",
      "To + Pending In", "From + Pending Out", "From + Pending Out", "Both"}},
    {"A.2.2 outbound unsubscribe",
     Direction::kOutbound,
     SubVerb::kUnsubscribe,
     {"None", "None", "None + Pending In", "None + Pending In", "None", "None + Pending In", "From", "From",
      "From"}},
    {"A.2.3 outbound subscribed",
     Direction::kOutbound,
     SubVerb::kSubscribed,
     {"None", "None + Pending Out", "From", "From + Pending Out", "To", "Both", "From", "From + Pending Out",
      "Both"}},
    {"A.2.4 outbound unsubscribed",
     Direction::kOutbound,
     SubVerb::kUnsubscribed,
     {"None", "None + Pending Out", "None", "None + Pending Out", "To", "To", "None", "None + Pending Out",
      "To"}},
    {"A.3.1 inbound subscribe",
     Direction::kInbound,
     SubVerb::kSubscribe,
     {"None + Pending In", "None + Pending Out/In", "None + Pending In", "None + Pending Out/In",
      "To + Pending In", "To + Pending In", "From", "From + Pending Out", "Both"}},
    {"A.3.2 inbound unsubscribe",
     Direction::kInbound,
     SubVerb::kUnsubscribe,
     {"None", "None + Pending Out", "None", "None + Pending Out", "To", "To", "None", "None + Pending Out",
      "To"}},
    {"A.3.3 inbound subscribed",
     Direction::kInbound,
     SubVerb::kSubscribed,
     {"None", "To", "None + Pending In", "To + Pending In", "To", "To + Pending In", "From", "Both", "Both"}},
    {"A.3.4 inbound unsubscribed",
     Direction::kInbound,
     SubVerb::kUnsubscribed,
     {"None", "None", "None + Pending In", "None + Pending In", "None", "None + Pending In", "From", "From",
      "From"}},
};

TEST(SubscriptionTest, StateNames) {
  for (size_t i = 0; i < kStates.size(); ++i) EXPECT_EQ(StateName(kStates[i]), kNames[i]);
}

TEST(SubscriptionTest, AppendixATables) {
  for (const Table& table : kTables) {
    for (size_t i = 0; i < kStates.size(); ++i) {
      SubState after = Transition(kStates[i], table.direction, table.verb);
      EXPECT_EQ(StateName(after), table.after[i]) << table.section << ", from " << kNames[i];
    }
  }
}

TEST(SubscriptionTest, ImpossibleStatesAreLeftAlone) {
  SubState weird{Subscription::kBoth, true, true};
  EXPECT_EQ(Transition(weird, Direction::kInbound, SubVerb::kSubscribe), weird);
  EXPECT_EQ(StateName(weird), "invalid");
}

// A full handshake both ways ends in Both on each side.
TEST(SubscriptionTest, HandshakeBothWays) {
  SubState user, contact;
  user = Transition(user, Direction::kOutbound, SubVerb::kSubscribe);
  contact = Transition(contact, Direction::kInbound, SubVerb::kSubscribe);
  contact = Transition(contact, Direction::kOutbound, SubVerb::kSubscribed);
  user = Transition(user, Direction::kInbound, SubVerb::kSubscribed);
  EXPECT_EQ(StateName(user), "To");
  EXPECT_EQ(StateName(contact), "From");
  contact = Transition(contact, Direction::kOutbound, SubVerb::kSubscribe);
  user = Transition(user, Direction::kInbound, SubVerb::kSubscribe);
  user = Transition(user, Direction::kOutbound, SubVerb::kSubscribed);
  contact = Transition(contact, Direction::kInbound, SubVerb::kSubscribed);
  EXPECT_EQ(StateName(user), "Both");
  EXPECT_EQ(StateName(contact), "Both");
}

}  // namespace
}  // namespace nines::im
