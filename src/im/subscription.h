// The presence subscription state machine of RFC 6121 Appendix A.
//
// A user's roster item for a contact is in one of nine states: a
// subscription (none/to/from/both) plus the "pending out" (we asked them:
// ask_out) and "pending in" (they asked us: pending_in) flags. Appendix A
// gives, for each state, what an outbound (sent by the user) or inbound
// (received from the contact) subscribe / subscribed / unsubscribe /
// unsubscribed does. Transition() is exactly those eight tables; pre-approval
// (§3.4) is layered on top by the presence code.
//
// Thread safety: pure functions.
#pragma once

#include <string_view>

#include "store/store.h"

namespace nines::im {

enum class SubVerb { kSubscribe, kSubscribed, kUnsubscribe, kUnsubscribed };
enum class Direction { kOutbound, kInbound };

struct SubState {
  store::Subscription subscription = store::Subscription::kNone;
  bool pending_out = false;  // RosterItem::ask_out
  bool pending_in = false;   // RosterItem::pending_in
  friend bool operator==(const SubState&, const SubState&) = default;
};

// The state after `verb` travels in `direction`. Combinations Appendix A
// lists as "no state change" return `state` unchanged. The nine valid states
// are the only inputs: "To + Pending Out", "From + Pending In" and any
// pending flag with Both cannot occur and are returned unchanged.
SubState Transition(SubState state, Direction direction, SubVerb verb);

// The Appendix A name of a state ("None + Pending Out/In", "Both", ...), for
// tests and logs.
std::string_view StateName(SubState state);

inline bool HasFrom(store::Subscription s) {
  return s == store::Subscription::kFrom || s == store::Subscription::kBoth;
}
inline bool HasTo(store::Subscription s) {
  return s == store::Subscription::kTo || s == store::Subscription::kBoth;
}

}  // namespace nines::im
