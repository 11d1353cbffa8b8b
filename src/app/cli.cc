#include "app/cli.h"

#include <fmt/core.h>
#include <spdlog/spdlog.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <atomic>
#include <fstream>
#include <optional>
#include <thread>

#include "app/server.h"
#include "base/config.h"
#include "app/open_store.h"
#include "store/copy/store_copy.h"
#include "base/log.h"
#include "store/store.h"
#include "xmpp/jid/jid.h"
#include "xmpp/sasl/sasl.h"

namespace nines::app {
namespace {

constexpr int kFailed = 1;
constexpr int kUsage = 2;

int Fail(const std::string& message, int status = kFailed) {
  fmt::print(stderr, "nines: {}\n", message);
  return status;
}

// Runs one store call synchronously (CLI only; never on an event loop).
// The context CLI store replies are posted to. It outlives every store the
// CLI opens (the store may still be inside post() when a reply has already
// run, so the context must not die before Store::Close()).
boost::asio::io_context& CliContext() {
  static auto* io = new boost::asio::io_context();  // never destroyed: outlives all store threads
  return *io;
}

template <class T, class Call>
Result<T> RunSync(Call call) {
  auto& io = CliContext();
  io.restart();
  auto work = boost::asio::make_work_guard(io);  // keep run_one() waiting for the store's post
  std::optional<Result<T>> out;
  call(store::Reply<T>(io.get_executor(), [&](Result<T> r) { out.emplace(std::move(r)); }));
  while (!out) io.run_one();
  return std::move(*out);
}

std::optional<std::string> ReadPassword(bool from_stdin) {
  std::string password;
  if (from_stdin) {
    if (!std::getline(std::cin, password)) return std::nullopt;
    if (!password.empty() && password.back() == '\r') password.pop_back();
    return password;
  }
  if (!isatty(STDIN_FILENO)) {
    fmt::print(stderr, "nines: no terminal to prompt on; use --password-stdin\n");
    return std::nullopt;
  }
  termios old{};
  tcgetattr(STDIN_FILENO, &old);
  termios noecho = old;
  noecho.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  auto prompt = [&](const char* text) -> std::optional<std::string> {
    fmt::print(stderr, "{}", text);
    std::fflush(stderr);
    tcsetattr(STDIN_FILENO, TCSANOW, &noecho);
    std::string line;
    bool ok = static_cast<bool>(std::getline(std::cin, line));
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    fmt::print(stderr, "\n");
    if (!ok) return std::nullopt;
    return line;
  };
  auto first = prompt("Password: ");
  if (!first) return std::nullopt;
  auto second = prompt("Again: ");
  if (!second) return std::nullopt;
  if (*first != *second) {
    fmt::print(stderr, "nines: the passwords differ\n");
    return std::nullopt;
  }
  return first;
}

// Accepts "alice" or "alice@domain" (the configured domain only). A JID of
// another domain, or a full JID, is a usage error (status 2); a localpart that
// is not valid under RFC 7622 is an operation failure (status 1, docs/cli.md).
struct ParsedUser {
  std::string localpart;
  std::string error;
  int status = 0;
};

ParsedUser ParseUser(const std::string& text, const Config& config) {
  std::string local = text;
  if (text.find('@') != std::string::npos) {
    auto jid = xmpp::Jid::Parse(text);
    if (!jid.ok()) return {"", fmt::format("'{}' is not a valid JID", text), kUsage};
    if (jid->domain() != config.domain || !jid->IsBare()) {
      return {"", fmt::format("'{}' is not a bare JID of this server's domain {}", text, config.domain), kUsage};
    }
    return {jid->local(), "", 0};
  }
  auto normalised = xmpp::Jid::NormalizeLocal(local);
  if (!normalised.ok()) {
    return {"", fmt::format("'{}' is not a valid username: {}", text, normalised.error().message), kFailed};
  }
  return {normalised.value(), "", 0};
}

Result<std::unique_ptr<store::Store>> OpenStore(const Config& config) { return OpenConfiguredStore(config); }

Result<std::pair<store::ScramKeys, store::ScramKeys>> Keys(const std::string& password, const Config& config) {
  auto sha1 = xmpp::sasl::DeriveKeys(xmpp::sasl::Hash::kSha1, password, config.scram_iterations);
  if (!sha1.ok()) return sha1.error();
  auto sha256 = xmpp::sasl::DeriveKeys(xmpp::sasl::Hash::kSha256, password, config.scram_iterations);
  if (!sha256.ok()) return sha256.error();
  return std::pair{std::move(sha1.value()), std::move(sha256.value())};
}

struct BulkOptions {
  std::string pattern;  // "bench{}": {} is replaced by the number
  int64_t count = 0;
  int64_t first = 1;
  std::string file;     // lines "username password"
};

// Creates many accounts in batched transactions. With a pattern, every account
// gets the one password from stdin and (to make a million accounts take
// minutes, not hours of PBKDF2) one shared salt: meant for test and benchmark
// accounts. From a file, each account gets its own salt, derived on every core.
int BulkAdd(const Config& config, const BulkOptions& bulk, bool password_stdin) {
  struct Entry {
    std::string user;
    std::string password;
  };
  std::vector<Entry> entries;
  std::optional<std::pair<store::ScramKeys, store::ScramKeys>> shared_keys;
  if (!bulk.file.empty()) {
    std::ifstream in(bulk.file);
    if (!in) return Fail(fmt::format("cannot read '{}'", bulk.file));
    std::string line;
    int64_t line_number = 0;
    while (std::getline(in, line)) {
      ++line_number;
      if (line.empty() || line[0] == '#') continue;
      auto space = line.find(' ');
      if (space == std::string::npos || space + 1 >= line.size()) {
        return Fail(fmt::format("{}: line {}: expected 'username password'", bulk.file, line_number), kUsage);
      }
      auto parsed = ParseUser(line.substr(0, space), config);
      if (parsed.status != 0) return Fail(fmt::format("{}: line {}: {}", bulk.file, line_number, parsed.error), parsed.status);
      entries.push_back({std::move(parsed.localpart), line.substr(space + 1)});
    }
  } else {
    if (bulk.pattern.find("{}") == std::string::npos) return Fail("--bulk pattern must contain {}", kUsage);
    if (bulk.count <= 0) return Fail("--count must be positive", kUsage);
    auto password = ReadPassword(password_stdin);
    if (!password || password->empty()) return Fail("no password given");
    auto keys = Keys(*password, config);
    if (!keys.ok()) return Fail("that password is not allowed: " + keys.error().message);
    shared_keys = std::move(keys.value());
    entries.reserve(static_cast<size_t>(bulk.count));
    for (int64_t i = bulk.first; i < bulk.first + bulk.count; ++i) {
      std::string name = bulk.pattern;
      name.replace(name.find("{}"), 2, std::to_string(i));
      auto parsed = ParseUser(name, config);
      if (parsed.status != 0) return Fail(parsed.error, parsed.status);
      entries.push_back({std::move(parsed.localpart), {}});
    }
  }
  spdlog::set_level(spdlog::level::warn);
  auto opened = OpenStore(config);
  if (!opened.ok()) return Fail(opened.error().message);
  auto& store = *opened.value();
  const size_t batch = 10000;
  const bool tty = isatty(STDERR_FILENO) != 0;
  auto start = std::chrono::steady_clock::now();
  for (size_t offset = 0; offset < entries.size(); offset += batch) {
    size_t end = std::min(entries.size(), offset + batch);
    std::vector<store::Account> accounts(end - offset);
    auto fill = [&](size_t from, size_t to) -> bool {
      for (size_t i = from; i < to; ++i) {
        auto& a = accounts[i - offset];
        a.username = entries[i].user;
        a.created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
        if (shared_keys) {
          a.sha1 = shared_keys->first;
          a.sha256 = shared_keys->second;
        } else {
          auto keys = Keys(entries[i].password, config);
          if (!keys.ok()) return false;
          a.sha1 = std::move(keys->first);
          a.sha256 = std::move(keys->second);
        }
      }
      return true;
    };
    if (shared_keys) {
      fill(offset, end);
    } else {
      // PBKDF2 dominates: spread it over the cores.
      size_t threads = std::max(1u, std::thread::hardware_concurrency());
      std::vector<std::thread> workers;
      std::atomic<bool> ok{true};
      size_t per = (end - offset + threads - 1) / threads;
      for (size_t t = 0; t < threads; ++t) {
        size_t from = offset + t * per;
        size_t to = std::min(end, from + per);
        if (from >= to) break;
        workers.emplace_back([&, from, to] {
          if (!fill(from, to)) ok = false;
        });
      }
      for (auto& w : workers) w.join();
      if (!ok) {
        store.Close();
        return Fail("a password in the file is not allowed (empty or invalid)");
      }
    }
    auto r = RunSync<void>([&](auto reply) { store.CreateAccounts(std::move(accounts), std::move(reply)); });
    if (!r.ok()) {
      store.Close();
      return Fail(r.error().code == Errc::kConflict
                      ? fmt::format("an account in {}..{} already exists; {} accounts were created before it",
                                    entries[offset].user, entries[end - 1].user, offset)
                      : r.error().message);
    }
    if (tty) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print(stderr, "\r{} / {} accounts ({:.0f}/s)", end, entries.size(), static_cast<double>(end) / secs);
    }
  }
  if (tty) fmt::print(stderr, "\n");
  store.Close();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("created {} accounts in {:.1f} s\n", entries.size(), secs);
  return 0;
}

int UserCommand(const std::string& action, const std::string& config_path, const std::string& user_text,
                bool password_stdin, const BulkOptions& bulk) {
  auto config = LoadConfig(config_path);
  if (!config.ok()) return Fail(config.error().message, kUsage);
  if (action == "add" && (!bulk.pattern.empty() || !bulk.file.empty())) {
    if (!user_text.empty()) return Fail("give USER or --bulk/--bulk-file, not both", kUsage);
    return BulkAdd(*config, bulk, password_stdin);
  }
  if (action != "list" && user_text.empty()) return Fail("USER is required", kUsage);
  std::string user;
  if (action != "list") {
    auto parsed = ParseUser(user_text, *config);
    if (parsed.status != 0) return Fail(parsed.error, parsed.status);
    user = std::move(parsed.localpart);
  }
  spdlog::set_level(spdlog::level::warn);
  auto opened = OpenStore(*config);
  if (!opened.ok()) return Fail(opened.error().message);
  auto& store = *opened.value();
  int status = 0;
  if (action == "list") {
    auto users = RunSync<std::vector<std::string>>([&](auto reply) { store.ListAccounts(std::move(reply)); });
    if (!users.ok()) return Fail(users.error().message);
    for (const auto& u : *users) fmt::print("{}\n", u);
  } else if (action == "del") {
    auto r = RunSync<void>([&](auto reply) { store.DeleteAccount(user, std::move(reply)); });
    if (!r.ok()) {
      status = Fail(r.error().code == Errc::kNotFound ? fmt::format("user '{}' does not exist", user)
                                                      : r.error().message);
    }
  } else {
    auto password = ReadPassword(password_stdin);
    if (!password) return Fail("no password given");
    if (password->empty()) return Fail("the password is empty");
    auto keys = Keys(*password, *config);
    if (!keys.ok()) return Fail("that password is not allowed: " + keys.error().message);
    Result<void> r;
    if (action == "add") {
      store::Account account;
      account.username = user;
      account.sha1 = keys->first;
      account.sha256 = keys->second;
      account.created_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
      r = RunSync<void>([&](auto reply) { store.CreateAccount(std::move(account), std::move(reply)); });
      if (!r.ok() && r.error().code == Errc::kConflict) r = MakeError(Errc::kConflict, fmt::format("user '{}' already exists", user));
    } else {
      r = RunSync<void>(
          [&](auto reply) { store.SetCredentials(user, keys->first, keys->second, std::move(reply)); });
      if (!r.ok() && r.error().code == Errc::kNotFound) r = MakeError(Errc::kNotFound, fmt::format("user '{}' does not exist", user));
    }
    if (!r.ok()) status = Fail(r.error().message);
  }
  store.Close();
  return status;
}

int Serve(const std::string& config_path) {
  auto config = LoadConfig(config_path);
  if (!config.ok()) return Fail(config.error().message, kUsage);
  auto server = Server::Create(std::move(config.value()), config_path);
  if (!server.ok()) return Fail(server.error().message);
  if (auto r = (*server)->Start(); !r.ok()) return Fail(r.error().message);
  return (*server)->Run();
}

// `nines store migrate --from sqlite:PATH --to postgres:URI`.
int StoreMigrate(const std::string& from, const std::string& to) {
  if (!from.starts_with("sqlite:") || from.size() == 7) {
    return Fail(fmt::format("--from must be sqlite:PATH, got '{}'", from), kUsage);
  }
  if (!(to.starts_with("postgres:") || to.starts_with("postgresql:")) || to.size() <= 9) {
    return Fail(fmt::format("--to must be postgres:URI (a libpq connection string), got '{}'", to), kUsage);
  }
  std::string path = from.substr(7);
  // postgres:postgresql://host/db and postgres:host=... both work; a
  // postgresql:// URI given as is works too.
  std::string uri = to.starts_with("postgres:") ? to.substr(9) : to;
  const bool terminal = isatty(STDERR_FILENO) != 0;
  auto last = std::chrono::steady_clock::now();
  auto progress = [&](const store::copy::TableProgress& p) {
    auto now = std::chrono::steady_clock::now();
    bool finished = p.done == p.total;
    if (terminal) {
      if (!finished && now - last < std::chrono::milliseconds(200)) return;
      last = now;
      int percent = p.total == 0 ? 100 : static_cast<int>(p.done * 100 / p.total);
      fmt::print(stderr, "\r\033[K{:<20} {:>12} / {:<12} {:>3}%", p.table, p.done, p.total, percent);
      if (finished) fmt::print(stderr, "\n");
    } else if (finished) {
      fmt::print(stderr, "{}: {} rows\n", p.table, p.total);
    }
  };
  auto copied = store::copy::CopySqliteToPostgres(path, uri, progress);
  if (!copied.ok()) return Fail("store migrate: " + copied.error().message, kFailed);
  fmt::print("copied {} rows in {} tables from {} to PostgreSQL\n", copied->rows, copied->tables.size(), path);
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  InitLogging();
  CLI::App app{"nines: a messaging server (XMPP). See docs/cli.md."};
  app.require_subcommand(1);
  std::string config_path;

  auto* serve = app.add_subcommand("serve", "Run the server in the foreground");
  serve->add_option("-c,--config", config_path, "TOML config file (defaults apply without it)");

  auto* user = app.add_subcommand("user", "Manage accounts (works with the server running or stopped)");
  user->require_subcommand(1);
  std::string user_name;
  bool password_stdin = false;
  std::string action;
  BulkOptions bulk;
  for (const char* name : {"add", "passwd", "del", "list"}) {
    const char* help = std::string_view(name) == "add"      ? "Create an account"
                       : std::string_view(name) == "passwd" ? "Set an account's password"
                       : std::string_view(name) == "del"    ? "Delete an account and all it owns"
                                                            : "List accounts";
    auto* sub = user->add_subcommand(name, help);
    sub->add_option("-c,--config", config_path, "TOML config file");
    if (std::string_view(name) == "add") {
      sub->add_option("USER", user_name, "localpart or bare JID");
      sub->add_option("--bulk", bulk.pattern,
                      "Create many accounts named by PATTERN ({} = number), all with the password from stdin");
      sub->add_option("--count", bulk.count, "With --bulk: how many accounts");
      sub->add_option("--first", bulk.first, "With --bulk: the first number (default 1)");
      sub->add_option("--bulk-file", bulk.file, "Create the accounts listed in FILE, one 'username password' a line");
    } else if (std::string_view(name) != "list") {
      sub->add_option("USER", user_name, "localpart or bare JID")->required();
    }
    if (std::string_view(name) == "add" || std::string_view(name) == "passwd") {
      sub->add_flag("--password-stdin", password_stdin, "Read the password from the first line of stdin");
    }
    sub->callback([&action, name] { action = name; });
  }

  auto* config_cmd = app.add_subcommand("config", "Check or document configuration");
  config_cmd->require_subcommand(1);
  std::string check_file;
  auto* check = config_cmd->add_subcommand("check", "Validate a config file");
  check->add_option("FILE", check_file, "TOML config file")->required();
  auto* doc = config_cmd->add_subcommand("doc", "Print the configuration reference (docs/config.md)");

  auto* store_cmd = app.add_subcommand("store", "Manage the store");
  store_cmd->require_subcommand(1);
  std::string migrate_from;
  std::string migrate_to;
  auto* migrate = store_cmd->add_subcommand(
      "migrate", "Copy a whole server from SQLite to an empty PostgreSQL database (stop the server first)");
  migrate->add_option("--from", migrate_from, "sqlite:PATH")->required();
  migrate->add_option("--to", migrate_to, "postgres:URI (a libpq connection string)")->required();

  auto* version = app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kUsage;
  }

  if (*serve) return Serve(config_path);
  if (*user) return UserCommand(action, config_path, user_name, password_stdin, bulk);
  if (*migrate) return StoreMigrate(migrate_from, migrate_to);
  if (*version) {
    fmt::print("nines {}\n", NINES_VERSION);
    return 0;
  }
  if (*doc) {
    fmt::print("{}", ConfigDocMarkdown());
    return 0;
  }
  if (*check) {
    auto c = LoadConfig(check_file);
    if (!c.ok()) return Fail(c.error().message, kUsage);
    fmt::print("{}: ok\n", check_file);
    return 0;
  }
  return kUsage;
}

}  // namespace nines::app
