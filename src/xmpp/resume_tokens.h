// ResumeTokens: the XEP-0198 resumption ids of this process's sessions.
//
// A token names one session that may be resumed: the session adds it when
// the client enables resumption and removes it when the session ends. A new
// connection presenting a token finds the session here and may take it over
// only if it authenticated as the same account.
//
// A session that ends for good while its state is in the store (resumption
// from the store) leaves its token behind as ended until the delete of that
// state has landed: the store's reads can overtake its writes, so without
// the mark a <resume/> in that window would read the old state and resume a
// session that is over, and get again what it left unacknowledged (already
// rerouted elsewhere).
//
// Tokens are 128 random bits (RAND_bytes), so they cannot be guessed; being
// bound to the account, a leaked token is still useless without that
// account's credentials.
//
// Thread safety: every method may be called from any thread (one mutex; a
// token is looked up only when a client resumes).
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "xmpp/session_ref.h"

namespace nines::xmpp {

class ResumeTokens {
 public:
  struct Entry {
    SessionRef ref;
    std::string username;
    bool ended = false;  // the session is over; its stored state is being deleted
  };

  // A fresh token, registered for `ref` owned by `username`.
  std::string Issue(SessionRef ref, const std::string& username);
  // Registers a token issued earlier (by this or another process) for
  // `ref`: a session resumed from the store goes on under its old token.
  // Replaces whatever the token named.
  void Register(const std::string& token, SessionRef ref, const std::string& username);
  // The session a token names, if it is still registered.
  std::optional<Entry> Find(const std::string& token) const;
  // Forgets `token` if it still names `ref`.
  void Remove(const std::string& token, SessionRef ref);
  // Marks `token` ended if it still names `ref` (see above); Remove forgets
  // it once the stored state is gone.
  void End(const std::string& token, SessionRef ref);
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace nines::xmpp
