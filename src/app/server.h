// Server: wires the layers together for `nines serve`.
//
// Startup: data directory, certificate (self-signed on first start), store,
// loops, hub, listeners, then the "ready" line on stdout. Run() blocks the
// calling thread on signals: SIGTERM/SIGINT shut down gracefully (stop
// accepting, <system-shutdown/> to every stream, drain, close the store);
// SIGHUP reloads the config file's reloadable keys and the certificate.
//
// Thread safety: construct, Start() and Run() from one thread (main).
#pragma once

#include <memory>
#include <string>

#include "base/config.h"
#include "base/result.h"

namespace nines::app {

class Server {
 public:
  // `config_path` is re-read on SIGHUP; empty means defaults (nothing to reload).
  static Result<std::unique_ptr<Server>> Create(Config config, std::string config_path);
  ~Server();

  // Binds listeners and starts the loops; prints the ready line.
  Result<void> Start();
  // Blocks until SIGTERM/SIGINT, then shuts down. Returns the exit status.
  int Run();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nines::app
