// UnackedStanzas: what a session with XEP-0198 stream management has sent
// and its client has not acknowledged yet. See the class comment.
//
// Thread safety: none; the session's loop only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "xmpp/on_gone.h"

namespace nines::xmpp {

// The stanzas a session sent and its client has not acknowledged yet
// (XEP-0198), in order. Their text is kept back to back in one buffer, and
// each entry says how long its stanza is and what becomes of it if the
// session ends first (OnGone). So a session keeps bytes only, not each
// stanza's shared text and whatever that text keeps alive in the hub, and an
// acknowledgement frees nothing but moves an offset (docs/benchmarks.md,
// "Acknowledgements: keeping only the bytes").
class UnackedStanzas {
 public:
  struct Entry {
    OnGone on_gone;
    int64_t archive_id = 0;  // see SessionPort::Deliver: moves the device cursor once acknowledged
    uint32_t size = 0;       // bytes of text_
  };

  void Push(std::string_view xml, OnGone on_gone, int64_t archive_id) {
    text_.append(xml);
    entries_.push_back({std::move(on_gone), archive_id, static_cast<uint32_t>(xml.size())});
  }
  // Forgets the first `n` (acknowledged); n <= size().
  void Drop(size_t n) {
    size_t bytes = 0;
    for (size_t i = 0; i < n; ++i) bytes += entries_[i].size;
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<ptrdiff_t>(n));
    head_ += bytes;
    if (head_ == text_.size()) {
      text_.clear();  // keeps the capacity for the next ones; Release() gives it back
      head_ = 0;
    } else if (head_ >= text_.size() / 2) {
      text_.erase(0, head_);  // moves at most what was dropped since the last move
      head_ = 0;
    }
  }
  // Gives the buffer's memory back once nothing is kept (an idle session).
  // True if there was some.
  bool Release() {
    if (!entries_.empty() || text_.capacity() <= std::string().capacity()) return false;
    std::string().swap(text_);
    head_ = 0;
    return true;
  }
  size_t size() const { return entries_.size(); }
  // Every kept stanza's text, oldest first, back to back.
  std::string_view text() const { return std::string_view(text_).substr(head_); }
  bool empty() const { return entries_.empty(); }
  const Entry& operator[](size_t i) const { return entries_[i]; }
  // fn(std::string_view xml, Entry&) for each, oldest first.
  template <typename F>
  void ForEach(F&& fn) {
    size_t at = head_;
    for (auto& entry : entries_) {
      fn(std::string_view(text_).substr(at, entry.size), entry);
      at += entry.size;
    }
  }

 private:
  std::deque<Entry> entries_;
  std::string text_;  // entries_[0]'s text starts at head_
  size_t head_ = 0;
};

}  // namespace nines::xmpp
