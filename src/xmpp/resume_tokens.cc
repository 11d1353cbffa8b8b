#include "xmpp/resume_tokens.h"

#include <openssl/rand.h>

#include <array>

#include "xmpp/base64.h"

namespace nines::xmpp {

namespace {

std::string NewToken() {
  std::array<unsigned char, 16> raw{};
  RAND_bytes(raw.data(), static_cast<int>(raw.size()));
  return HexEncode(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()));
}

}  // namespace

std::string ResumeTokens::Issue(SessionRef ref, const std::string& username) {
  std::lock_guard lock(mutex_);
  for (;;) {
    std::string token = NewToken();
    if (entries_.emplace(token, Entry{ref, username, false}).second) return token;
  }
}

void ResumeTokens::Register(const std::string& token, SessionRef ref, const std::string& username) {
  std::lock_guard lock(mutex_);
  entries_[token] = Entry{ref, username, false};
}

std::optional<ResumeTokens::Entry> ResumeTokens::Find(const std::string& token) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(token);
  if (it == entries_.end()) return std::nullopt;
  return it->second;
}

void ResumeTokens::Remove(const std::string& token, SessionRef ref) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(token);
  if (it != entries_.end() && it->second.ref == ref) entries_.erase(it);
}

void ResumeTokens::End(const std::string& token, SessionRef ref) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(token);
  if (it != entries_.end() && it->second.ref == ref) it->second.ended = true;
}

size_t ResumeTokens::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace nines::xmpp
