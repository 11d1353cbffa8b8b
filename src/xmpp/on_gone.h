// OnGone: what becomes of a stanza that was handed to a session which
// cannot see it through: the session had already ended, or it ends before
// its client acknowledged the stanza (XEP-0198 §4).
//
// Either a closure (an IQ's error reply, say), or, for a message, a
// reroute: the session hands the stanza's text back to a Rerouter (the
// hub) with the few routing facts in RerouteInfo. The reroute form holds
// nothing of the hub's, so a session that keeps thousands of stanzas until
// its client acknowledges them keeps only their bytes (C2sSession keeps
// those in one buffer): measured in docs/benchmarks.md, "Acknowledgements:
// keeping only the bytes".
//
// Thread safety: a value type; Run on the session's loop.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "xmpp/session_ref.h"

namespace nines::xmpp {

// What a reroute needs besides the stanza's text (from, to and id are in it).
struct RerouteInfo {
  uint64_t origin_id = 0;  // the sending session (SessionRef), for an error reply
  uint32_t origin_loop = 0;
  bool has_origin = false;  // errors go back to the origin session
  bool external = false;    // sent by an external component (XEP-0114)
  bool offline_ok = false;  // offline storage may keep it
  uint8_t type = 0;         // the message type, as the hub numbers it
  uint8_t hops = 0;         // the reroute count it carries (a loop guard)
  int64_t stamp_ms = 0;     // first receipt, for a message that came back from offline storage
};

// Takes back a message a session could not deliver. Implemented by the hub.
// An OnGone holds it as a raw pointer, as the closures it replaces held the
// hub's `this`: every OnGone runs on a loop before the hub goes (the
// server drains the loops first), and destroying one calls nothing.
class Rerouter {
 public:
  // `gone`: the session that had it; `xml`: the stanza as that session got it.
  virtual void RerouteText(SessionRef gone, std::string_view xml, const RerouteInfo& info) = 0;

 protected:
  ~Rerouter() = default;
};

class OnGone {
 public:
  OnGone() = default;
  // A closure (as a std::function or a lambda).
  OnGone(std::function<void()> fn) {  // NOLINT(google-explicit-constructor): closures convert
    if (fn) what_ = std::move(fn);
  }
  template <typename F>
  requires(std::is_invocable_r_v<void, F&> && !std::is_same_v<std::decay_t<F>, std::function<void()>> &&
           !std::is_same_v<std::decay_t<F>, OnGone>) OnGone(F&& fn)
      : what_(std::function<void()>(std::forward<F>(fn))) {}  // NOLINT(google-explicit-constructor)
  // A reroute by text.
  OnGone(Rerouter* rerouter, const RerouteInfo& info) : what_(Reroute{rerouter, info}) {}

  explicit operator bool() const { return !std::holds_alternative<std::monostate>(what_); }

  // Runs it once: `gone` is the session that had the stanza, `xml` its text.
  void Run(SessionRef gone, std::string_view xml) {
    auto what = std::exchange(what_, std::monostate{});
    if (auto* fn = std::get_if<std::function<void()>>(&what)) {
      (*fn)();
    } else if (auto* reroute = std::get_if<Reroute>(&what)) {
      reroute->rerouter->RerouteText(gone, xml, reroute->info);
    }
  }

 private:
  struct Reroute {
    Rerouter* rerouter;
    RerouteInfo info;
  };
  std::variant<std::monostate, std::function<void()>, Reroute> what_;
};

}  // namespace nines::xmpp
