#include "xmpp/resume_tokens.h"

#include <openssl/rand.h>

#include <array>

namespace nines::xmpp {

namespace {

std::string NewToken() {
  std::array<unsigned char, 16> raw{};
  RAND_bytes(raw.data(), static_cast<int>(raw.size()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace

std::string ResumeTokens::Issue(SessionRef ref, const std::string& username) {
  std::lock_guard lock(mutex_);
  for (;;) {
    std::string token = NewToken();
    if (entries_.emplace(token, Entry{ref, username}).second) return token;
  }
}

void ResumeTokens::Register(const std::string& token, SessionRef ref, const std::string& username) {
  std::lock_guard lock(mutex_);
  entries_[token] = Entry{ref, username};
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

size_t ResumeTokens::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace nines::xmpp
