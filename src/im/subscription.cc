#include "im/subscription.h"

namespace nines::im {
namespace {

using S = store::Subscription;

// The nine states of Appendix A, in the order the RFC lists them.
enum class Row { kNone, kNoneOut, kNoneIn, kNoneOutIn, kTo, kToIn, kFrom, kFromOut, kBoth, kInvalid };

Row RowOf(SubState s) {
  switch (s.subscription) {
    case S::kNone:
      if (s.pending_out && s.pending_in) return Row::kNoneOutIn;
      if (s.pending_out) return Row::kNoneOut;
      if (s.pending_in) return Row::kNoneIn;
      return Row::kNone;
    case S::kTo:
      if (s.pending_out) return Row::kInvalid;
      return s.pending_in ? Row::kToIn : Row::kTo;
    case S::kFrom:
      if (s.pending_in) return Row::kInvalid;
      return s.pending_out ? Row::kFromOut : Row::kFrom;
    case S::kBoth:
      return (s.pending_in || s.pending_out) ? Row::kInvalid : Row::kBoth;
    case S::kRemove:
      return Row::kInvalid;
  }
  return Row::kInvalid;
}

SubState Make(Row row) {
  switch (row) {
    case Row::kNone:
      return {S::kNone, false, false};
    case Row::kNoneOut:
      return {S::kNone, true, false};
    case Row::kNoneIn:
      return {S::kNone, false, true};
    case Row::kNoneOutIn:
      return {S::kNone, true, true};
    case Row::kTo:
      return {S::kTo, false, false};
    case Row::kToIn:
      return {S::kTo, false, true};
    case Row::kFrom:
      return {S::kFrom, false, false};
    case Row::kFromOut:
      return {S::kFrom, true, false};
    case Row::kBoth:
      return {S::kBoth, false, false};
    case Row::kInvalid:
      break;
  }
  return {};
}

// Each table maps the nine rows (in Row order) to the row after the verb.
using Table = Row[9];

// A.2.1 Outbound subscribe.
constexpr Table kOutSubscribe = {Row::kNoneOut, Row::kNoneOut, Row::kNoneOutIn, Row::kNoneOutIn, Row::kTo,
                                 Row::kToIn,    Row::kFromOut, Row::kFromOut,   Row::kBoth};
// A.2.2 Outbound unsubscribe.
constexpr Table kOutUnsubscribe = {Row::kNone,   Row::kNone, Row::kNoneIn, Row::kNoneIn, Row::kNone,
                                   Row::kNoneIn, Row::kFrom, Row::kFrom,   Row::kFrom};
// A.2.3 Outbound subscribed.
constexpr Table kOutSubscribed = {Row::kNone, Row::kNoneOut, Row::kFrom,    Row::kFromOut, Row::kTo,
                                  Row::kBoth, Row::kFrom,    Row::kFromOut, Row::kBoth};
// A.2.4 Outbound unsubscribed.
constexpr Table kOutUnsubscribed = {Row::kNone, Row::kNoneOut, Row::kNone,    Row::kNoneOut, Row::kTo,
                                    Row::kTo,   Row::kNone,    Row::kNoneOut, Row::kTo};
// A.3.1 Inbound subscribe.
constexpr Table kInSubscribe = {Row::kNoneIn, Row::kNoneOutIn, Row::kNoneIn,  Row::kNoneOutIn, Row::kToIn,
                                Row::kToIn,   Row::kFrom,      Row::kFromOut, Row::kBoth};
// A.3.2 Inbound unsubscribe.
constexpr Table kInUnsubscribe = {Row::kNone, Row::kNoneOut, Row::kNone,    Row::kNoneOut, Row::kTo,
                                  Row::kTo,   Row::kNone,    Row::kNoneOut, Row::kTo};
// A.3.3 Inbound subscribed.
constexpr Table kInSubscribed = {Row::kNone, Row::kTo,   Row::kNoneIn, Row::kToIn, Row::kTo,
                                 Row::kToIn, Row::kFrom, Row::kBoth,   Row::kBoth};
// A.3.4 Inbound unsubscribed.
constexpr Table kInUnsubscribed = {Row::kNone,   Row::kNone, Row::kNoneIn, Row::kNoneIn, Row::kNone,
                                   Row::kNoneIn, Row::kFrom, Row::kFrom,   Row::kFrom};

}  // namespace

SubState Transition(SubState state, Direction direction, SubVerb verb) {
  Row row = RowOf(state);
  if (row == Row::kInvalid) return state;
  const Table* table = nullptr;
  bool out = direction == Direction::kOutbound;
  switch (verb) {
    case SubVerb::kSubscribe:
      table = out ? &kOutSubscribe : &kInSubscribe;
      break;
    case SubVerb::kSubscribed:
      table = out ? &kOutSubscribed : &kInSubscribed;
      break;
    case SubVerb::kUnsubscribe:
      table = out ? &kOutUnsubscribe : &kInUnsubscribe;
      break;
    case SubVerb::kUnsubscribed:
      table = out ? &kOutUnsubscribed : &kInUnsubscribed;
      break;
  }
  return Make((*table)[static_cast<int>(row)]);
}

std::string_view StateName(SubState state) {
  switch (RowOf(state)) {
    case Row::kNone:
      return "None";
    case Row::kNoneOut:
      return "None + Pending Out";
    case Row::kNoneIn:
      return "None + Pending In";
    case Row::kNoneOutIn:
      return "None + Pending Out/In";
    case Row::kTo:
      return "To";
    case Row::kToIn:
      return "To + Pending In";
    case Row::kFrom:
      return "From";
    case Row::kFromOut:
      return "From + Pending Out";
    case Row::kBoth:
      return "Both";
    case Row::kInvalid:
      break;
  }
  return "invalid";
}

}  // namespace nines::im
