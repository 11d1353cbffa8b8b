#include "app/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <openssl/rand.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <optional>
#include <thread>

#include "app/open_store.h"
#include "base/log.h"
#include "base/memory.h"
#include "im/hub.h"
#include "im/iq_registry.h"
#include "net/listener.h"
#include "net/loop_pool.h"
#include "net/tls.h"
#include "store/store.h"
#include "xmpp/c2s_session.h"
#include "xmpp/component_session.h"
#include "xmpp/sasl/sasl.h"
#include "xmpp/server_context.h"
#include "xmpp/sessions.h"

namespace nines::app {

namespace asio = boost::asio;

struct Server::Impl {
  std::string config_path;
  std::unique_ptr<ConfigSource> config;
  // Runs the replies of store calls made while starting up. Declared before
  // `store`, so it outlives the store's threads (store.h).
  asio::io_context startup_context;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<net::LoopPool> loops;
  std::unique_ptr<xmpp::Sessions> sessions;
  std::unique_ptr<xmpp::ServerContext> context;
  std::unique_ptr<im::Hub> hub;
  std::unique_ptr<net::Listener> c2s;
  std::unique_ptr<net::Listener> c2s_tls;
  std::unique_ptr<net::Listener> components;  // XEP-0114; only if components.secrets names one
  // Signals are caught from Create() on, so a SIGTERM right after the ready
  // line is a graceful shutdown, never the default action.
  asio::io_context signals_context;
  std::unique_ptr<asio::signal_set> signals;

  void Reload();
  void Shutdown();
  size_t SessionCount();
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

namespace {

// Raises our own open-file limit to the hard cap (permitted without privilege).
void RaiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int64_t FileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  return static_cast<int64_t>(rl.rlim_cur);
}

// A per-installation secret (32 random bytes, mode 0600), kept across restarts.
Result<std::string> LoadOrCreateSecret(const std::string& path) {
  std::string secret;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[64];
    size_t n = std::fread(buf, 1, sizeof(buf), f);
    std::fclose(f);
    if (n >= 32) return std::string(buf, n);
  }
  secret.resize(32);
  RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()), 32);
  mode_t old = umask(077);
  FILE* f = std::fopen(path.c_str(), "wb");
  umask(old);
  if (f == nullptr || std::fwrite(secret.data(), 1, secret.size(), f) != secret.size()) {
    if (f) std::fclose(f);
    return MakeError(Errc::kInternal, fmt::format("cannot write '{}'", path));
  }
  std::fclose(f);
  return secret;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Create(Config config, std::string config_path) {
  auto impl = std::make_unique<Impl>();
  impl->config_path = std::move(config_path);
  impl->signals = std::make_unique<asio::signal_set>(impl->signals_context, SIGTERM, SIGINT, SIGHUP);
  SetLogLevel(config.log_level);
  RaiseFileLimit();
  // OpenSSL writes with write(2), which raises SIGPIPE on a peer-closed socket;
  // we handle EPIPE as an error instead.
  std::signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return MakeError(Errc::kInternal, fmt::format("cannot create data directory '{}': {}", config.data_dir, ec.message()));

  auto secret = LoadOrCreateSecret(config.data_dir + "/secret");
  if (!secret.ok()) return secret.error();
  // Unknown users get stable fake SCRAM salts, so their absence does not show.
  xmpp::sasl::SetUnknownUserSecret(*secret, config.scram_iterations);

  auto created = net::EnsureSelfSignedCertificate(config.CertificatePath(), config.KeyPath(), config.domain);
  if (!created.ok()) return created.error();
  if (*created) spdlog::info("generated a self-signed certificate for {} in {}", config.domain, config.CertificatePath());
  auto tls = net::TlsContext::Load(config.CertificatePath(), config.KeyPath());
  if (!tls.ok()) return tls.error();

  auto store = OpenConfiguredStore(config);
  if (!store.ok()) return store.error();
  impl->store = std::move(store.value());
  {
    // Sessions a previous process left resumable (store.h, DeviceState):
    // those it did not detach (it crashed) count as detached from now.
    asio::io_context& io = impl->startup_context;
    std::optional<Result<int64_t>> swept;
    int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    impl->store->SweepDeviceStates(
        now_ms, store::Reply<int64_t>(io.get_executor(), [&](Result<int64_t> r) { swept = std::move(r); }));
    auto guard = asio::make_work_guard(io);
    while (!swept) io.run_one_for(std::chrono::milliseconds(100));
    if (!swept->ok()) return swept->error();
    if (**swept > 0) spdlog::info("store: {} expired resumable sessions removed", **swept);
  }

  impl->loops = std::make_unique<net::LoopPool>(static_cast<size_t>(config.threads));
  impl->config = std::make_unique<ConfigSource>(std::move(config));
  impl->sessions = std::make_unique<xmpp::Sessions>(*impl->loops);
  impl->context = std::make_unique<xmpp::ServerContext>(*impl->loops, *impl->config, *impl->store, *impl->sessions);
  impl->context->tls.store(std::move(tls.value()));
  // limits.max_connections = 0 means "what the descriptors allow": keep some
  // back for the store, listeners and logs. Resolved here, not written into
  // the config, so a reload of 0 keeps meaning the same.
  impl->context->descriptor_connection_cap = std::max<int64_t>(16, FileLimit() - 64);
  impl->hub = std::make_unique<im::Hub>(im::HubDeps{impl->loops.get(), impl->sessions.get(), impl->store.get(),
                                                    impl->config.get()});
  impl->context->hub = impl->hub.get();
  for (const auto& feature : impl->hub->registry().StreamFeatures()) impl->context->hub_features += feature;

  for (size_t i = 0; i < impl->loops->size(); ++i) {
    auto* sessions = impl->sessions.get();
    impl->loops->loop(i).OnTick([sessions, i] {
      size_t released = 0;
      for (auto* s : sessions->AllOnLoop(i)) released += s->CheckDeadlines() ? 1 : 0;
      NoteMemoryReleased(released);
      for (auto* c : sessions->AllComponentsOnLoop(i)) c->CheckDeadlines();
    });
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Result<void> Server::Start() {
  auto& d = *impl_;
  auto cfg = d.config->Get();
  auto* context = d.context.get();
  auto c2s = net::Listener::Bind(*d.loops, cfg->c2s_address, static_cast<uint16_t>(cfg->c2s_port),
                                 [context](net::Loop& loop, asio::ip::tcp::socket socket) {
                                   xmpp::C2sSession::Start(*context, loop, std::move(socket), false);
                                 });
  if (!c2s.ok()) return c2s.error();
  d.c2s = std::move(c2s.value());
  if (cfg->c2s_tls_port >= 0) {
    auto tls = net::Listener::Bind(*d.loops, cfg->c2s_tls_address, static_cast<uint16_t>(cfg->c2s_tls_port),
                                   [context](net::Loop& loop, asio::ip::tcp::socket socket) {
                                     xmpp::C2sSession::Start(*context, loop, std::move(socket), true);
                                   });
    if (!tls.ok()) return tls.error();
    d.c2s_tls = std::move(tls.value());
  }
  if (!cfg->component_secrets.empty()) {
    auto components = net::Listener::Bind(*d.loops, cfg->component_address,
                                          static_cast<uint16_t>(cfg->component_port),
                                          [context](net::Loop& loop, asio::ip::tcp::socket socket) {
                                            xmpp::ComponentSession::Start(*context, loop, std::move(socket));
                                          });
    if (!components.ok()) return components.error();
    d.components = std::move(components.value());
  }
  d.loops->Start();
  d.c2s->Start();
  if (d.c2s_tls) d.c2s_tls->Start();
  if (d.components) d.components->Start();

  std::string ready = "ready c2s=" + d.c2s->endpoint();
  if (d.c2s_tls) ready += " c2s_tls=" + d.c2s_tls->endpoint();
  if (d.components) ready += " components=" + d.components->endpoint();
  std::printf("%s\n", ready.c_str());
  std::fflush(stdout);
  spdlog::info("nines {} serving {} with {} event loop(s) on {}; data in {}", NINES_VERSION, cfg->domain,
               d.loops->size(), ProcessAllocator(), cfg->data_dir);
  spdlog::info("client connections: {} (STARTTLS){}", d.c2s->endpoint(),
               d.c2s_tls ? ", " + d.c2s_tls->endpoint() + " (direct TLS)" : "");
  if (d.components) {
    spdlog::info("external components (XEP-0114): {} for {} domain(s)", d.components->endpoint(),
                 cfg->component_secrets.size());
  }
  spdlog::info("add a user:  nines user add alice{}   then log in as alice@{} with any XMPP client",
               d.config_path.empty() ? "" : " -c " + d.config_path, cfg->domain);
  return {};
}

size_t Server::Impl::SessionCount() {
  size_t total = 0;
  for (size_t i = 0; i < loops->size(); ++i) {
    std::promise<size_t> p;
    auto f = p.get_future();
    loops->loop(i).Post([this, i, &p] { p.set_value(sessions->CountOnLoop(i)); });
    if (f.wait_for(std::chrono::seconds(2)) == std::future_status::ready) total += f.get();
  }
  return total;
}

void Server::Impl::Reload() {
  if (config_path.empty()) {
    spdlog::info("SIGHUP: no config file to reload (started without -c)");
  } else {
    auto fresh = LoadConfig(config_path);
    if (!fresh.ok()) {
      spdlog::error("SIGHUP: keeping the running config: {}", fresh.error().message);
      return;
    }
    for (const auto& key : RestartOnlyChanges(*config->Get(), fresh.value())) {
      spdlog::warn("SIGHUP: {} changed but takes effect only after a restart", key);
    }
    Config merged = MergeReloadable(*config->Get(), fresh.value());
    SetLogLevel(merged.log_level);
    config->Set(std::move(merged));
  }
  auto cfg = config->Get();
  auto tls = net::TlsContext::Load(cfg->CertificatePath(), cfg->KeyPath());
  if (!tls.ok()) {
    spdlog::error("SIGHUP: keeping the old certificate: {}", tls.error().message);
  } else {
    context->tls.store(std::move(tls.value()));
  }
  spdlog::info("SIGHUP: configuration and certificate reloaded");
}

void Server::Impl::Shutdown() {
  spdlog::info("shutting down: closing listeners and streams");
  context->shutting_down.store(true);
  if (c2s) c2s->Close();
  if (c2s_tls) c2s_tls->Close();
  if (components) components->Close();
  for (size_t i = 0; i < loops->size(); ++i) {
    loops->loop(i).Post([this, i] {
      for (auto* s : sessions->AllOnLoop(i)) s->CloseWithStreamError("system-shutdown", "the server is shutting down");
      for (auto* c : sessions->AllComponentsOnLoop(i)) {
        c->CloseWithStreamError("system-shutdown", "the server is shutting down");
      }
    });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
  while (SessionCount() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Let the hub's in-flight store work land before stopping the loops.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  loops->Stop();
  store->Close();
  // The replies the store posted while closing (a rerouted message's offline
  // write, a device state) are still queued on the stopped loops. Run them
  // now, on this thread (the loops' threads have ended), while the hub, the
  // sessions and the context they refer to exist. Left queued they would be
  // destroyed with the loops, after the hub: a session released then touched
  // freed memory (seen once on PostgreSQL, whose replies come later).
  if (!loops->PollUntilIdle(100000)) spdlog::warn("shutdown: the loops were still busy after the store closed");
  spdlog::info("stopped");
}

int Server::Run() {
  auto& signals = *impl_->signals;
  bool stop = false;
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signal) {
        if (ec) return;
        if (signal == SIGHUP) {
          impl_->Reload();
          signals.async_wait(on_signal);
          return;
        }
        stop = true;
      };
  signals.async_wait(on_signal);
  while (!stop) impl_->signals_context.run_one();
  impl_->Shutdown();
  return 0;
}

}  // namespace nines::app
