// Config: every tunable of nines, declared once in one schema table.
//
// The schema (config.cc, kSchema) gives each key its TOML path, type, default,
// bounds, whether SIGHUP reloads it, and one line of documentation.
// docs/config.md is generated from the same table (`nines config doc`) and a
// unit test checks the two agree. Unknown keys are errors that name the key
// and its line.
//
// Thread safety: a Config is an immutable value once loaded. Reload builds a
// new Config and swaps a shared_ptr<const Config>; readers keep the snapshot
// they started with.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace nines {

// All limits live here (DESIGN.md: "limits live in one place").
struct Limits {
  // Stanza and parser caps, after authentication.
  int64_t stanza_size = 256 * 1024;
  int64_t depth = 32;
  int64_t attributes = 64;
  int64_t name_length = 256;
  // The same caps before authentication: tighter, as an unauthenticated peer
  // is anyone on the internet.
  int64_t stanza_size_preauth = 16 * 1024;
  int64_t depth_preauth = 8;
  int64_t attributes_preauth = 16;
  int64_t name_length_preauth = 64;

  int64_t connections_per_ip = 64;
  int64_t max_connections = 0;             // 0: bounded by the process file limit
  int64_t failed_logins_per_ip = 10;       // per failed_login_window
  int64_t failed_logins_per_account = 10;  // per failed_login_window
  int64_t failed_login_window = 60;        // seconds
  int64_t stanzas_per_second = 500;        // sustained, per session
  int64_t stanza_burst = 1000;             // token-bucket depth
  int64_t send_queue = 1024 * 1024;        // bytes queued to a peer before it is cut off
  int64_t auth_timeout = 30;               // seconds from connect to bound session
  int64_t stanza_timeout = 30;             // seconds a partial stanza may take to arrive
  int64_t idle_timeout = 300;              // seconds of silence before we ping
  int64_t ping_timeout = 30;               // seconds to answer our ping
  int64_t registrations_per_ip = 5;        // per hour
  int64_t resources_per_account = 32;
  int64_t roster_size = 1000;
  int64_t blocklist_items = 1000;  // XEP-0191 block list entries per account
  int64_t archive_pref_jids = 1000;  // XEP-0313: JIDs in one account's always + never lists
  int64_t private_item_size = 64 * 1024;  // XEP-0049: bytes per stored element
  int64_t private_items = 100;            // XEP-0049: elements per account
  int64_t pep_nodes = 256;                // XEP-0163: nodes per account
  int64_t pep_items = 1000;               // XEP-0163: items one node may keep (what max_items 'max' means)
  int64_t pep_item_size = 128 * 1024;     // XEP-0163: bytes per item payload
  int64_t caps_cache = 10000;             // XEP-0115: verified capability hashes kept in memory
  int64_t offline_messages = 1000;   // per account
  int64_t vcard_size = 64 * 1024;    // bytes
  int64_t messages_in_flight = 256;  // per session: read, not yet durable; beyond it reading pauses
};

// One STUN or TURN server from external_services, parsed.
struct ExternalService {
  std::string type;       // stun, stuns, turn or turns (the URI scheme)
  std::string host;       // as written (an IPv6 address without its brackets)
  int port = 0;           // 3478, or 5349 for stuns/turns, unless given
  std::string transport;  // udp or tcp: ?transport= for TURN, else udp (tcp for stuns/turns)
};
// Parses an RFC 7064 (stun:, stuns:) or RFC 7065 (turn:, turns:) URI.
Result<ExternalService> ParseServiceUri(std::string_view uri);

struct Config {
  // [server]
  std::string domain = "localhost";
  std::string data_dir = "nines-data";
  int64_t threads = 0;  // 0: one event loop per core

  // [listen]
  std::string c2s_address = "127.0.0.1";
  int64_t c2s_port = 5222;
  std::string c2s_tls_address = "127.0.0.1";
  int64_t c2s_tls_port = 5223;

  // [tls]
  std::string certificate;  // empty: <data_dir>/tls/cert.pem, generated on first start
  std::string key;          // empty: <data_dir>/tls/key.pem
  bool require_tls = true;  // refuse to authenticate without TLS on 5222

  // [store]
  std::string store_backend = "sqlite";
  std::string sqlite_path;            // empty: <data_dir>/nines.db
  int64_t sqlite_commit_batch = 256;  // statements per group commit at most
  int64_t sqlite_commit_delay_us = 1000;    // while busy, a commit waits this long after the last for company
  std::string postgres_uri;                 // libpq connection string, for store_backend "postgres"
  int64_t postgres_pool = 3;                // connections: one writer, the rest readers
  int64_t postgres_commit_batch = 256;      // writes per group commit at most
  int64_t postgres_failover_timeout_ms = 30000;

  // [auth]
  std::vector<std::string> sasl_mechanisms = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"};
  int64_t scram_iterations = 4096;
  bool allow_plain_without_tls = false;  // benchmarks only

  // [registration]
  bool registration_enabled = false;

  // [version]
  std::string version_name = "nines";
  bool version_show = true;  // answer XEP-0092 with our version
  bool version_show_os = false;

  // [log]
  std::string log_level = "info";

  // [archive] (XEP-0313)
  bool archive_enabled = true;          // keep every chat/normal message in its owners' archives
  int64_t archive_max_page = 250;       // most results in one MAM page (clients asking more get this many)
  int64_t archive_retention_days = 0;   // 0: keep forever
  int64_t archive_retention_count = 0;  // 0: no limit on messages per account

  // [stream_management] (XEP-0198)
  bool sm_enabled = true;            // offer stream management (acks and resumption)
  int64_t sm_resume_timeout = 300;   // seconds a dropped session waits to be resumed (0: no resumption)
  int64_t sm_max_unacked = 5000;     // stanzas a client may leave unacknowledged
  int64_t sm_request_every = 20;     // ask for an ack once this many stanzas are unacknowledged
  int64_t sm_ack_delay_ms = 0;       // an <a/> may wait this long for a delivery to share its write (0: no wait)
  bool sm_resume_from_store = true;  // keep resumable sessions in the store (resume after a crash or restart)

  // [csi] (XEP-0352)
  bool csi_enabled = true;     // hold presence and chat states while a client is inactive
  int64_t csi_max_held = 500;  // held stanzas per session; beyond it everything held is sent

  // [components] (XEP-0114)
  std::string component_address = "127.0.0.1";
  int64_t component_port = 5347;                // the listener opens only when `secrets` names a component
  std::vector<std::string> component_secrets;  // "domain=secret", one per component

  // [external_services] (XEP-0215)
  std::vector<std::string> external_services;  // RFC 7064/7065 URIs: stun:host:port, turn:host?transport=tcp
  std::string turn_secret;                      // coturn's static-auth-secret; "" = no credentials
  int64_t turn_credential_lifetime = 86400;     // seconds

  // [push] (XEP-0357)
  bool push_enabled = true;            // let clients register for push notifications
  int64_t push_max_registrations = 8;  // per account
  bool push_include_sender = false;    // name the sender in notifications
  bool push_include_body = false;      // put the message text in notifications

  Limits limits;

  // The secret configured for component `domain` (normalised), or "" if none.
  std::string ComponentSecret(std::string_view domain) const;

  // Paths with their defaults resolved against data_dir.
  std::string CertificatePath() const;
  std::string KeyPath() const;
  std::string SqlitePath() const;
};

// Parses TOML text. `origin` names the file in error messages. Unknown keys,
// wrong types and out-of-bounds values are errors that name the key and line.
Result<Config> ParseConfig(const std::string& toml_text, const std::string& origin);

// Reads and parses a file. An empty path yields the defaults.
Result<Config> LoadConfig(const std::string& path);

// Copies the keys marked reloadable from `fresh` into a copy of `current`.
Config MergeReloadable(const Config& current, const Config& fresh);

// The live config: a snapshot readers take, swapped whole on reload.
// Thread safety: Get() and Set() may be called from any thread.
class ConfigSource {
 public:
  explicit ConfigSource(Config config) : current_(std::make_shared<const Config>(std::move(config))) {}
  std::shared_ptr<const Config> Get() const { return current_.load(std::memory_order_acquire); }
  void Set(Config config) {
    current_.store(std::make_shared<const Config>(std::move(config)), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const Config>> current_;
};

// Keys that differ between the two configs but only take effect on restart
// (so a reload can say it ignored them).
std::vector<std::string> RestartOnlyChanges(const Config& current, const Config& fresh);

// Markdown documentation of every key, generated from the schema.
std::string ConfigDocMarkdown();

}  // namespace nines
