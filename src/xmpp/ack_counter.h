// AckCounter: the XEP-0198 'h' a session reports for what its client sent.
//
// Every stanza a bound session reads gets the next ticket. Some are handled
// at once; others (messages waiting for their archive or offline write) are
// finished later, in any order, when the hub reports them done. 'h' is the
// length of the prefix of tickets, from the first one counted, that are all
// finished: an acknowledgement never covers a stanza still waiting, so a
// client that saw h may forget everything up to it (G1).
//
// Thread safety: none; the session's loop only.
#pragma once

#include <cstdint>
#include <deque>

namespace nines::xmpp {

class AckCounter {
 public:
  // Counting starts at ticket `first` (the first stanza read after <enable/>)
  // from `base`: the count a session resumed from the store carries on from.
  explicit AckCounter(uint64_t first, uint64_t base = 0) : first_(first), base_(base) {}

  // Ticket `ticket` was read; `pending`: it finishes later (Finish). Tickets
  // must be read in order, each once; those before `first` are ignored.
  void Read(uint64_t ticket, bool pending) {
    if (ticket < first_) return;
    done_.push_back(!pending);
    Advance();
  }
  // A pending ticket finished. Unknown or already counted tickets are ignored.
  void Finish(uint64_t ticket) {
    if (ticket < first_ + handled_) return;
    uint64_t index = ticket - (first_ + handled_);
    if (index >= done_.size()) return;
    done_[index] = true;
    Advance();
  }

  // The count to report (on the wire mod 2^32).
  uint64_t handled() const { return base_ + handled_; }
  // Every stanza read so far, handled or not.
  uint64_t read() const { return base_ + handled_ + done_.size(); }
  // True when every stanza read is handled.
  bool idle() const { return done_.empty(); }

 private:
  void Advance() {
    while (!done_.empty() && done_.front()) {
      done_.pop_front();
      ++handled_;
    }
  }

  uint64_t first_;
  uint64_t base_;
  uint64_t handled_ = 0;
  std::deque<bool> done_;  // tickets first_ + handled_ ...: true once finished
};

}  // namespace nines::xmpp
