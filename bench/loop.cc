#include "bench/loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "bench/sasl_client.h"
#include "bench/xml_scan.h"

namespace nines::bench {

const char* PhaseName(Phase p) {
  switch (p) {
    case Phase::kNone: return "none";
    case Phase::kConnect: return "connect";
    case Phase::kSetup: return "setup";
    case Phase::kDisconnect: return "disconnect";
    case Phase::kSettle: return "settle";
    case Phase::kRun: return "run";
    case Phase::kDrain: return "drain";
    case Phase::kReport: return "report";
    case Phase::kClose: return "close";
  }
  return "?";
}

namespace {

constexpr size_t kScratchBytes = 64 * 1024;
constexpr size_t kMaxStanzaBytes = 16 * 1024 * 1024;
// A sender whose unsent output exceeds this is skipped by the rate pacer
// (the server is not reading; queuing more would only measure our buffer).
constexpr size_t kMaxQueuedBytes = 256 * 1024;
constexpr uint64_t kEventFdTag = UINT64_MAX;

enum class State : uint8_t {
  kIdle,          // not started
  kConnecting,    // TCP connect in progress
  kTlsHandshake,  // direct TLS or after <proceed/>
  kFeatures,      // stream header sent, waiting for <stream:features/>
  kStartTls,      // <starttls/> sent
  kSasl,          // <auth/> sent
  kRegister,      // XEP-0077 set sent
  kBind,
  kSession,
  kRoster,
  kOnline,
  kDone,          // closed by us
  kFailed,
};

const char* StateName(State s) {
  switch (s) {
    case State::kIdle: return "idle";
    case State::kConnecting: return "connect";
    case State::kTlsHandshake: return "tls";
    case State::kFeatures: return "features";
    case State::kStartTls: return "starttls";
    case State::kSasl: return "sasl";
    case State::kRegister: return "register";
    case State::kBind: return "bind";
    case State::kSession: return "session";
    case State::kRoster: return "roster";
    case State::kOnline: return "online";
    case State::kDone: return "done";
    case State::kFailed: return "failed";
  }
  return "?";
}

bool LoggingIn(State s) { return s != State::kIdle && s != State::kOnline && s != State::kDone && s != State::kFailed; }

// Which stanzas of one sender reached one receiver. Seqs arrive mostly in
// order, so the bitmap keeps only a short window above the highest seq below
// which everything has arrived.
struct SeqTracker {
  uint64_t base_word = 0;       // bits[0] covers seqs [64 * base_word, 64 * base_word + 64)
  uint64_t next_expected = 0;   // one past the highest seq seen
  std::vector<uint64_t> bits;

  // Returns false for a duplicate. Sets `reordered` if a higher seq came first.
  bool Mark(uint64_t seq, bool& reordered) {
    reordered = false;
    if (seq / 64 < base_word) return false;
    const size_t word = static_cast<size_t>(seq / 64 - base_word);
    if (word >= bits.size()) bits.resize(word + 1, 0);
    const uint64_t bit = uint64_t{1} << (seq % 64);
    if (bits[word] & bit) return false;
    bits[word] |= bit;
    if (seq < next_expected) {
      reordered = true;
    } else {
      next_expected = seq + 1;
    }
    size_t full = 0;
    while (full + 1 < bits.size() && bits[full] == ~uint64_t{0}) ++full;
    if (full > 0) {
      bits.erase(bits.begin(), bits.begin() + static_cast<ptrdiff_t>(full));
      base_word += full;
    }
    return true;
  }
};

// Traffic state of one client (message and presence scenarios).
struct Traffic {
  uint32_t inflight = 0;          // deliveries of our stanzas not yet seen by their receivers
  uint32_t sm_received = 0;       // --sm: stanzas received since <enable/> (XEP-0198 'h')
  uint32_t sm_unrequested = 0;    // --sm: messages sent since our last <r/>
  uint32_t next_peer = 0;         // round robin over peers (message)
  uint64_t seq = 0;               // presence: one stream to all contacts
  std::vector<uint64_t> seq_to;   // message: next seq per peer
  std::vector<SeqTracker> from;   // per peer: what we received from it
};

struct LoginState {
  std::unique_ptr<ScramClient> scram;
  bool scram_verified = false;
  bool session_required = false;
};

// Roster/presence bits per contact (presence scenario).
constexpr uint8_t kSubFrom = 1;
constexpr uint8_t kSubTo = 2;
constexpr uint8_t kSeenOnline = 4;

struct Client {
  // Ordered for packing: 128 bytes on LP64.
  StanzaScanner scan;
  int fd = -1;
  SSL* ssl = nullptr;
  uint64_t t_begin = 0;     // connect() time
  std::string in;           // bytes of an incomplete stanza
  std::string out;          // bytes the socket did not take yet
  std::unique_ptr<LoginState> login;
  std::unique_ptr<Traffic> traffic;
  std::unique_ptr<uint8_t[]> roster;  // presence: kSub*/kSeenOnline per contact
  State state = State::kIdle;
  bool tls_done : 1 = false;
  bool authenticated : 1 = false;
  bool epoll_out : 1 = false;   // EPOLLOUT is in the interest set
  bool dirty : 1 = false;       // in the loop's to-send list
  bool setup_done : 1 = false;  // presence: every contact subscribed both ways
  bool settled : 1 = false;     // presence: every contact seen online
  uint16_t seen_online = 0;     // presence: contacts seen online
};

// The idle cost of a session; keep it small (README: memory per connection).
static_assert(sizeof(Client) <= 128, "Client grew: update bench/README.md");

enum class Action { kContinue, kStop, kNewStream, kDropInput };

void AppendU64(std::string& out, uint64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(p - buf));
}

void AppendEscapedText(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&apos;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
}

// Parses up to `n` space-separated unsigned numbers at the start of `text`.
size_t ParseNumbers(std::string_view text, uint64_t* values, size_t n) {
  size_t got = 0;
  const char* p = text.data();
  const char* end = p + text.size();
  while (got < n) {
    while (p < end && *p == ' ') ++p;
    auto [q, ec] = std::from_chars(p, end, values[got]);
    if (ec != std::errc() || q == p) break;
    ++got;
    p = q;
  }
  return got;
}

// Text of the first <name> element found anywhere in `stanza` (fast path for
// <body> and <status>, which servers write unprefixed).
bool FindElementText(std::string_view stanza, std::string_view open, std::string_view& text) {
  size_t at = stanza.find(open);
  while (at != std::string_view::npos) {
    const size_t after = at + open.size();
    if (after < stanza.size() && (stanza[after] == '>' || stanza[after] == ' ')) {
      const size_t gt = stanza.find('>', after);
      if (gt == std::string_view::npos || stanza[gt - 1] == '/') return false;
      const size_t lt = stanza.find('<', gt);
      if (lt == std::string_view::npos) return false;
      text = stanza.substr(gt + 1, lt - gt - 1);
      return true;
    }
    at = stanza.find(open, after);
  }
  return false;
}

std::string SslErrorText() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  // Keep the reason only ("error:0A000086:SSL routines::certificate verify failed").
  std::string_view s(buf);
  size_t colon = s.rfind(':');
  return std::string(colon == std::string_view::npos ? s : s.substr(colon + 1));
}

}  // namespace

struct Loop::Impl {
  Impl(Loop& owner, const Options& options, const LoopPlan& plan, SSL_CTX* tls)
      : self(owner), opt(options), plan(plan), ctx(tls), group(options.GroupSize()), clients(plan.clients) {
    scratch.resize(kScratchBytes);
    out_scratch.reserve(64 * 1024);
    bare_suffix = "@" + opt.domain;
    full_suffix = bare_suffix + "/" + opt.resource;
    in_addr base{};
    inet_pton(AF_INET, opt.source_base.c_str(), &base);
    source_base = ntohl(base.s_addr);
    inet_pton(AF_INET, opt.host.c_str(), &server.sin_addr);
    server.sin_family = AF_INET;
    server.sin_port = htons(opt.port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kEventFdTag;
    epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev);
  }
  ~Impl() {
    for (Client& c : clients) CloseFd(c);
    if (evfd >= 0) close(evfd);
    if (epfd >= 0) close(epfd);
  }

  Loop& self;
  const Options& opt;
  const LoopPlan plan;
  SSL_CTX* ctx;
  const uint32_t group;
  std::vector<Client> clients;
  std::string scratch;
  std::string out_scratch;
  std::string bare_suffix;  // "@domain"
  std::string full_suffix;  // "@domain/resource"
  uint32_t source_base = 0;
  sockaddr_in server{};
  int epfd = -1;
  int evfd = -1;

  std::atomic<int> command{0};
  Phase phase = Phase::kNone;
  Stats stats;
  Stats report;  // snapshot taken at kReport, read by the worker thread

  // Connect phase.
  uint32_t next_start = 0;
  uint32_t active = 0;
  uint64_t last_timeout_scan = 0;
  uint32_t logged_failures = 0;

  // Traffic.
  std::vector<uint32_t> dirty;
  uint64_t inflight_total = 0;
  uint64_t paced_sent = 0;  // stanzas sent by the rate pacer in this run
  uint32_t pace_cursor = 0;
  uint32_t setup_incomplete = 0;
  uint32_t settle_incomplete = 0;
  uint64_t now = 0;

  // ---- accounts and addresses ---------------------------------------------

  uint64_t Account(uint32_t i) const { return plan.first_account + i; }
  uint32_t GroupBase(uint32_t i) const { return i - i % group; }
  // Local index of peer k (0 .. group-2) of client i.
  uint32_t Peer(uint32_t i, uint32_t k) const {
    const uint32_t off = i % group;
    return GroupBase(i) + (k < off ? k : k + 1);
  }
  // Peer number (0 .. group-2) of client j as seen from client i (same group).
  uint32_t PeerNumber(uint32_t i, uint32_t j) const {
    const uint32_t oi = i % group, oj = j % group;
    return oj < oi ? oj : oj - 1;
  }
  // Local index of an account's client, or UINT32_MAX if not ours.
  uint32_t LocalOf(uint64_t account) const {
    if (account < plan.first_account || account >= plan.first_account + clients.size()) return UINT32_MAX;
    return static_cast<uint32_t>(account - plan.first_account);
  }
  // Account number from "<prefix><n>@domain[/res]", or UINT64_MAX.
  uint64_t AccountOfJid(std::string_view jid) const {
    if (jid.size() <= opt.prefix.size() || jid.compare(0, opt.prefix.size(), opt.prefix) != 0) return UINT64_MAX;
    uint64_t n = 0;
    const char* p = jid.data() + opt.prefix.size();
    auto [q, ec] = std::from_chars(p, jid.data() + jid.size(), n);
    if (ec != std::errc() || q == p || (q != jid.data() + jid.size() && *q != '@')) return UINT64_MAX;
    return n;
  }
  void AppendJid(std::string& out, uint32_t i, bool full) const {
    out += opt.prefix;
    AppendU64(out, Account(i));
    out += full ? full_suffix : bare_suffix;
  }

  // ---- phases ---------------------------------------------------------------

  void EnterPhase(Phase p) {
    phase = p;
    switch (p) {
      case Phase::kConnect: {
        stats = Stats();
        stats.bench_rss_before_kib = 0;
        next_start = 0;
        active = 0;
        self.progress_.finished.store(0, std::memory_order_relaxed);
        self.progress_.failed.store(0, std::memory_order_relaxed);
        for (Client& c : clients) {
          if (c.state == State::kDone || c.state == State::kFailed) c.state = State::kIdle;
        }
        break;
      }
      case Phase::kSetup: {
        setup_incomplete = 0;
        for (uint32_t i = 0; i < clients.size(); ++i) {
          Client& c = clients[i];
          if (c.state != State::kOnline) continue;
          c.setup_done = RosterComplete(c);
          if (c.setup_done) continue;
          ++setup_incomplete;
          std::string& o = out_scratch;
          o.clear();
          for (uint32_t k = 0; k + 1 < group; ++k) {
            if (c.roster[k] & kSubTo) continue;
            o += "<presence type='subscribe' to='";
            AppendJid(o, Peer(i, k), false);
            o += "'/>";
          }
          Write(c, o);
        }
        break;
      }
      case Phase::kDisconnect:
        for (Client& c : clients) CloseClient(c);
        break;
      case Phase::kSettle:
        settle_incomplete = 0;
        for (Client& c : clients) {
          if (c.state != State::kOnline) continue;
          stats.presence_expected += group - 1;
          if (!c.settled) ++settle_incomplete;
        }
        break;
      case Phase::kRun:
        StartTraffic();
        break;
      case Phase::kDrain:
        stats.run_end_ns = now;
        break;
      case Phase::kReport:
        // The worker thread reads this copy once we report kReport done; the
        // loop keeps running (late stanzas) but never touches it again.
        report = stats;
        break;
      case Phase::kClose:
        for (Client& c : clients) CloseClient(c);
        break;
      case Phase::kNone: break;
    }
  }

  bool PhaseDone() const {
    switch (phase) {
      case Phase::kConnect: return next_start >= clients.size() && active == 0;
      case Phase::kSetup: return setup_incomplete == 0;
      case Phase::kSettle: return settle_incomplete == 0;
      case Phase::kDrain: return inflight_total == 0;
      default: return true;
    }
  }

  // ---- connections ------------------------------------------------------------

  void StartConnect(uint32_t i) {
    Client& c = clients[i];
    c.in.clear();
    c.out.clear();
    c.scan.Reset();
    c.tls_done = false;
    c.authenticated = false;
    c.epoll_out = false;
    c.login = std::make_unique<LoginState>();
    c.t_begin = now;
    if (stats.first_start_ns == 0) stats.first_start_ns = now;
    ++stats.attempted;
    ++active;
    c.state = State::kConnecting;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      Fail(c, std::string("socket: ") + std::strerror(errno));
      return;
    }
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.sources > 0) {
      // Let connect() pick the port per 4-tuple, so each source address
      // offers the whole ephemeral range to each server port.
      setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl(source_base + static_cast<uint32_t>((plan.first_index + i) % opt.sources));
      if (bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        Fail(c, std::string("bind source address: ") + std::strerror(errno));
        return;
      }
    }
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0 && errno != EINPROGRESS) {
      Fail(c, std::string("connect: ") + std::strerror(errno));
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u64 = i;
    epoll_ctl(epfd, EPOLL_CTL_ADD, c.fd, &ev);
    c.epoll_out = true;
  }

  void SetEpollOut(Client& c, uint32_t i, bool on) {
    if (c.epoll_out == on || c.fd < 0) return;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.u64 = i;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
    c.epoll_out = on;
  }
  uint32_t IndexOf(const Client& c) const { return static_cast<uint32_t>(&c - clients.data()); }

  void CloseFd(Client& c) {
    if (c.ssl != nullptr) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    if (c.fd >= 0) {
      close(c.fd);
      c.fd = -1;
    }
    c.epoll_out = false;
    std::string().swap(c.in);
    std::string().swap(c.out);
  }

  // Ends a session politely (closing tag, no wait for the server's).
  void CloseClient(Client& c) {
    if (c.fd < 0) return;
    if (c.state == State::kOnline) {
      static constexpr std::string_view kClose = "</stream:stream>";
      if (c.out.empty()) RawWrite(c, kClose.data(), kClose.size());
      self.progress_.online.fetch_sub(1, std::memory_order_relaxed);
    } else if (LoggingIn(c.state)) {
      --active;
    }
    CloseFd(c);
    c.login.reset();
    c.state = State::kDone;
  }

  void Fail(Client& c, std::string reason) {
    if (c.state == State::kFailed || c.state == State::kDone) return;
    if (opt.verbose && logged_failures < 20) {
      ++logged_failures;
      std::fprintf(stderr, "nines-bench: %s%llu: %s\n", opt.prefix.c_str(),
                   static_cast<unsigned long long>(Account(IndexOf(c))), reason.c_str());
    }
    if (c.state == State::kOnline) {
      ++stats.disconnects;
      ++stats.failures["disconnected: " + reason];
      self.progress_.online.fetch_sub(1, std::memory_order_relaxed);
      if (phase == Phase::kSetup && !c.setup_done && setup_incomplete > 0) --setup_incomplete;
      if (phase == Phase::kSettle && !c.settled && settle_incomplete > 0) --settle_incomplete;
    } else {
      ++stats.failed;
      ++stats.failures[reason];
      --active;
      self.progress_.failed.fetch_add(1, std::memory_order_relaxed);
      self.progress_.finished.fetch_add(1, std::memory_order_relaxed);
    }
    CloseFd(c);
    c.login.reset();
    c.state = State::kFailed;
  }

  // Writes what the socket takes; returns bytes written, 0 if it would block,
  // -1 on a fatal error (reason in `error`).
  ssize_t RawWrite(Client& c, const char* data, size_t len, std::string* error = nullptr) {
    if (len == 0) return 0;
    if (c.ssl != nullptr) {
      size_t written = 0;
      if (SSL_write_ex(c.ssl, data, len, &written) == 1) return static_cast<ssize_t>(written);
      const int err = SSL_get_error(c.ssl, 0);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) return 0;
      if (error) *error = "tls write: " + SslErrorText();
      return -1;
    }
    for (;;) {
      const ssize_t n = send(c.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (error) *error = std::string("write: ") + std::strerror(errno);
      return -1;
    }
  }

  void Write(Client& c, std::string_view data) {
    if (c.fd < 0 || data.empty()) return;
    if (!c.out.empty() || c.state == State::kTlsHandshake) {
      c.out.append(data);
      return;
    }
    std::string error;
    const ssize_t n = RawWrite(c, data.data(), data.size(), &error);
    if (n < 0) {
      Fail(c, error);
      return;
    }
    if (static_cast<size_t>(n) < data.size()) {
      c.out.append(data.substr(static_cast<size_t>(n)));
      SetEpollOut(c, IndexOf(c), true);
    }
  }

  void FlushOut(Client& c, uint32_t i) {
    while (!c.out.empty()) {
      std::string error;
      const ssize_t n = RawWrite(c, c.out.data(), c.out.size(), &error);
      if (n < 0) {
        Fail(c, error);
        return;
      }
      if (n == 0) break;
      c.out.erase(0, static_cast<size_t>(n));
    }
    if (c.out.empty()) {
      if (c.out.capacity() > (phase == Phase::kRun ? 4096u : 15u)) std::string().swap(c.out);
      SetEpollOut(c, i, false);
      if (c.traffic && phase == Phase::kRun) MarkDirty(i);
    } else {
      SetEpollOut(c, i, true);
    }
  }

  void SendHeader(Client& c) {
    c.scan.Reset();
    std::string h = "<?xml version='1.0'?><stream:stream to='";
    h += opt.domain;
    h += "' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    c.state = State::kFeatures;
    Write(c, h);
  }

  void BeginTls(Client& c, uint32_t i) {
    c.ssl = SSL_new(ctx);
    if (c.ssl == nullptr) {
      Fail(c, "tls: SSL_new failed");
      return;
    }
    SSL_set_fd(c.ssl, c.fd);
    SSL_set_tlsext_host_name(c.ssl, opt.domain.c_str());
    SSL_set_connect_state(c.ssl);
    c.state = State::kTlsHandshake;
    DriveHandshake(c, i);
  }

  void DriveHandshake(Client& c, uint32_t i) {
    const int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
      c.tls_done = true;
      SetEpollOut(c, i, false);
      SendHeader(c);
      return;
    }
    const int err = SSL_get_error(c.ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
      SetEpollOut(c, i, false);
    } else if (err == SSL_ERROR_WANT_WRITE) {
      SetEpollOut(c, i, true);
    } else {
      Fail(c, "tls handshake: " + SslErrorText());
    }
  }

  void OnEvent(uint32_t i, uint32_t events) {
    Client& c = clients[i];
    if (c.fd < 0) return;
    if (c.state == State::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        Fail(c, std::string("connect: ") + std::strerror(err));
        return;
      }
      if (!(events & EPOLLOUT)) return;
      if (opt.tls == TlsMode::kDirect) {
        BeginTls(c, i);
      } else {
        SetEpollOut(c, i, false);
        SendHeader(c);
      }
      return;
    }
    if (c.state == State::kTlsHandshake) {
      DriveHandshake(c, i);
      if (c.fd < 0 || c.state == State::kTlsHandshake) return;
      if (!c.out.empty()) FlushOut(c, i);
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(c, i);
    if (c.fd >= 0 && (events & EPOLLOUT)) FlushOut(c, i);
  }

  void OnReadable(Client& c, uint32_t i) {
    for (int rounds = 0; rounds < 16; ++rounds) {
      ssize_t n;
      if (c.ssl != nullptr) {
        size_t got = 0;
        if (SSL_read_ex(c.ssl, scratch.data(), scratch.size(), &got) == 1) {
          n = static_cast<ssize_t>(got);
        } else {
          const int err = SSL_get_error(c.ssl, 0);
          if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
          if (err == SSL_ERROR_ZERO_RETURN) {
            n = 0;
          } else {
            Fail(c, "tls read: " + SslErrorText());
            return;
          }
        }
      } else {
        n = read(c.fd, scratch.data(), scratch.size());
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK) return;
          Fail(c, std::string("read: ") + std::strerror(errno));
          return;
        }
      }
      if (n == 0) {
        Fail(c, std::string("connection closed by server in ") + StateName(c.state));
        return;
      }
      const State before = c.state;
      Feed(c, i, scratch.data(), static_cast<size_t>(n));
      if (c.fd < 0 || (c.state == State::kTlsHandshake && before != State::kTlsHandshake)) return;
      if (c.ssl == nullptr && static_cast<size_t>(n) < scratch.size()) return;
    }
  }

  void Feed(Client& c, uint32_t i, const char* data, size_t len) {
    const char* buf = data;
    size_t blen = len;
    if (!c.in.empty()) {
      c.in.append(data, len);
      buf = c.in.data();
      blen = c.in.size();
    }
    for (;;) {
      std::string_view element;
      const StanzaScanner::Event ev = c.scan.Next(buf, blen, element);
      if (ev == StanzaScanner::Event::kNeedMore) break;
      if (ev == StanzaScanner::Event::kError) {
        Fail(c, "server output is not framable XML");
        return;
      }
      if (ev == StanzaScanner::Event::kStreamClose) {
        Fail(c, std::string("stream closed by server in ") + StateName(c.state));
        return;
      }
      if (ev == StanzaScanner::Event::kStreamOpen) {
        if (LocalName(element) != "stream") {
          Fail(c, "server did not open a stream");
          return;
        }
        continue;
      }
      const Action a = OnStanza(c, i, element);
      if (a == Action::kContinue) continue;
      if (a == Action::kStop) return;
      if (a == Action::kDropInput) {
        std::string().swap(c.in);
        c.scan.Reset();
        return;
      }
      // kNewStream: the bytes after this element belong to a new stream.
      const size_t consumed = static_cast<size_t>(element.data() + element.size() - buf);
      std::string rest(buf + consumed, blen - consumed);
      c.in.clear();
      c.scan.Reset();
      if (!rest.empty()) Feed(c, i, rest.data(), rest.size());
      return;
    }
    const size_t keep = c.scan.KeepFrom();
    if (buf == data) {
      if (keep < blen) c.in.assign(buf + keep, blen - keep);
    } else {
      c.in.erase(0, keep);
    }
    c.scan.Rebase(keep);
    if (c.in.empty() && c.in.capacity() > (phase == Phase::kRun ? 4096u : 15u)) std::string().swap(c.in);
    if (c.in.size() > kMaxStanzaBytes) Fail(c, "stanza from server exceeds 16 MiB");
  }

  // ---- stream negotiation -------------------------------------------------------

  Action OnStanza(Client& c, uint32_t i, std::string_view el) {
    const std::string_view name = LocalName(el);
    if (name == "error") {  // only <stream:error/> sits at depth 1
      std::string_view cond;
      size_t pos = 0;
      const std::string_view content = Content(el);
      std::string condition = "?";
      while (NextChild(content, pos, cond)) {
        if (LocalName(cond) != "text") {
          condition = std::string(LocalName(cond));
          break;
        }
      }
      Fail(c, "stream error: " + condition);
      return Action::kStop;
    }
    switch (c.state) {
      case State::kFeatures:
        if (name == "features") OnFeatures(c, i, el);
        return c.fd < 0 ? Action::kStop : Action::kContinue;
      case State::kStartTls:
        if (name == "proceed") {
          BeginTls(c, i);
          return c.fd < 0 ? Action::kStop : Action::kDropInput;
        }
        Fail(c, "starttls refused");
        return Action::kStop;
      case State::kSasl: return OnSasl(c, el, name);
      case State::kRegister: return OnRegisterReply(c, el, name);
      case State::kBind:
      case State::kSession:
      case State::kRoster: return OnLoginIq(c, i, el, name);
      case State::kOnline: OnTraffic(c, i, el, name); return c.fd < 0 ? Action::kStop : Action::kContinue;
      default: return Action::kContinue;
    }
  }

  void OnFeatures(Client& c, uint32_t i, std::string_view features) {
    std::string_view child;
    if (!c.tls_done && opt.tls == TlsMode::kStartTls) {
      if (!FindChild(features, "starttls", child)) {
        Fail(c, "starttls not offered");
        return;
      }
      c.state = State::kStartTls;
      Write(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
      return;
    }
    if (!c.authenticated) {
      if (opt.scenario == Scenario::kRegister) {
        std::string& o = out_scratch;
        o = "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>";
        o += opt.prefix;
        AppendU64(o, Account(i));
        o += "</username><password>";
        AppendEscapedText(o, opt.password);
        o += "</password></query></iq>";
        c.state = State::kRegister;
        Write(c, o);
        return;
      }
      bool plain = false, sha1 = false, sha256 = false;
      if (FindChild(features, "mechanisms", child)) {
        const std::string_view content = Content(child);
        size_t pos = 0;
        std::string_view mech;
        while (NextChild(content, pos, mech)) {
          const std::string_view m = Content(mech);
          if (m == "PLAIN") plain = true;
          if (m == "SCRAM-SHA-1") sha1 = true;
          if (m == "SCRAM-SHA-256") sha256 = true;
        }
      }
      Mechanism use = opt.mechanism;
      if (use == Mechanism::kAuto) {
        use = sha256 ? Mechanism::kScramSha256 : sha1 ? Mechanism::kScramSha1 : Mechanism::kPlain;
      }
      const bool offered = (use == Mechanism::kPlain && plain) || (use == Mechanism::kScramSha1 && sha1) ||
                           (use == Mechanism::kScramSha256 && sha256);
      if (!offered) {
        Fail(c, std::string("mechanism not offered: ") + MechanismName(use));
        return;
      }
      const std::string user = opt.prefix + std::to_string(Account(i));
      std::string& o = out_scratch;
      o = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='";
      o += MechanismName(use);
      o += "'>";
      if (use == Mechanism::kPlain) {
        o += PlainInitialResponse(user, opt.password);
      } else {
        c.login->scram = std::make_unique<ScramClient>(
            use == Mechanism::kScramSha1 ? ScramHash::kSha1 : ScramHash::kSha256, user, opt.password);
        o += Base64Encode(c.login->scram->ClientFirst());
      }
      o += "</auth>";
      c.state = State::kSasl;
      Write(c, o);
      return;
    }
    if (FindChild(features, "session", child)) {
      std::string_view optional;
      c.login->session_required = !FindChild(child, "optional", optional);
    }
    if (!FindChild(features, "bind", child)) {
      Fail(c, "bind not offered");
      return;
    }
    std::string& o = out_scratch;
    o = "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>";
    AppendEscapedText(o, opt.resource);
    o += "</resource></bind></iq>";
    c.state = State::kBind;
    Write(c, o);
  }

  Action OnSasl(Client& c, std::string_view el, std::string_view name) {
    std::string decoded;
    const std::string_view text = Content(el);
    if (name == "failure") {
      std::string_view cond;
      size_t pos = 0;
      std::string condition = "?";
      while (NextChild(text, pos, cond)) {
        if (LocalName(cond) != "text") {
          condition = std::string(LocalName(cond));
          break;
        }
      }
      Fail(c, "sasl failure: " + condition);
      return Action::kStop;
    }
    if (name != "challenge" && name != "success") return Action::kContinue;
    if (text != "=" && !Base64Decode(text, decoded)) {
      Fail(c, "sasl: bad base64 from server");
      return Action::kStop;
    }
    ScramClient* scram = c.login->scram.get();
    std::string error;
    if (name == "challenge") {
      if (scram == nullptr) {
        Fail(c, "sasl: unexpected challenge");
        return Action::kStop;
      }
      std::string& o = out_scratch;
      if (!c.login->scram_verified && decoded.rfind("v=", 0) != 0) {
        std::string final_message;
        if (!scram->ClientFinal(decoded, final_message, error)) {
          Fail(c, error);
          return Action::kStop;
        }
        o = "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + Base64Encode(final_message) + "</response>";
      } else {
        // Some servers send the server-final-message as a last challenge.
        if (!scram->VerifyServerFinal(decoded, error)) {
          Fail(c, error);
          return Action::kStop;
        }
        c.login->scram_verified = true;
        o = "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
      }
      Write(c, o);
      return c.fd < 0 ? Action::kStop : Action::kContinue;
    }
    // success
    if (scram != nullptr && !c.login->scram_verified) {
      if (!scram->VerifyServerFinal(decoded, error)) {
        Fail(c, error);
        return Action::kStop;
      }
    }
    c.login->scram.reset();
    c.authenticated = true;
    SendHeader(c);
    return c.fd < 0 ? Action::kStop : Action::kNewStream;
  }

  static std::string ErrorCondition(std::string_view stanza) {
    std::string_view error, cond;
    if (!FindChild(stanza, "error", error)) return "?";
    size_t pos = 0;
    const std::string_view content = Content(error);
    while (NextChild(content, pos, cond)) {
      if (LocalName(cond) != "text") return std::string(LocalName(cond));
    }
    return "?";
  }

  Action OnRegisterReply(Client& c, std::string_view el, std::string_view name) {
    std::string_view id, type;
    if (name != "iq" || !GetAttr(el, "id", id) || id != "reg") return Action::kContinue;
    GetAttr(el, "type", type);
    if (type == "result") {
      ++stats.registered;
    } else {
      const std::string cond = ErrorCondition(el);
      if (cond != "conflict") {
        Fail(c, "register: " + cond);
        return Action::kStop;
      }
      ++stats.already_registered;
    }
    // Registered: count it like a completed login and close.
    LoginDone(c);
    static constexpr std::string_view kClose = "</stream:stream>";
    RawWrite(c, kClose.data(), kClose.size());
    CloseFd(c);
    c.login.reset();
    c.state = State::kDone;
    return Action::kStop;
  }

  Action OnLoginIq(Client& c, uint32_t i, std::string_view el, std::string_view name) {
    if (name != "iq") return Action::kContinue;
    std::string_view id, type;
    GetAttr(el, "id", id);
    GetAttr(el, "type", type);
    if (type == "get" || type == "set") {
      AnswerIq(c, i, el, type);
      return c.fd < 0 ? Action::kStop : Action::kContinue;
    }
    const std::string_view expect = c.state == State::kBind      ? "bind"
                                    : c.state == State::kSession ? "sess"
                                                                 : "roster";
    if (id != expect) return Action::kContinue;
    if (type != "result") {
      Fail(c, std::string(expect) + ": " + ErrorCondition(el));
      return Action::kStop;
    }
    if (c.state == State::kBind && c.login->session_required) {
      c.state = State::kSession;
      Write(c, "<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
      return c.fd < 0 ? Action::kStop : Action::kContinue;
    }
    if (c.state == State::kRoster) {
      ReadRoster(c, i, el);
    } else if (opt.scenario == Scenario::kPresence) {
      c.state = State::kRoster;
      Write(c, "<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>");
      return c.fd < 0 ? Action::kStop : Action::kContinue;
    }
    GoOnline(c, i);
    return c.fd < 0 ? Action::kStop : Action::kContinue;
  }

  void LoginDone(Client& c) {
    ++stats.online;
    stats.last_online_ns = now;
    stats.login_ns.Record(now - c.t_begin);
    --active;
    self.progress_.finished.fetch_add(1, std::memory_order_relaxed);
  }

  void GoOnline(Client& c, uint32_t i) {
    c.state = State::kOnline;
    c.login.reset();
    c.setup_done = false;
    c.settled = false;
    c.seen_online = 0;
    if (opt.scenario == Scenario::kPresence) {
      for (uint32_t k = 0; k + 1 < group; ++k) c.roster[k] &= static_cast<uint8_t>(~kSeenOnline);
    }
    LoginDone(c);
    self.progress_.online.fetch_add(1, std::memory_order_relaxed);
    if (opt.sm) {
      // Counted from here, so the state lives from here (StartTraffic fills the rest).
      if (!c.traffic) c.traffic = std::make_unique<Traffic>();
      c.traffic->sm_received = 0;
      Write(c, opt.sm_resume ? "<enable xmlns='urn:xmpp:sm:3' resume='true'/>" : "<enable xmlns='urn:xmpp:sm:3'/>");
    }
    Write(c, "<presence/>");
    (void)i;
  }

  // ---- roster and presence ------------------------------------------------------

  static uint8_t SubscriptionBits(std::string_view s) {
    if (s == "both") return kSubFrom | kSubTo;
    if (s == "to") return kSubTo;
    if (s == "from") return kSubFrom;
    return 0;
  }

  void ApplyRosterItem(Client& c, uint32_t i, std::string_view item) {
    std::string_view jid, sub;
    if (!GetAttr(item, "jid", jid)) return;
    const uint32_t j = LocalOf(AccountOfJid(jid));
    if (j == UINT32_MAX || j == i || GroupBase(j) != GroupBase(i)) return;
    GetAttr(item, "subscription", sub);
    uint8_t& bits = c.roster[PeerNumber(i, j)];
    bits = static_cast<uint8_t>((bits & kSeenOnline) | SubscriptionBits(sub));
  }

  void ReadRoster(Client& c, uint32_t i, std::string_view iq) {
    if (!c.roster) c.roster = std::make_unique<uint8_t[]>(group - 1);
    for (uint32_t k = 0; k + 1 < group; ++k) c.roster[k] = 0;
    std::string_view query, item;
    if (!FindChild(iq, "query", query)) return;
    const std::string_view content = Content(query);
    size_t pos = 0;
    while (NextChild(content, pos, item)) ApplyRosterItem(c, i, item);
  }

  bool RosterComplete(const Client& c) const {
    if (!c.roster) return false;
    for (uint32_t k = 0; k + 1 < group; ++k) {
      if ((c.roster[k] & (kSubFrom | kSubTo)) != (kSubFrom | kSubTo)) return false;
    }
    return true;
  }

  void CheckSetupDone(uint32_t i) {
    Client& c = clients[i];
    if (c.setup_done || !RosterComplete(c)) return;
    c.setup_done = true;
    if (phase == Phase::kSetup && setup_incomplete > 0) --setup_incomplete;
  }

  void AnswerIq(Client& c, uint32_t i, std::string_view el, std::string_view type) {
    std::string_view id, from, child;
    GetAttr(el, "id", id);
    const bool has_from = GetAttr(el, "from", from);
    std::string& o = out_scratch;
    o.clear();
    if (type == "set" && FindChild(el, "query", child) && c.roster) {
      // Roster push (RFC 6121 §2.1.6).
      const std::string_view content = Content(child);
      size_t pos = 0;
      std::string_view item;
      while (NextChild(content, pos, item)) ApplyRosterItem(c, i, item);
      CheckSetupDone(i);
      o = "<iq type='result' id='";
      o += id;
      o += "'/>";
    } else if (FindChild(el, "ping", child) || (type == "set" && FindChild(el, "query", child))) {
      o = "<iq type='result' id='";
      o += id;
      o += '\'';
      if (has_from) {
        o += " to='";
        o += from;
        o += '\'';
      }
      o += "/>";
    } else {
      o = "<iq type='error' id='";
      o += id;
      o += '\'';
      if (has_from) {
        o += " to='";
        o += from;
        o += '\'';
      }
      o += "><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>";
    }
    Write(c, o);
  }

  // ---- traffic ------------------------------------------------------------------------

  void OnTraffic(Client& c, uint32_t i, std::string_view el, std::string_view name) {
    if (opt.sm && c.traffic) {
      if (name == "message" || name == "presence" || name == "iq") {
        ++c.traffic->sm_received;
      } else if (name == "r") {
        std::string& o = out_scratch;
        o = "<a xmlns='urn:xmpp:sm:3' h='";
        AppendU64(o, c.traffic->sm_received);
        o += "'/>";
        Write(c, o);
        return;
      } else if (name == "a") {
        ++stats.sm_acks;
        return;
      } else if (name == "enabled") {
        return;
      } else if (name == "failed") {
        Fail(c, "stream management refused");
        return;
      }
    }
    std::string_view type;
    const bool typed = GetAttr(el, "type", type);
    if (name == "message") {
      if (typed && type == "error") {
        ++stats.stanza_errors;
        return;
      }
      std::string_view body;
      if (!FindElementText(el, "<body", body)) {
        ++stats.unexpected;
        return;
      }
      Deliver(c, i, body);
      return;
    }
    if (name == "presence") {
      if (!typed) {
        std::string_view status;
        if (FindElementText(el, "<status", status)) {
          Deliver(c, i, status);
          return;
        }
        if (opt.scenario == Scenario::kPresence) PresenceSeen(c, i, el);
        return;
      }
      if (type == "subscribe") {
        std::string_view from;
        if (!GetAttr(el, "from", from)) return;
        std::string& o = out_scratch;
        o = "<presence type='subscribed' to='";
        o += from;
        o += "'/>";
        Write(c, o);
      } else if (type == "error") {
        ++stats.stanza_errors;
      }
      return;
    }
    if (name == "iq") {
      if (typed && (type == "get" || type == "set")) AnswerIq(c, i, el, type);
      return;
    }
    ++stats.unexpected;  // e.g. stream-management <r/>, which we did not enable
  }

  void PresenceSeen(Client& c, uint32_t i, std::string_view el) {
    std::string_view from;
    if (!GetAttr(el, "from", from) || !c.roster) return;
    const uint32_t j = LocalOf(AccountOfJid(from));
    if (j == i) return;  // our own presence, reflected
    if (j == UINT32_MAX || GroupBase(j) != GroupBase(i)) {
      ++stats.unexpected;
      return;
    }
    ++stats.presence_in;
    stats.presence_last_ns = now;
    self.progress_.presence_in.fetch_add(1, std::memory_order_relaxed);
    uint8_t& bits = c.roster[PeerNumber(i, j)];
    if (bits & kSeenOnline) return;
    bits |= kSeenOnline;
    ++stats.presence_distinct;
    if (++c.seen_online == group - 1 && !c.settled) {
      c.settled = true;
      if (phase == Phase::kSettle && settle_incomplete > 0) --settle_incomplete;
    }
  }

  // A payload "RUN SENDER SEQ TIMESTAMP [padding]" arrived at client i.
  void Deliver(Client& c, uint32_t i, std::string_view payload) {
    uint64_t v[4];
    if (ParseNumbers(payload, v, 4) != 4 || v[0] != plan.run_id || !c.traffic) {
      ++stats.unexpected;
      return;
    }
    const uint32_t s = LocalOf(v[1]);
    if (s == UINT32_MAX || s == i || GroupBase(s) != GroupBase(i)) {
      if (s != i) ++stats.unexpected;  // s == i: our own presence update, reflected
      return;
    }
    bool reordered = false;
    if (!c.traffic->from[PeerNumber(i, s)].Mark(v[2], reordered)) {
      ++stats.duplicates;
      return;
    }
    if (reordered) ++stats.reordered;
    ++stats.received;
    if (phase == Phase::kRun) ++stats.received_in_run;
    stats.last_receive_ns = now;
    stats.latency_ns.Record(now > v[3] ? now - v[3] : 0);
    self.progress_.received.fetch_add(1, std::memory_order_relaxed);
    Client& sender = clients[s];
    if (sender.traffic && sender.traffic->inflight > 0) {
      --sender.traffic->inflight;
      --inflight_total;
      if (opt.window > 0 && phase == Phase::kRun) MarkDirty(s);
    }
  }

  void MarkDirty(uint32_t i) {
    Client& c = clients[i];
    if (c.dirty) return;
    c.dirty = true;
    dirty.push_back(i);
  }

  void StartTraffic() {
    stats.run_start_ns = now;
    paced_sent = 0;
    for (uint32_t i = 0; i < clients.size(); ++i) {
      Client& c = clients[i];
      if (c.traffic && !c.traffic->from.empty()) continue;
      if (!c.traffic) c.traffic = std::make_unique<Traffic>();
      c.traffic->from.resize(group - 1);
      if (opt.scenario == Scenario::kMessage) c.traffic->seq_to.assign(group - 1, 0);
    }
    if (opt.scenario != Scenario::kMessage && opt.scenario != Scenario::kPresence) return;
    if (opt.rate == 0) {
      for (uint32_t i = 0; i < clients.size(); ++i) MarkDirty(i);
    }
  }

  // Online peers a presence update reaches.
  uint32_t OnlinePeers(uint32_t i) const {
    uint32_t n = 0;
    for (uint32_t k = 0; k + 1 < group; ++k) n += clients[Peer(i, k)].state == State::kOnline;
    return n;
  }

  // Composes and writes up to `budget` stanzas from client i; returns how
  // many were sent.
  uint32_t SendSome(uint32_t i, uint32_t budget) {
    Client& c = clients[i];
    if (c.state != State::kOnline || !c.traffic || budget == 0) return 0;
    Traffic& t = *c.traffic;
    std::string& o = out_scratch;
    o.clear();
    uint32_t sent = 0;
    const bool presence = opt.scenario == Scenario::kPresence;
    const uint32_t per_stanza = presence ? OnlinePeers(i) : 1;
    if (per_stanza == 0) return 0;
    const uint64_t window = opt.window == 0 ? UINT64_MAX : uint64_t{opt.window} * per_stanza;
    while (sent < budget && t.inflight + per_stanza <= window) {
      if (presence) {
        o += "<presence><status>";
        AppendU64(o, plan.run_id);
        o += ' ';
        AppendU64(o, Account(i));
        o += ' ';
        AppendU64(o, t.seq++);
        o += ' ';
        AppendU64(o, NowNs());
        o += "</status></presence>";
      } else {
        // Next online peer, round robin.
        uint32_t k = 0, tries = 0;
        for (; tries + 1 < group; ++tries) {
          k = t.next_peer++ % (group - 1);
          if (clients[Peer(i, k)].state == State::kOnline) break;
        }
        if (tries + 1 >= group) break;
        o += "<message type='chat' to='";
        AppendJid(o, Peer(i, k), true);
        o += "' id='";
        const uint64_t seq = t.seq_to[k]++;
        AppendU64(o, seq);
        o += "'><body>";
        AppendU64(o, plan.run_id);
        o += ' ';
        AppendU64(o, Account(i));
        o += ' ';
        AppendU64(o, seq);
        o += ' ';
        AppendU64(o, NowNs());
        if (opt.body_size > 0) {
          o += ' ';
          o.append(opt.body_size, 'x');
        }
        o += "</body>";
        if (opt.origin_id) {
          o += "<origin-id xmlns='urn:xmpp:sid:0' id='";
          AppendU64(o, plan.run_id);
          o += '-';
          AppendU64(o, Account(i));
          o += '-';
          AppendU64(o, k);
          o += '-';
          AppendU64(o, seq);
          o += "'/>";
        }
        o += "</message>";
        if (opt.sm && ++t.sm_unrequested >= opt.sm_every) {
          t.sm_unrequested = 0;
          o += "<r xmlns='urn:xmpp:sm:3'/>";
        }
      }
      t.inflight += per_stanza;
      inflight_total += per_stanza;
      stats.expected += per_stanza;
      ++stats.sent;
      ++sent;
    }
    if (sent > 0) {
      self.progress_.sent.fetch_add(sent, std::memory_order_relaxed);
      Write(c, o);
    }
    return sent;
  }

  void FlushDirty() {
    if (dirty.empty()) return;
    std::vector<uint32_t> batch;
    batch.swap(dirty);
    for (uint32_t i : batch) {
      Client& c = clients[i];
      c.dirty = false;
      if (phase != Phase::kRun || opt.rate > 0 || !c.out.empty()) continue;
      SendSome(i, UINT32_MAX);
    }
    if (dirty.empty()) {
      batch.clear();
      dirty.swap(batch);  // keep the capacity
    }
  }

  // Rate mode: send what the schedule owes, one stanza per client in turn.
  void Pace() {
    if (phase != Phase::kRun || opt.rate == 0 || clients.empty()) return;
    const double elapsed = static_cast<double>(now - stats.run_start_ns) / 1e9;
    const auto owed_total = static_cast<uint64_t>(plan.rate * elapsed);
    if (owed_total <= paced_sent) return;
    uint64_t owed = owed_total - paced_sent;
    // One pass over the clients at most per tick; what is left stays owed.
    for (uint32_t n = 0; n < clients.size() && owed > 0; ++n) {
      const uint32_t i = pace_cursor;
      pace_cursor = (pace_cursor + 1) % static_cast<uint32_t>(clients.size());
      if (clients[i].out.size() > kMaxQueuedBytes) continue;
      const uint32_t sent = SendSome(i, 1);
      paced_sent += sent;
      owed -= sent;
    }
  }

  // ---- the loop --------------------------------------------------------------------------

  void Tick() {
    if (phase == Phase::kConnect) {
      while (next_start < clients.size() && active < plan.concurrency) StartConnect(next_start++);
      if (now - last_timeout_scan > 100'000'000) {
        last_timeout_scan = now;
        const auto limit = static_cast<uint64_t>(opt.login_timeout * 1e9);
        for (uint32_t i = 0; i < next_start; ++i) {
          Client& c = clients[i];
          if (LoggingIn(c.state) && now - c.t_begin > limit) {
            Fail(c, std::string("timeout in ") + StateName(c.state));
          }
        }
      }
    }
    Pace();
  }

  void Run() {
    std::vector<epoll_event> events(512);
    Phase reported = Phase::kNone;
    for (;;) {
      const Phase wanted = static_cast<Phase>(command.load(std::memory_order_acquire));
      now = NowNs();
      if (wanted != phase) {
        EnterPhase(wanted);
        if (wanted == Phase::kClose) {
          self.done_.store(static_cast<int>(Phase::kClose), std::memory_order_release);
          return;
        }
      }
      Tick();
      FlushDirty();
      if (phase != reported && PhaseDone()) {
        reported = phase;
        self.done_.store(static_cast<int>(phase), std::memory_order_release);
      }
      const int timeout = (phase == Phase::kRun && opt.rate > 0) ? 1 : 20;
      const int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), timeout);
      now = NowNs();
      for (int k = 0; k < n; ++k) {
        const uint64_t tag = events[k].data.u64;
        if (tag == kEventFdTag) {
          uint64_t v;
          while (read(evfd, &v, sizeof v) > 0) {
          }
          continue;
        }
        OnEvent(static_cast<uint32_t>(tag), events[k].events);
      }
    }
  }
};

Loop::Loop(const Options& options, const LoopPlan& plan, SSL_CTX* tls)
    : impl_(std::make_unique<Impl>(*this, options, plan, tls)) {}

Loop::~Loop() = default;

void Loop::Run() { impl_->Run(); }

void Loop::Command(Phase p) {
  impl_->command.store(static_cast<int>(p), std::memory_order_release);
  const uint64_t one = 1;
  ssize_t ignored = write(impl_->evfd, &one, sizeof one);
  (void)ignored;
}

const Stats& Loop::stats() const { return impl_->report; }

}  // namespace nines::bench
