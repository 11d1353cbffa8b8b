// Result<T>: the error-as-value type used across layer boundaries.
//
// Peer input and storage failures travel as Result values, never as
// exceptions (exceptions are allowed only at startup and config load; see
// docs/architecture.md). Each Errc is mapped once to an XMPP stanza or stream
// error condition in xmpp/errors.h.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace nines {

enum class Errc {
  kNotFound,         // the thing asked for does not exist
  kConflict,         // it already exists / concurrent modification
  kInvalidArgument,  // the caller's input is malformed
  kNotAuthorized,    // credentials are wrong
  kLimitExceeded,    // a configured limit was hit
  kUnavailable,      // a dependency (store, peer) is down; may be retried
  kInternal,         // a bug or an unexpected environment failure
};

const char* ErrcName(Errc code);

struct Error {
  Errc code = Errc::kInternal;
  std::string message;  // for logs and operators; never shown to peers verbatim
};

// Holds either a T or an Error. Accessing value() on an error is a bug.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : state_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// Result<void>: success carries nothing.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Error MakeError(Errc code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace nines
