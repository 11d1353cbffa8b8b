#include "net/listener.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/steady_timer.hpp>
#include <future>

namespace nines::net {

namespace asio = boost::asio;
using asio::ip::tcp;

struct Listener::Acceptor {
  Loop* loop;
  tcp::acceptor acceptor;
  asio::steady_timer backoff;
  bool closed = false;
  explicit Acceptor(Loop& l) : loop(&l), acceptor(l.context()), backoff(l.context()) {}
};

Result<std::unique_ptr<Listener>> Listener::Bind(LoopPool& pool, const std::string& address, uint16_t port,
                                                 OnAccept on_accept) {
  std::unique_ptr<Listener> listener(new Listener());
  listener->pool_ = &pool;
  listener->address_ = address;
  listener->on_accept_ = std::move(on_accept);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(address, ec);
  if (ec) return MakeError(Errc::kInvalidArgument, fmt::format("bad listen address '{}'", address));
  uint16_t bound_port = port;
  for (size_t i = 0; i < pool.size(); ++i) {
    auto acc = std::make_shared<Acceptor>(pool.loop(i));
    tcp::endpoint endpoint(addr, bound_port);
    acc->acceptor.open(endpoint.protocol(), ec);
    if (!ec) acc->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) {
      int one = 1;
      if (setsockopt(acc->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        ec.assign(errno, boost::system::system_category());
      }
    }
    if (!ec) acc->acceptor.bind(endpoint, ec);
    if (!ec) acc->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return MakeError(Errc::kUnavailable,
                       fmt::format("cannot listen on {}:{}: {}", address, bound_port, ec.message()));
    }
    bound_port = acc->acceptor.local_endpoint().port();
    listener->acceptors_.push_back(std::move(acc));
  }
  listener->port_ = bound_port;
  return listener;
}

Listener::~Listener() { Close(); }

std::string Listener::endpoint() const {
  return address_.find(':') != std::string::npos ? fmt::format("[{}]:{}", address_, port_)
                                                   : fmt::format("{}:{}", address_, port_);
}

void Listener::Start() {
  for (auto& acc : acceptors_) {
    acc->loop->Post([this, acc] { AcceptNext(*acc); });
  }
}

void Listener::AcceptNext(Acceptor& acceptor) {
  if (acceptor.closed) return;
  acceptor.acceptor.async_accept(acceptor.loop->context(), [this, &acceptor, keep = acceptors_](
                                                               boost::system::error_code ec, tcp::socket socket) {
    if (acceptor.closed || ec == asio::error::operation_aborted) return;
    if (ec) {
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory) {
        // Out of descriptors: stop accepting for a moment so existing sessions
        // keep working and we do not spin on the same error.
        spdlog::warn("accept on {}: {}; pausing accepts for 100 ms", endpoint(), ec.message());
        acceptor.backoff.expires_after(std::chrono::milliseconds(100));
        acceptor.backoff.async_wait([this, &acceptor, keep](boost::system::error_code e) {
          if (!e) AcceptNext(acceptor);
        });
        return;
      }
      AcceptNext(acceptor);
      return;
    }
    on_accept_(*acceptor.loop, std::move(socket));
    AcceptNext(acceptor);
  });
}

void Listener::Close() {
  for (auto& acc : acceptors_) {
    if (acc->closed) continue;
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    auto close = [acc, done] {
      acc->closed = true;
      boost::system::error_code ec;
      acc->acceptor.close(ec);
      acc->backoff.cancel();
      done->set_value();
    };
    if (acc->loop->InLoop() || acc->loop->context().stopped()) {
      close();
    } else {
      acc->loop->Post(close);
      // If the loop is not running (not started yet), run the close inline.
      if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
        spdlog::warn("listener close timed out on loop {}", acc->loop->index());
      }
    }
  }
  acceptors_.clear();
}

}  // namespace nines::net
