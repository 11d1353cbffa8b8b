// SessionRef: how a session is named across loops.
#pragma once

#include <cstdint>
#include <functional>

namespace nines::xmpp {

// Identifies a live session: the loop it lives on and a process-unique id.
// A ref may outlive its session; using it then is harmless (Sessions::Deliver
// reports it as gone).
struct SessionRef {
  uint32_t loop = 0;
  uint64_t id = 0;
  friend bool operator==(const SessionRef&, const SessionRef&) = default;
};

}  // namespace nines::xmpp

template <>
struct std::hash<nines::xmpp::SessionRef> {
  size_t operator()(const nines::xmpp::SessionRef& r) const noexcept { return std::hash<uint64_t>()(r.id); }
};
