#include "im/iq_registry.h"

#include <algorithm>

namespace nines::im {

void IqRegistry::Add(IqHandler handler) { handlers_.push_back(std::move(handler)); }

void IqRegistry::AddFeature(unsigned scopes, std::string feature,
                            std::function<bool(const Config&)> enabled) {
  features_.push_back(Feature{scopes, std::move(feature), std::move(enabled)});
}

const IqHandler* IqRegistry::Find(std::string_view ns, bool set, Scope scope, const Config& config) const {
  for (const auto& h : handlers_) {
    if (h.set == set && (h.scopes & scope) != 0 && h.ns == ns) {
      if (h.enabled && !h.enabled(config)) return nullptr;
      return &h;
    }
  }
  return nullptr;
}

std::vector<std::string> IqRegistry::Features(Scope scope, const Config& config) const {
  std::vector<std::string> out;
  for (const auto& h : handlers_) {
    if (!h.feature.empty() && (h.scopes & scope) != 0 && (!h.enabled || h.enabled(config))) {
      out.push_back(h.feature);
    }
  }
  for (const auto& f : features_) {
    if ((f.scopes & scope) != 0 && (!f.enabled || f.enabled(config))) out.push_back(f.name);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace nines::im
