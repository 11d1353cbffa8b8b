#include "base/config.h"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <charconv>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <variant>

namespace nines {
namespace {

// One row of the schema. `field` points into Config (or Config::limits).
struct Key {
  const char* path;  // "section.key"
  std::variant<std::string Config::*, int64_t Config::*, bool Config::*, std::vector<std::string> Config::*,
               int64_t Limits::*>
      field;
  int64_t min = 0;
  int64_t max = std::numeric_limits<int64_t>::max();
  bool reloadable = false;
  const char* doc = "";
};

constexpr int64_t kMaxI = std::numeric_limits<int64_t>::max();

const std::vector<Key>& Schema() {
  static const std::vector<Key> kSchema = {
      {"server.domain", &Config::domain, 0, 0, false,
       "The XMPP domain this server hosts (the part after @)."},
      {"server.data_dir", &Config::data_dir, 0, 0, false,
       "Directory for the database, generated certificate and other state."},
      {"server.threads", &Config::threads, 0, 1024, false, "Event loops to run; 0 means one per CPU core."},
      {"listen.c2s_address", &Config::c2s_address, 0, 0, false,
       "Address for client connections with STARTTLS (RFC 6120)."},
      {"listen.c2s_port", &Config::c2s_port, 0, 65535, false,
       "Port for client connections with STARTTLS; 0 picks a free port."},
      {"listen.c2s_tls_address", &Config::c2s_tls_address, 0, 0, false,
       "Address for direct-TLS client connections (XEP-0368)."},
      {
          "listen.c2s_tls_port",
          &Config::c2s_tls_port,
          -1,
          65535,
          false,
          "Port for direct-TLS client connections; 0 picks a free port, -1 disables.",
      },
      {"tls.certificate", &Config::certificate, 0, 0, true,
       "PEM certificate chain; empty means <data_dir>/tls/cert.pem, self-signed on first start."},
      {"tls.key", &Config::key, 0, 0, true, "PEM private key; empty means <data_dir>/tls/key.pem."},
      {"tls.require", &Config::require_tls, 0, 0, true,
       "Refuse authentication on port 5222 until STARTTLS has completed."},
      {"store.backend", &Config::store_backend, 0, 0, false,
       "Storage backend: \"sqlite\" (embedded, the default) or \"postgres\" (for clusters; set "
       "store.postgres_uri)."},
      {"store.sqlite_path", &Config::sqlite_path, 0, 0, false,
       "SQLite database file; empty means <data_dir>/nines.db."},
      {"store.sqlite_commit_batch", &Config::sqlite_commit_batch, 1, 100000, false,
       "Most writes the SQLite writer thread puts in one fsync'd transaction."},
      {"store.sqlite_commit_delay_us", &Config::sqlite_commit_delay_us, 0, 100000, false,
       "While the SQLite store is busy (its last group commit held several writes, or several wait, and "
       "ended less than this long ago), writes wait out the rest of this for others to share their fsync. "
       "An idle store commits at once; 0 never waits."},
      {"store.postgres_uri", &Config::postgres_uri, 0, 0, false,
       "libpq connection string (URI or key=value) for store.backend = \"postgres\". Name every host of a "
       "Patroni cluster (postgresql://h1,h2,h3/nines); target_session_attrs=read-write is added unless "
       "given, so nines follows a failover. Keep passwords out of it: use PGPASSFILE or ~/.pgpass."},
      {"store.postgres_pool", &Config::postgres_pool, 2, 256, false,
       "PostgreSQL connections per nines process: one writer, the rest readers."},
      {"store.postgres_commit_batch", &Config::postgres_commit_batch, 1, 100000, false,
       "Most writes the PostgreSQL writer puts in one transaction (group commit)."},
      {"store.postgres_failover_timeout_ms", &Config::postgres_failover_timeout_ms, 100, 3600000, false,
       "How long a broken PostgreSQL connection is retried (a failover) before waiting calls fail."},
      {"auth.mechanisms", &Config::sasl_mechanisms, 0, 0, true,
       "SASL mechanisms offered, in order of preference. PLAIN is only ever offered over TLS. PLAIN checks "
       "the password against the account's SCRAM-SHA-1 keys, which every account keeps, offered or not."},
      {"auth.scram_iterations", &Config::scram_iterations, 4096, 1000000, true,
       "PBKDF2 iterations for newly set passwords."},
      {"auth.allow_plain_without_tls", &Config::allow_plain_without_tls, 0, 0, true,
       "Offer PLAIN on unencrypted streams too. Sends passwords in the clear: for benchmarks on loopback "
       "only "
       "(needs tls.require = false)."},
      {"registration.enabled", &Config::registration_enabled, 0, 0, true,
       "Allow XEP-0077 in-band registration of new accounts."},
      {"version.name", &Config::version_name, 0, 0, true, "Software name reported by XEP-0092."},
      {"version.show", &Config::version_show, 0, 0, true,
       "Answer XEP-0092 software version queries; false answers service-unavailable."},
      {"version.show_os", &Config::version_show_os, 0, 0, true,
       "Include the operating system in XEP-0092 answers."},
      {"log.level", &Config::log_level, 0, 0, true,
       "Log level: trace, debug, info, warn, error, critical, off."},

      {"archive.enabled", &Config::archive_enabled, 0, 0, true,
       "Keep every chat and normal message in the sender's and recipient's archives (XEP-0313); messages are "
       "delivered once archived."},
      {"archive.max_page", &Config::archive_max_page, 1, 10000, true,
       "Most messages returned in one archive (MAM) page; larger requests get this many."},
      {"archive.retention_days", &Config::archive_retention_days, 0, 36500, true,
       "Delete archived messages older than this many days, when the account next logs in; 0 keeps them "
       "forever."},
      {"archive.retention_count", &Config::archive_retention_count, 0, kMaxI, true,
       "Keep at most this many archived messages per account (the newest), applied when the account next "
       "logs "
       "in; 0 means no limit."},

      {"stream_management.enabled", &Config::sm_enabled, 0, 0, true,
       "Offer XEP-0198 stream management: acknowledgements (sent once a stanza is durable) and session "
       "resumption."},
      {"stream_management.resume_timeout", &Config::sm_resume_timeout, 0, 86400, true,
       "Seconds a session whose connection dropped stays resumable; its messages wait for it meanwhile, and "
       "unacknowledged ones go to offline storage when it expires. 0 turns resumption off."},
      {"stream_management.max_unacked", &Config::sm_max_unacked, 1, 1000000, true,
       "Stanzas a client may leave unacknowledged; beyond it the session ends (policy-violation), and what "
       "it had not acknowledged goes to offline storage."},
      {"stream_management.request_every", &Config::sm_request_every, 1, 1000000, true,
       "The server asks the client for an acknowledgement once this many stanzas are unacknowledged (and, "
       "whatever the count, on its once-a-second check while any is). Fewer requests mean fewer answers "
       "for a phone to send."},
      {"stream_management.ack_delay_ms", &Config::sm_ack_delay_ms, 0, 1000, true,
       "Milliseconds the server's answer to a client's <r/> may wait for a stanza to that client, so that "
       "both go out in one packet (one write and one wakeup fewer for the client's device). 0 answers at "
       "the end of the event loop's pass."},
      {"stream_management.resume_from_store", &Config::sm_resume_from_store, 0, 0, true,
       "Keep each resumable session's state in the store (its resource, presence, acknowledged counts and a "
       "cursor into the archive), so that a client can resume after the server crashed or restarted: it "
       "gets what it had not acknowledged, replayed from the archive. Each acknowledgement then waits for "
       "one more store write."},

      {"csi.enabled", &Config::csi_enabled, 0, 0, true,
       "Offer XEP-0352 client state indication: while a client is inactive, presence updates and chat states "
       "wait (only the latest from each sender is kept), as do receipts and chat markers; messages with a "
       "body and everything else go out at once."},
      {"csi.max_held", &Config::csi_max_held, 1, 100000, true,
       "Stanzas held for one inactive client; when more arrive, everything held is sent."},

      {"components.address", &Config::component_address, 0, 0, false,
       "Address for XEP-0114 external components (push app servers, gateways). The protocol has no TLS: keep "
       "it on loopback or a private network."},
      {"components.port", &Config::component_port, 0, 65535, false,
       "Port for external components; 0 picks a free port. The listener opens only if components.secrets "
       "names a component."},
      {"components.secrets", &Config::component_secrets, 0, 0, true,
       "The components allowed to connect, as \"domain=secret\" (e.g. \"push.example.org=...\"): each serves "
       "that domain and authenticates with the XEP-0114 handshake. Secrets of at least 16 characters."},

      {"external_services.uris", &Config::external_services, 0, 0, true,
       "STUN and TURN servers offered to clients for calls (XEP-0215), as RFC 7064/7065 URIs: "
       "\"stun:stun.example.org\", \"turn:turn.example.org:3478?transport=udp\", "
       "\"turns:turn.example.org:5349?transport=tcp\". Empty: the service is not offered."},
      {"external_services.turn_secret", &Config::turn_secret, 0, 0, true,
       "The TURN server's shared secret (coturn's static-auth-secret): TURN entries then carry a username "
       "and password valid for credential_lifetime seconds (the TURN REST scheme). Empty: no credentials."},
      {"external_services.credential_lifetime", &Config::turn_credential_lifetime, 60, 7 * 86400, true,
       "Seconds a TURN username and password stay valid."},

      {"push.enabled", &Config::push_enabled, 0, 0, true,
       "Let clients register for XEP-0357 push notifications, sent to their app server when a message "
       "arrives for a device that is offline, detached or inactive."},
      {"push.max_registrations", &Config::push_max_registrations, 1, 1000, true,
       "Push registrations one account may hold; one more is refused with <resource-constraint/>."},
      {"push.include_sender", &Config::push_include_sender, 0, 0, true,
       "Name the sender (last-message-sender) in notifications. They pass through the app server and the "
       "phone vendor's push service, so this is off by default."},
      {"push.include_body", &Config::push_include_body, 0, 0, true,
       "Put the message text (last-message-body) in notifications; off by default for the same reason."},

      {"limits.stanza_size", &Limits::stanza_size, 512, 64 << 20, true,
       "Largest stanza in bytes after authentication (policy-violation if exceeded)."},
      {"limits.depth", &Limits::depth, 2, 1000, true, "Deepest element nesting inside a stanza."},
      {"limits.attributes", &Limits::attributes, 1, 10000, true, "Most attributes on one element."},
      {"limits.name_length", &Limits::name_length, 8, 65536, true,
       "Longest element or attribute name, in bytes."},
      {"limits.stanza_size_preauth", &Limits::stanza_size_preauth, 512, 64 << 20, true,
       "Largest stanza before authentication."},
      {"limits.depth_preauth", &Limits::depth_preauth, 2, 1000, true,
       "Deepest nesting before authentication."},
      {"limits.attributes_preauth", &Limits::attributes_preauth, 1, 10000, true,
       "Most attributes on one element before authentication."},
      {"limits.name_length_preauth", &Limits::name_length_preauth, 8, 65536, true,
       "Longest name before authentication."},
      {"limits.connections_per_ip", &Limits::connections_per_ip, 1, kMaxI, true,
       "Concurrent client connections from one IP address."},
      {"limits.max_connections", &Limits::max_connections, 0, kMaxI, true,
       "Concurrent client connections in all; 0 means bounded by the file-descriptor limit."},
      {"limits.failed_logins_per_ip", &Limits::failed_logins_per_ip, 1, kMaxI, true,
       "Failed authentications from one IP per window before further attempts are refused."},
      {"limits.failed_logins_per_account", &Limits::failed_logins_per_account, 1, kMaxI, true,
       "Failed authentications for one account per window before further attempts are refused."},
      {"limits.failed_login_window", &Limits::failed_login_window, 1, 86400, true,
       "Window for the failed-login counters, in seconds."},
      {"limits.stanzas_per_second", &Limits::stanzas_per_second, 1, kMaxI, true,
       "Sustained stanzas per second one session may send; beyond it reading pauses (TCP backpressure)."},
      {"limits.stanza_burst", &Limits::stanza_burst, 1, kMaxI, true,
       "Stanzas a session may send in a burst above the sustained rate."},
      {"limits.send_queue", &Limits::send_queue, 4096, kMaxI, true,
       "Bytes queued for a peer that is not reading before its stream is closed."},
      {"limits.auth_timeout", &Limits::auth_timeout, 1, 3600, true,
       "Seconds from connect until the session must be authenticated and bound."},
      {"limits.stanza_timeout", &Limits::stanza_timeout, 1, 3600, true,
       "Seconds a stanza may take to arrive once it has started (slowloris guard)."},
      {"limits.idle_timeout", &Limits::idle_timeout, 1, 86400, true,
       "Seconds of silence from a client before the server pings it."},
      {"limits.ping_timeout", &Limits::ping_timeout, 1, 3600, true,
       "Seconds a client has to answer the server's ping before it is disconnected."},
      {"limits.registrations_per_ip", &Limits::registrations_per_ip, 1, kMaxI, true,
       "In-band registrations allowed from one IP per hour."},
      {"limits.resources_per_account", &Limits::resources_per_account, 1, 10000, true,
       "Concurrent sessions (resources) per account."},
      {"limits.roster_size", &Limits::roster_size, 1, 1000000, true, "Most contacts in one roster."},
      {"limits.archive_pref_jids", &Limits::archive_pref_jids, 0, 100000, true,
       "Most JIDs in one account's archiving preferences (XEP-0313 always and never lists); more is "
       "<not-acceptable/>."},
      {"limits.blocklist_items", &Limits::blocklist_items, 1, 100000, true,
       "Most JIDs one account may block (XEP-0191); a block beyond it is refused with "
       "<resource-constraint/>."},
      {"limits.offline_messages", &Limits::offline_messages, 0, 1000000, true,
       "Most messages stored for an offline account; beyond it senders get an error."},
      {"limits.vcard_size", &Limits::vcard_size, 256, 16 << 20, true, "Largest vCard in bytes."},
      {"limits.private_item_size", &Limits::private_item_size, 256, 16 << 20, true,
       "Largest element one account may keep in private XML storage (XEP-0049), in bytes; larger is "
       "<not-acceptable/>."},
      {"limits.private_items", &Limits::private_items, 1, 100000, true,
       "Elements (namespaces) one account may keep in private XML storage; one more is "
       "<resource-constraint/>."},
      {"limits.pep_nodes", &Limits::pep_nodes, 1, 100000, true,
       "Most personal eventing (XEP-0163) nodes one account may have; one more is <not-acceptable/> with "
       "XEP-0060's <max-nodes-exceeded/>."},
      {"limits.pep_items", &Limits::pep_items, 1, 100000, true,
       "Most items one PEP node may keep; pubsub#max_items 'max' means this, and a larger number is "
       "<not-acceptable/>."},
      {"limits.pep_item_size", &Limits::pep_item_size, 256, 16 << 20, true,
       "Largest payload of one PEP item in bytes (avatars are the big ones); larger is <not-acceptable/> "
       "with <payload-too-big/>."},
      {"limits.caps_cache", &Limits::caps_cache, 16, 10000000, true,
       "Verified entity-capabilities hashes (XEP-0115) kept in memory; a client with an unknown hash is "
       "asked for its features once."},
      {"limits.messages_in_flight", &Limits::messages_in_flight, 1, 1000000, true,
       "Stanzas one session may have waiting for their store writes (messages for the archive or offline "
       "storage, IQ sets, subscriptions); beyond it the server stops reading from that client (TCP "
       "backpressure) until writes complete."},
  };
  return kSchema;
}

std::string LineOf(const toml::node& node) {
  const auto& src = node.source();
  return src.begin ? fmt::format("line {}", src.begin.line) : std::string("unknown line");
}

struct Applier {
  Config& config;
  const Key& key;
  const toml::node& node;
  const std::string& origin;

  Result<void> Fail(const std::string& what) const {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("{}: {}: key '{}' {}", origin, LineOf(node), key.path, what));
  }
  Result<void> CheckInt(int64_t v) const {
    if (v < key.min || v > key.max) {
      return Fail(fmt::format("is {}, outside [{}, {}]", v, key.min, key.max));
    }
    return {};
  }

  Result<void> operator()(std::string Config::*field) const {
    auto v = node.value<std::string>();
    if (!node.is_string() || !v) return Fail("must be a string");
    config.*field = *v;
    return {};
  }
  Result<void> operator()(int64_t Config::*field) const {
    if (!node.is_integer()) return Fail("must be an integer");
    int64_t v = *node.value<int64_t>();
    if (auto r = CheckInt(v); !r) return r;
    config.*field = v;
    return {};
  }
  Result<void> operator()(int64_t Limits::*field) const {
    if (!node.is_integer()) return Fail("must be an integer");
    int64_t v = *node.value<int64_t>();
    if (auto r = CheckInt(v); !r) return r;
    config.limits.*field = v;
    return {};
  }
  Result<void> operator()(bool Config::*field) const {
    if (!node.is_boolean()) return Fail("must be true or false");
    config.*field = *node.value<bool>();
    return {};
  }
  Result<void> operator()(std::vector<std::string> Config::*field) const {
    const auto* arr = node.as_array();
    if (arr == nullptr) return Fail("must be an array of strings");
    std::vector<std::string> out;
    for (const auto& el : *arr) {
      if (!el.is_string()) return Fail("must be an array of strings");
      out.push_back(*el.value<std::string>());
    }
    config.*field = std::move(out);
    return {};
  }
};

Result<void> Validate(const Config& c, const std::string& origin) {
  if (c.domain.empty()) return MakeError(Errc::kInvalidArgument, origin + ": server.domain is empty");
  if (c.store_backend != "sqlite" && c.store_backend != "postgres") {
    return MakeError(Errc::kInvalidArgument, fmt::format("{}: store.backend '{}' is not known (sqlite, postgres)",
                                                         origin, c.store_backend));
  }
  if (c.store_backend == "postgres" && c.postgres_uri.empty()) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("{}: store.backend is \"postgres\" but store.postgres_uri is empty", origin));
  }
  static const std::set<std::string> kMechs = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS",
                                               "SCRAM-SHA-1", "PLAIN"};
  for (const auto& m : c.sasl_mechanisms) {
    if (kMechs.count(m) == 0) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: auth.mechanisms: '{}' is not a supported mechanism", origin, m));
    }
  }
  std::set<std::string> component_domains;
  for (const auto& entry : c.component_secrets) {
    size_t eq = entry.find('=');
    std::string domain = entry.substr(0, eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || domain.empty()) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: components.secrets: '{}' is not \"domain=secret\"", origin,
                                   domain.empty() && eq == std::string::npos ? entry.substr(0, 40) : domain));
    }
    if (entry.size() - eq - 1 < 16) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: components.secrets: the secret for '{}' is shorter than 16 characters",
                                   origin, domain));
    }
    if (std::any_of(domain.begin(), domain.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; })) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: components.secrets: write the domain '{}' in lower case", origin, domain));
    }
    if (domain == c.domain) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: components.secrets: '{}' is the server's own domain", origin, domain));
    }
    if (!component_domains.insert(domain).second) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: components.secrets: '{}' is listed twice", origin, domain));
    }
  }
  for (const auto& uri : c.external_services) {
    auto parsed = ParseServiceUri(uri);
    if (!parsed.ok()) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: external_services.uris: '{}': {}", origin, uri, parsed.error().message));
    }
  }
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (kLevels.count(c.log_level) == 0) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("{}: log.level '{}' is not a level", origin, c.log_level));
  }
  return {};
}

}  // namespace

std::string Config::CertificatePath() const {
  return certificate.empty() ? data_dir + "/tls/cert.pem" : certificate;
}
std::string Config::KeyPath() const { return key.empty() ? data_dir + "/tls/key.pem" : key; }
Result<ExternalService> ParseServiceUri(std::string_view uri) {
  ExternalService out;
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos) return MakeError(Errc::kInvalidArgument, "not a stun: or turn: URI");
  out.type = std::string(uri.substr(0, colon));
  const bool secure = out.type == "stuns" || out.type == "turns";
  const bool turn = out.type == "turn" || out.type == "turns";
  if (!secure && !turn && out.type != "stun") {
    return MakeError(Errc::kInvalidArgument, "the scheme must be stun, stuns, turn or turns");
  }
  std::string_view rest = uri.substr(colon + 1);
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return MakeError(Errc::kInvalidArgument, "an unclosed '[' in the host");
    out.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return MakeError(Errc::kInvalidArgument, "junk after the host");
      port = rest.substr(1);
    }
  } else {
    size_t c2 = rest.find(':');
    out.host = std::string(rest.substr(0, c2));
    if (c2 != std::string_view::npos) port = rest.substr(c2 + 1);
  }
  if (out.host.empty() || out.host.find_first_of("/@ ") != std::string::npos) {
    return MakeError(Errc::kInvalidArgument, "no host, or not a host");
  }
  out.port = secure ? 5349 : 3478;
  if (!port.empty()) {
    int value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
      return MakeError(Errc::kInvalidArgument, "the port must be 1 to 65535");
    }
    out.port = value;
  }
  out.transport = secure ? "tcp" : "udp";
  if (!query.empty()) {
    if (!turn || (query != "transport=udp" && query != "transport=tcp")) {
      return MakeError(Errc::kInvalidArgument, "the only query allowed is ?transport=udp or tcp, on TURN URIs");
    }
    out.transport = std::string(query.substr(10));
  }
  return out;
}

std::string Config::ComponentSecret(std::string_view domain) const {
  for (const auto& entry : component_secrets) {
    size_t eq = entry.find('=');
    if (eq != std::string::npos && std::string_view(entry).substr(0, eq) == domain) return entry.substr(eq + 1);
  }
  return {};
}

std::string Config::SqlitePath() const { return sqlite_path.empty() ? data_dir + "/nines.db" : sqlite_path; }

Result<Config> ParseConfig(const std::string& toml_text, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return MakeError(Errc::kInvalidArgument,
                     fmt::format("{}: line {}: {}", origin, e.source().begin.line, e.description()));
  }
  Config config;
  std::set<std::string> known;
  for (const auto& key : Schema()) known.insert(key.path);

  // Walk every key in the file so unknown ones are reported, with their line.
  for (const auto& [section, node] : table) {
    const auto* sub = node.as_table();
    if (sub == nullptr) {
      return MakeError(Errc::kInvalidArgument,
                       fmt::format("{}: {}: unknown key '{}' (keys live in sections such as [server])",
                                   origin, LineOf(node), section.str()));
    }
    for (const auto& [name, value] : *sub) {
      std::string path = std::string(section.str()) + "." + std::string(name.str());
      if (known.count(path) == 0) {
        return MakeError(Errc::kInvalidArgument,
                         fmt::format("{}: {}: unknown key '{}'", origin, LineOf(value), path));
      }
      for (const auto& key : Schema()) {
        if (path == key.path) {
          if (auto r = std::visit(Applier{config, key, value, origin}, key.field); !r) return r.error();
        }
      }
    }
  }
  if (auto r = Validate(config, origin); !r) return r.error();
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  if (path.empty()) return Config{};
  std::ifstream in(path);
  if (!in) return MakeError(Errc::kNotFound, fmt::format("cannot read config file '{}'", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseConfig(buffer.str(), path);
}

Config MergeReloadable(const Config& current, const Config& fresh) {
  Config out = current;
  for (const auto& key : Schema()) {
    if (!key.reloadable) continue;
    std::visit(
        [&](auto field) {
          using F = decltype(field);
          if constexpr (std::is_same_v<F, int64_t Limits::*>) {
            out.limits.*field = fresh.limits.*field;
          } else {
            out.*field = fresh.*field;
          }
        },
        key.field);
  }
  return out;
}

std::vector<std::string> RestartOnlyChanges(const Config& current, const Config& fresh) {
  std::vector<std::string> out;
  for (const auto& key : Schema()) {
    if (key.reloadable) continue;
    bool differs = std::visit(
        [&](auto field) {
          using F = decltype(field);
          if constexpr (std::is_same_v<F, int64_t Limits::*>) {
            return current.limits.*field != fresh.limits.*field;
          } else {
            return current.*field != fresh.*field;
          }
        },
        key.field);
    if (differs) out.emplace_back(key.path);
  }
  return out;
}

std::string ConfigDocMarkdown() {
  Config defaults;
  std::string out =
      "# Configuration reference\n\n"
      "<!-- Generated by `nines config doc` from the schema in src/base/config.cc; "
      "a unit test fails if this file and the schema disagree. -->\n\n"
      "nines reads one TOML file (`nines serve -c FILE`). Every key is optional; with no file at all "
      "the server runs on the defaults below. Unknown keys are errors that name the key and line, so "
      "a typo never silently falls back to a default. Keys marked *reload* take effect on SIGHUP; the "
      "others need a restart.\n\n";
  std::string section;
  for (const auto& key : Schema()) {
    std::string path = key.path;
    std::string sec = path.substr(0, path.find('.'));
    if (sec != section) {
      section = sec;
      out += fmt::format(
          "\n## [{}]\n\n| key | type | default | bounds | reload | meaning |\n|---|---|---|---|---|---|\n",
          sec);
    }
    std::string type;
    std::string def;
    std::string bounds = "";
    std::visit(
        [&](auto field) {
          using F = decltype(field);
          if constexpr (std::is_same_v<F, std::string Config::*>) {
            type = "string";
            def = "\"" + defaults.*field + "\"";
          } else if constexpr (std::is_same_v<F, int64_t Config::*>) {
            type = "integer";
            def = std::to_string(defaults.*field);
            bounds = fmt::format("{} … {}", key.min, key.max);
          } else if constexpr (std::is_same_v<F, int64_t Limits::*>) {
            type = "integer";
            def = std::to_string(defaults.limits.*field);
            bounds =
                key.max == kMaxI ? fmt::format("≥ {}", key.min) : fmt::format("{} … {}", key.min, key.max);
          } else if constexpr (std::is_same_v<F, bool Config::*>) {
            type = "boolean";
            def = defaults.*field ? "true" : "false";
          } else {
            type = "array of strings";
            def = "[";
            for (size_t i = 0; i < (defaults.*field).size(); ++i) {
              def += (i ? ", \"" : "\"") + (defaults.*field)[i] + "\"";
            }
            def += "]";
          }
        },
        key.field);
    out += fmt::format("| `{}` | {} | `{}` | {} | {} | {} |\n", path.substr(path.find('.') + 1), type, def,
                       bounds, key.reloadable ? "reload" : "restart", key.doc);
  }
  return out;
}

}  // namespace nines
