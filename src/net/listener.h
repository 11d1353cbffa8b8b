// Listener: accepts TCP connections on every loop.
//
// Each loop has its own acceptor on the same address (SO_REUSEPORT), so the
// kernel spreads new connections over the loops and an accepted socket is
// already on the loop it will live on. When the process is out of file
// descriptors (EMFILE/ENFILE), accepting pauses briefly instead of spinning.
//
// Thread safety: construct and Start() on any thread before the loops run, or
// from any thread after; Close() may be called from any thread and returns once
// every acceptor has been closed on its loop.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "net/loop_pool.h"

namespace nines::net {

class Listener {
 public:
  using OnAccept = std::function<void(Loop& loop, boost::asio::ip::tcp::socket socket)>;

  // Binds address:port (port 0: the kernel picks one; every loop then shares it).
  static Result<std::unique_ptr<Listener>> Bind(LoopPool& pool, const std::string& address, uint16_t port,
                                                OnAccept on_accept);
  ~Listener();

  uint16_t port() const { return port_; }
  std::string endpoint() const;
  void Start();
  void Close();

 private:
  struct Acceptor;
  Listener() = default;
  void AcceptNext(Acceptor& acceptor);

  LoopPool* pool_ = nullptr;
  std::string address_;
  uint16_t port_ = 0;
  OnAccept on_accept_;
  std::vector<std::shared_ptr<Acceptor>> acceptors_;
};

}  // namespace nines::net
