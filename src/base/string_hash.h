// StringHash: heterogeneous lookup for unordered containers keyed by
// std::string, so that a std::string_view finds its entry without making a
// string (with std::equal_to<> as the key equality).
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace nines {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>()(s); }
};

}  // namespace nines
