// Transport: a non-blocking TCP connection that may be upgraded to TLS.
//
// Reads and writes go straight to the socket (plain) or through OpenSSL bound
// to the socket's descriptor (TLS); readiness comes from Asio's async_wait.
// This keeps per-connection memory small: no read buffer is held while idle
// (callers read into their loop's scratch buffer), and OpenSSL frees its
// record buffers between records (SSL_MODE_RELEASE_BUFFERS).
//
// One interface for both transports (the Redis connection.h idea): callers
// never branch on TLS.
//
// Thread safety: a Transport belongs to one loop; use it only there.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <memory>
#include <string>

namespace nines::net {

enum class Io {
  kOk,          // `bytes` were transferred
  kWantRead,    // nothing now: wait until readable, then retry
  kWantWrite,   // TLS needs to write first: wait until writable, then retry
  kEof,         // the peer closed
  kError,       // the connection is broken (or the TLS peer misbehaved)
};

struct IoResult {
  Io status = Io::kError;
  size_t bytes = 0;
  // Read only: the read emptied the socket's receive queue (a short read on
  // plain TCP), so another read now would only return kWantRead. The caller
  // can go back to waiting, saving a syscall per wakeup: re-arming the wait
  // re-checks readiness, so bytes that arrive meanwhile are not missed.
  bool drained = false;
};

class Transport {
 public:
  explicit Transport(boost::asio::ip::tcp::socket socket);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  IoResult Read(char* buffer, size_t capacity);
  IoResult Write(const char* data, size_t size);

  // Calls `handler(error_code)` once the socket is readable / writable.
  template <class Handler>
  void WaitReadable(Handler&& handler) {
    socket_.async_wait(boost::asio::ip::tcp::socket::wait_read, std::forward<Handler>(handler));
  }
  template <class Handler>
  void WaitWritable(Handler&& handler) {
    socket_.async_wait(boost::asio::ip::tcp::socket::wait_write, std::forward<Handler>(handler));
  }

  // Begins server-side TLS with `context` (the caller keeps it alive for the
  // call only: OpenSSL takes its own reference). Then call Handshake() until
  // it returns kOk. Returns false if OpenSSL could not allocate.
  bool StartTls(SSL_CTX* context);
  IoResult Handshake();
  bool tls() const { return ssl_ != nullptr; }
  bool tls_established() const { return tls_established_; }

  // RFC 9266 tls-exporter channel-binding data (32 bytes). Empty when not on
  // TLS 1.3 (TLS 1.2 without extended master secret is unsafe, so we offer no
  // -PLUS there).
  std::string TlsExporter() const;
  std::string TlsVersion() const;  // "TLSv1.3", or "" if plain

  // Cancels pending waits, sends a TLS close_notify if it can without
  // blocking, and closes the socket. Idempotent.
  void Close();

  // A connection taken out of its Transport (and so off its loop) to be
  // adopted by a Transport on another loop: XEP-0198 resumption moves the
  // new connection to the loop of the session it resumes. Closes the
  // connection if it is dropped without being adopted.
  class Detached {
   public:
    Detached() = default;
    Detached(Detached&& other) noexcept;
    Detached& operator=(Detached&& other) noexcept;
    ~Detached();

   private:
    friend class Transport;
    int fd_ = -1;
    bool v6_ = false;
    SSL* ssl_ = nullptr;
    bool tls_established_ = false;
    std::string remote_address_;
  };
  // Call on this transport's loop. Cancels pending waits (their handlers get
  // operation_aborted); the transport is then closed and empty.
  Detached Detach();
  // Call on this transport's loop: closes what it holds, then takes over
  // `connection` (registered with this transport's loop).
  void Adopt(Detached connection);
  // Cancels pending waits (their handlers get operation_aborted).
  void Cancel();

  bool is_open() const { return socket_.is_open(); }
  const std::string& remote_address() const { return remote_address_; }
  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  IoResult MapSslError(int ret);

  boost::asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  bool tls_established_ = false;
  std::string remote_address_;
};

}  // namespace nines::net
