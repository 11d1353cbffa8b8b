#include "net/transport.h"

#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <utility>

namespace nines::net {

Transport::Transport(boost::asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
  auto endpoint = socket_.remote_endpoint(ec);
  if (!ec) remote_address_ = endpoint.address().to_string();
}

Transport::~Transport() { Close(); }

IoResult Transport::MapSslError(int ret) {
  int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ: return {Io::kWantRead, 0};
    case SSL_ERROR_WANT_WRITE: return {Io::kWantWrite, 0};
    case SSL_ERROR_ZERO_RETURN: return {Io::kEof, 0};
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {Io::kWantRead, 0};
      return {Io::kError, 0};
    default:
      ERR_clear_error();
      return {Io::kError, 0};
  }
}

IoResult Transport::Read(char* buffer, size_t capacity) {
  if (!socket_.is_open()) return {Io::kError, 0};
  if (ssl_ != nullptr) {
    size_t n = 0;
    int ret = SSL_read_ex(ssl_, buffer, capacity, &n);
    if (ret == 1) return {Io::kOk, n};
    return MapSslError(ret);
  }
  for (;;) {
    ssize_t n = ::recv(socket_.native_handle(), buffer, capacity, 0);
    if (n > 0) return {Io::kOk, static_cast<size_t>(n), static_cast<size_t>(n) < capacity};
    if (n == 0) return {Io::kEof, 0};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {Io::kWantRead, 0};
    return {Io::kError, 0};
  }
}

IoResult Transport::Write(const char* data, size_t size) {
  if (!socket_.is_open()) return {Io::kError, 0};
  if (ssl_ != nullptr) {
    size_t n = 0;
    int ret = SSL_write_ex(ssl_, data, size, &n);
    if (ret == 1) return {Io::kOk, n};
    IoResult r = MapSslError(ret);
    // A write that needs the socket writable is the normal backpressure case.
    if (r.status == Io::kWantRead && SSL_get_error(ssl_, ret) == SSL_ERROR_SYSCALL) r.status = Io::kWantWrite;
    return r;
  }
  for (;;) {
    ssize_t n = ::send(socket_.native_handle(), data, size, MSG_NOSIGNAL);
    if (n >= 0) return {Io::kOk, static_cast<size_t>(n)};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {Io::kWantWrite, 0};
    return {Io::kError, 0};
  }
}

bool Transport::StartTls(SSL_CTX* context) {
  ssl_ = SSL_new(context);
  if (ssl_ == nullptr) return false;
  SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                         SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_fd(ssl_, socket_.native_handle());
  SSL_set_accept_state(ssl_);
  return true;
}

IoResult Transport::Handshake() {
  if (ssl_ == nullptr) return {Io::kError, 0};
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    tls_established_ = true;
    return {Io::kOk, 0};
  }
  return MapSslError(ret);
}

std::string Transport::TlsExporter() const {
  if (ssl_ == nullptr || !tls_established_ || SSL_version(ssl_) < TLS1_3_VERSION) return {};
  std::string out(32, '\0');
  static constexpr char kLabel[] = "EXPORTER-Channel-Binding";
  if (SSL_export_keying_material(ssl_, reinterpret_cast<unsigned char*>(out.data()), out.size(), kLabel,
                                 sizeof(kLabel) - 1, nullptr, 0, 0) != 1) {
    return {};
  }
  return out;
}

std::string Transport::TlsVersion() const { return ssl_ ? SSL_get_version(ssl_) : ""; }

void Transport::Cancel() {
  boost::system::error_code ec;
  socket_.cancel(ec);
}

void Transport::Close() {
  if (ssl_ != nullptr) {
    if (tls_established_ && socket_.is_open()) SSL_shutdown(ssl_);  // best effort, non-blocking
    ERR_clear_error();
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (socket_.is_open()) {
    boost::system::error_code ec;
    socket_.cancel(ec);
    socket_.close(ec);
  }
}

Transport::Detached::Detached(Detached&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      v6_(other.v6_),
      ssl_(std::exchange(other.ssl_, nullptr)),
      tls_established_(other.tls_established_),
      remote_address_(std::move(other.remote_address_)) {}

Transport::Detached& Transport::Detached::operator=(Detached&& other) noexcept {
  if (this != &other) {
    this->~Detached();
    new (this) Detached(std::move(other));
  }
  return *this;
}

Transport::Detached::~Detached() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

Transport::Detached Transport::Detach() {
  Detached out;
  if (!socket_.is_open()) return out;
  boost::system::error_code ec;
  out.v6_ = socket_.local_endpoint(ec).address().is_v6();
  out.fd_ = socket_.release(ec);  // cancels pending waits
  if (ec) out.fd_ = -1;
  out.ssl_ = std::exchange(ssl_, nullptr);
  out.tls_established_ = std::exchange(tls_established_, false);
  out.remote_address_ = std::move(remote_address_);
  remote_address_.clear();
  return out;
}

void Transport::Adopt(Detached connection) {
  Close();
  boost::system::error_code ec;
  auto protocol = connection.v6_ ? boost::asio::ip::tcp::v6() : boost::asio::ip::tcp::v4();
  socket_.assign(protocol, connection.fd_, ec);
  if (ec) return;  // `connection` still owns the descriptor and closes it
  connection.fd_ = -1;
  socket_.non_blocking(true, ec);
  ssl_ = std::exchange(connection.ssl_, nullptr);
  tls_established_ = connection.tls_established_;
  remote_address_ = std::move(connection.remote_address_);
}

}  // namespace nines::net
