#include "im/caps.h"

#include <openssl/evp.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "xmpp/base64.h"

namespace nines::im {

namespace {

constexpr std::string_view kDiscoInfo = "http://jabber.org/protocol/disco#info";
constexpr std::string_view kData = "jabber:x:data";
constexpr std::string_view kQueryIdPrefix = "nines-caps-";

const EVP_MD* DigestOf(std::string_view hash) {
  if (hash == "sha-1") return EVP_sha1();
  if (hash == "sha-224") return EVP_sha224();
  if (hash == "sha-256") return EVP_sha256();
  if (hash == "sha-384") return EVP_sha384();
  if (hash == "sha-512") return EVP_sha512();
  return nullptr;
}

// The values of a form field, in document order.
std::vector<std::string> ValuesOf(const xml::Element& field) {
  std::vector<std::string> values;
  for (const xml::Element* v : field.Children()) {
    if (v->name() == "value") values.push_back(v->Text());
  }
  return values;
}

}  // namespace

bool CapsFeatures::Has(std::string_view feature) const {
  return std::binary_search(features.begin(), features.end(), feature);
}

bool CapsFeatures::Notifies(std::string_view node) const {
  return std::binary_search(notify.begin(), notify.end(), node);
}

std::optional<CapsClaim> ParseCapsClaim(const xml::Element& presence) {
  const xml::Element* c = presence.Child("c", kCapsNs);
  if (c == nullptr) return std::nullopt;
  CapsClaim claim{std::string(c->Attr("hash")), std::string(c->Attr("node")), std::string(c->Attr("ver"))};
  std::transform(claim.hash.begin(), claim.hash.end(), claim.hash.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (DigestOf(claim.hash) == nullptr || claim.node.empty() || claim.ver.empty()) return std::nullopt;
  if (claim.node.size() > 1024 || claim.ver.size() > 128) return std::nullopt;
  return claim;
}

Result<std::string> CapsVerificationString(const xml::Element& query) {
  using Identity = std::tuple<std::string, std::string, std::string, std::string>;  // category/type/lang/name
  std::vector<Identity> identities;
  std::vector<std::string> features;
  struct Form {
    std::string type;
    std::vector<std::pair<std::string, std::vector<std::string>>> fields;  // var, sorted values
  };
  std::vector<Form> forms;
  for (const xml::Element* child : query.Children()) {
    if (child->name() == "identity" && child->ns() == kDiscoInfo) {
      identities.emplace_back(std::string(child->Attr("category")), std::string(child->Attr("type")),
                              std::string(child->Attr("xml:lang")), std::string(child->Attr("name")));
    } else if (child->name() == "feature" && child->ns() == kDiscoInfo) {
      features.emplace_back(child->Attr("var"));
    } else if (child->name() == "x" && child->ns() == kData) {
      Form form;
      bool has_type = false;
      std::set<std::string, std::less<>> vars;
      for (const xml::Element* field : child->Children()) {
        if (field->name() != "field") continue;
        std::string var(field->Attr("var"));
        if (!vars.insert(var).second) return MakeError(Errc::kInvalidArgument, "a form field is repeated");
        std::vector<std::string> values = ValuesOf(*field);
        if (var == "FORM_TYPE") {
          // §5.4 3.6: a FORM_TYPE that is not hidden makes the form one to ignore.
          if (field->Attr("type") != "hidden" || values.empty()) {
            has_type = false;
            break;
          }
          form.type = values.front();
          has_type = true;
          continue;
        }
        std::sort(values.begin(), values.end());
        form.fields.emplace_back(std::move(var), std::move(values));
      }
      if (has_type) forms.push_back(std::move(form));
    }
  }
  std::sort(identities.begin(), identities.end());
  if (std::adjacent_find(identities.begin(), identities.end()) != identities.end())
    return MakeError(Errc::kInvalidArgument, "an identity is repeated");
  std::sort(features.begin(), features.end());
  if (std::adjacent_find(features.begin(), features.end()) != features.end())
    return MakeError(Errc::kInvalidArgument, "a feature is repeated");
  std::sort(forms.begin(), forms.end(), [](const Form& a, const Form& b) { return a.type < b.type; });
  for (size_t i = 1; i < forms.size(); ++i) {
    if (forms[i].type == forms[i - 1].type)
      return MakeError(Errc::kInvalidArgument, "two forms share a FORM_TYPE");
  }

  std::string s;
  for (const auto& [category, type, lang, name] : identities) {
    s.append(category).append("/").append(type).append("/").append(lang).append("/").append(name).append("<");
  }
  for (const auto& f : features) s.append(f).append("<");
  for (auto& form : forms) {
    s.append(form.type).append("<");
    std::sort(form.fields.begin(), form.fields.end());
    for (const auto& [var, values] : form.fields) {
      s.append(var).append("<");
      for (const auto& v : values) s.append(v).append("<");
    }
  }
  return s;
}

bool VerifyCaps(const CapsClaim& claim, const xml::Element& query) {
  const EVP_MD* md = DigestOf(claim.hash);
  if (md == nullptr) return false;
  auto s = CapsVerificationString(query);
  if (!s.ok()) return false;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(s->data(), s->size(), digest, &length, md, nullptr) != 1) return false;
  return xmpp::Base64Encode(std::string_view(reinterpret_cast<const char*>(digest), length)) == claim.ver;
}

CapsFeatures FeaturesOf(const xml::Element& query) {
  CapsFeatures out;
  constexpr std::string_view kNotify = "+notify";
  for (const xml::Element* child : query.Children()) {
    if (child->name() != "feature" || child->ns() != kDiscoInfo) continue;
    std::string var(child->Attr("var"));
    if (var.size() > kNotify.size() && var.ends_with(kNotify)) out.notify.push_back(var.substr(0, var.size() - kNotify.size()));
    out.features.push_back(std::move(var));
  }
  std::sort(out.features.begin(), out.features.end());
  out.features.erase(std::unique(out.features.begin(), out.features.end()), out.features.end());
  std::sort(out.notify.begin(), out.notify.end());
  out.notify.erase(std::unique(out.notify.begin(), out.notify.end()), out.notify.end());
  return out;
}

CapsPtr CapsCache::Find(std::string_view key) const {
  std::lock_guard lock(mu_);
  auto it = verified_.find(std::string(key));
  return it == verified_.end() ? nullptr : it->second;
}

bool CapsCache::StartQuery(const CapsClaim& claim, std::string waiter, int64_t now_ms, std::string& query_id,
                           size_t max_waiters, int64_t retry_ms) {
  std::lock_guard lock(mu_);
  std::string key = claim.Key();
  if (verified_.count(key) != 0) return false;
  auto it = pending_.find(key);
  if (it == pending_.end()) {
    if (pending_.size() >= kMaxPending) {
      // Forget questions nobody answered in time, then give up if still full.
      for (auto p = pending_.begin(); p != pending_.end();) {
        if (now_ms - p->second.asked_ms >= retry_ms) {
          by_id_.erase(p->second.query_id);
          p = pending_.erase(p);
        } else {
          ++p;
        }
      }
      if (pending_.size() >= kMaxPending) return false;
    }
    it = pending_.emplace(key, Pending{claim, {}, {}, 0, {}}).first;
  }
  Pending& p = it->second;
  if (p.waiters.size() < max_waiters && std::find(p.waiters.begin(), p.waiters.end(), waiter) == p.waiters.end())
    p.waiters.push_back(waiter);
  if (!p.query_id.empty() && now_ms - p.asked_ms < retry_ms) return false;
  if (!p.query_id.empty()) by_id_.erase(p.query_id);
  p.query_id = std::string(kQueryIdPrefix) + std::to_string(++next_id_);
  p.asked = std::move(waiter);
  p.asked_ms = now_ms;
  by_id_[p.query_id] = key;
  query_id = p.query_id;
  return true;
}

std::optional<CapsClaim> CapsCache::ClaimOf(std::string_view query_id, std::string_view from) const {
  if (!query_id.starts_with(kQueryIdPrefix)) return std::nullopt;
  std::lock_guard lock(mu_);
  auto id = by_id_.find(std::string(query_id));
  if (id == by_id_.end()) return std::nullopt;
  auto it = pending_.find(id->second);
  if (it == pending_.end() || it->second.asked != from) return std::nullopt;
  return it->second.claim;
}

bool CapsCache::Reask(std::string_view query_id, int64_t now_ms, std::string& waiter, std::string& new_id) {
  std::lock_guard lock(mu_);
  auto id = by_id_.find(std::string(query_id));
  if (id == by_id_.end()) return false;
  auto it = pending_.find(id->second);
  by_id_.erase(id);
  if (it == pending_.end()) return false;
  Pending& p = it->second;
  std::erase(p.waiters, p.asked);
  if (p.waiters.empty()) {
    pending_.erase(it);
    return false;
  }
  p.asked = p.waiters.front();
  p.query_id = std::string(kQueryIdPrefix) + std::to_string(++next_id_);
  p.asked_ms = now_ms;
  by_id_[p.query_id] = it->first;
  waiter = p.asked;
  new_id = p.query_id;
  return true;
}

std::vector<std::string> CapsCache::Insert(const std::string& key, CapsPtr features, size_t max_entries) {
  std::lock_guard lock(mu_);
  std::vector<std::string> waiters;
  if (auto it = pending_.find(key); it != pending_.end()) {
    waiters = std::move(it->second.waiters);
    by_id_.erase(it->second.query_id);
    pending_.erase(it);
  }
  if (verified_.emplace(key, std::move(features)).second) {
    order_.push_back(key);
    while (verified_.size() > max_entries && !order_.empty()) {
      verified_.erase(order_.front());
      order_.pop_front();
    }
  }
  return waiters;
}

size_t CapsCache::size() const {
  std::lock_guard lock(mu_);
  return verified_.size();
}

}  // namespace nines::im
