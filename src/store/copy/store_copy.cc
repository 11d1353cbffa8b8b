#include "store/copy/store_copy.h"

#include <libpq-fe.h>

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "store/sqlite/archive_log.h"
#include "store/sqlite/sqlite_connection.h"
#include "store/sqlite/sqlite_store.h"
#include "store/store.h"

namespace nines::store::copy {
namespace {

// How a column is read from SQLite and written for COPY.
enum class Kind { kText, kInt, kBool, kBytes };

struct Column {
  const char* name;
  Kind kind;
};

struct Table {
  const char* name;
  std::vector<Column> columns;
};

constexpr Kind T = Kind::kText;
constexpr Kind I = Kind::kInt;
constexpr Kind B = Kind::kBool;
constexpr Kind X = Kind::kBytes;

// Parents before children (foreign keys). Column names are the same in both
// schemas; SQLite keeps flags as 0/1 integers, PostgreSQL as booleans.
const std::vector<Table>& Tables() {
  static const std::vector<Table> kTables = {
      {"accounts",
       {{"username", T}, {"sha1_salt", X}, {"sha1_iterations", I}, {"sha1_stored_key", X},
        {"sha1_server_key", X}, {"sha256_salt", X}, {"sha256_iterations", I}, {"sha256_stored_key", X},
        {"sha256_server_key", X}, {"created_ms", I}, {"roster_version", I}}},
      {"roster_items",
       {{"username", T}, {"jid", T}, {"name", T}, {"subscription", T}, {"ask_out", B}, {"pending_in", B},
        {"preapproved", B}, {"pending_in_stanza", T}}},
      {"roster_groups", {{"username", T}, {"jid", T}, {"name", T}}},
      {"offline_messages", {{"id", I}, {"username", T}, {"stamp_ms", I}, {"stanza", T}}},
      {"vcards", {{"username", T}, {"xml", T}, {"updated_ms", I}}},
      {"archive_messages", {{"id", I}, {"stamp_ms", I}, {"owners", I}, {"stanza", T}}},
      {"archive",
       {{"username", T}, {"id", I}, {"peer", T}, {"peer_resource", T}, {"outgoing", B}, {"origin_id", T}}},
      {"device_states",
       {{"key", T}, {"username", T}, {"resource", T}, {"inbound_h", I}, {"cursor", I}, {"presence", T},
        {"priority", I}, {"carbons", B}, {"roster_requested", B}, {"resume_timeout_s", I}, {"detached_ms", I}}},
      {"push_registrations",
       {{"username", T}, {"jid", T}, {"node", T}, {"options", T}, {"resource", T}, {"created_ms", I}}},
      {"blocklist", {{"username", T}, {"jid", T}}},
      {"private_storage", {{"username", T}, {"key", T}, {"xml", T}}},
      {"archive_prefs", {{"username", T}, {"default_mode", T}}},
      {"archive_pref_jids", {{"username", T}, {"jid", T}, {"always", B}}},
      {"pep_nodes",
       {{"username", T}, {"node", T}, {"access_model", T}, {"max_items", I}, {"persist_items", B},
        {"send_last", T}, {"notify_retract", B}, {"notify_delete", B}, {"title", T}, {"created_ms", I}}},
      {"pep_node_groups", {{"username", T}, {"node", T}, {"name", T}}},
      {"pep_items",
       {{"seq", I}, {"username", T}, {"node", T}, {"item_id", T}, {"xml", T}, {"publisher", T},
        {"updated_ms", I}}},
  };
  return kTables;
}

std::string ColumnList(const Table& table) {
  std::string out;
  for (const Column& column : table.columns) {
    if (!out.empty()) out += ", ";
    out += column.name;
  }
  return out;
}

// COPY's text format: backslash escapes for the delimiter and line ends.
void AppendCopyText(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
}

void AppendCopyBytes(std::string& out, std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\\\x";  // bytea's hex form, its backslash escaped for COPY
  for (unsigned char c : value) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
}

std::string PgError(PGconn* conn, const std::string& what) {
  std::string message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return what + ": " + message;
}

// A libpq connection closed on scope exit.
struct PgConn {
  PGconn* conn = nullptr;
  ~PgConn() {
    if (conn != nullptr) PQfinish(conn);
  }
};

Result<std::string> PgValue(PGconn* conn, const std::string& sql) {
  PGresult* result = PQexec(conn, sql.c_str());
  ExecStatusType status = PQresultStatus(result);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    PQclear(result);
    return MakeError(Errc::kUnavailable, PgError(conn, sql));
  }
  std::string value = PQntuples(result) > 0 && !PQgetisnull(result, 0, 0) ? PQgetvalue(result, 0, 0) : "";
  PQclear(result);
  return value;
}

Result<int64_t> SqliteCount(sqlite::Connection& conn, const std::string& sql) {
  auto stmt = conn.Prepare(sql);
  if (!stmt.ok()) return stmt.error();
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  return *row ? stmt->ColumnInt(0) : 0;
}

Result<void> CopyTable(sqlite::Connection& source, PGconn* target, const Table& table, TableProgress& progress,
                       const std::function<void(const TableProgress&)>& report) {
  const std::string columns = ColumnList(table);
  std::string copy = "COPY " + std::string(table.name) + " (" + columns + ") FROM STDIN";
  PGresult* started = PQexec(target, copy.c_str());
  if (PQresultStatus(started) != PGRES_COPY_IN) {
    PQclear(started);
    return MakeError(Errc::kUnavailable, PgError(target, copy));
  }
  PQclear(started);

  auto stmt = source.Prepare("SELECT " + columns + " FROM " + table.name);
  if (!stmt.ok()) return stmt.error();
  std::string buffer;
  constexpr size_t kChunk = 1 << 20;
  constexpr int64_t kReportEvery = 5000;
  auto send = [&]() -> Result<void> {
    if (buffer.empty()) return {};
    if (PQputCopyData(target, buffer.data(), static_cast<int>(buffer.size())) != 1) {
      return MakeError(Errc::kUnavailable, PgError(target, "COPY into " + std::string(table.name)));
    }
    buffer.clear();
    return {};
  };
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) {
      PQputCopyEnd(target, "reading the SQLite database failed");
      return row.error();
    }
    if (!*row) break;
    for (size_t i = 0; i < table.columns.size(); ++i) {
      if (i > 0) buffer.push_back('\t');
      const int col = static_cast<int>(i);
      switch (table.columns[i].kind) {
        case Kind::kText:
          AppendCopyText(buffer, stmt->ColumnText(col));
          break;
        case Kind::kInt:
          buffer += std::to_string(stmt->ColumnInt(col));
          break;
        case Kind::kBool:
          buffer.push_back(stmt->ColumnInt(col) != 0 ? 't' : 'f');
          break;
        case Kind::kBytes:
          AppendCopyBytes(buffer, stmt->ColumnBlob(col));
          break;
      }
    }
    buffer.push_back('\n');
    ++progress.done;
    if (buffer.size() >= kChunk) {
      if (auto sent = send(); !sent.ok()) return sent;
    }
    if (progress.done % kReportEvery == 0 && progress.done != progress.total) report(progress);
  }
  if (auto sent = send(); !sent.ok()) return sent;
  if (PQputCopyEnd(target, nullptr) != 1) {
    return MakeError(Errc::kUnavailable, PgError(target, "ending COPY into " + std::string(table.name)));
  }
  PGresult* ended = PQgetResult(target);
  bool ok = PQresultStatus(ended) == PGRES_COMMAND_OK;
  PQclear(ended);
  while (PGresult* more = PQgetResult(target)) PQclear(more);
  if (!ok) return MakeError(Errc::kInvalidArgument, PgError(target, "COPY into " + std::string(table.name)));
  report(progress);
  return {};
}

}  // namespace

Result<CopyReport> CopySqliteToPostgres(const std::string& sqlite_path, const std::string& postgres_uri,
                                        const std::function<void(const TableProgress&)>& progress) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(sqlite_path, ec)) {
    return MakeError(Errc::kNotFound, "no SQLite database at '" + sqlite_path + "'");
  }
  // Both schemas at this build's version.
  {
    auto source = OpenSqlite(SqliteOptions{sqlite_path});
    if (!source.ok()) return MakeError(source.error().code, "the source: " + source.error().message);
    (*source)->Close();
    PostgresOptions options;
    options.uri = postgres_uri;
    auto target = OpenPostgres(options);
    if (!target.ok()) return MakeError(target.error().code, "the target: " + target.error().message);
    (*target)->Close();
  }
  auto source = sqlite::Connection::Open(sqlite_path, sqlite::Connection::Mode::kReadOnly,
                                         sqlite::kBusyTimeoutMs);
  if (!source.ok()) return source.error();
  PgConn target;
  target.conn = PQconnectdb(postgres_uri.c_str());
  if (PQstatus(target.conn) != CONNECTION_OK) {
    return MakeError(Errc::kUnavailable, PgError(target.conn, "cannot connect to the target"));
  }
  auto accounts = PgValue(target.conn, "SELECT count(*) FROM accounts");
  if (!accounts.ok()) return accounts.error();
  if (*accounts != "0") {
    return MakeError(Errc::kConflict, "the target database already holds " + *accounts +
                                          " accounts; migrate into an empty database");
  }

  // One read snapshot of the source, one transaction on the target.
  if (auto r = (*source)->Exec("BEGIN"); !r.ok()) return r.error();
  // SQLite keeps the archive as a log with posting lists; PostgreSQL keeps
  // it as rows. These TEMP tables, named like PostgreSQL's, hold the rows.
  if (auto r = sqlite::ArchiveLog::ExportV9Tables(**source); !r.ok()) return r.error();
  if (auto r = PgValue(target.conn, "BEGIN"); !r.ok()) return r.error();
  CopyReport report;
  for (const Table& table : Tables()) {
    TableProgress table_progress;
    table_progress.table = table.name;
    auto total = SqliteCount(**source, std::string("SELECT count(*) FROM ") + table.name);
    if (!total.ok()) return total.error();
    table_progress.total = *total;
    if (auto copied = CopyTable(**source, target.conn, table, table_progress, progress); !copied.ok()) {
      return copied.error();
    }
    report.tables.push_back(table_progress);
    report.rows += table_progress.done;
  }

  // Ids the target hands out next must be past every copied one, and past
  // ids SQLite handed out before (offline ids are never reused).
  auto offline_seq = SqliteCount(**source, "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'offline_messages'");
  if (!offline_seq.ok()) return offline_seq.error();
  const std::string offline_next =
      "GREATEST(" + std::to_string(*offline_seq) + ", (SELECT coalesce(max(id), 0) FROM offline_messages))";
  for (const std::string& sql : {
           "SELECT setval(pg_get_serial_sequence('offline_messages', 'id'), GREATEST(" + offline_next + ", 1), " +
               offline_next + " > 0)",
           std::string("SELECT setval(pg_get_serial_sequence('pep_items', 'seq'), "
                       "GREATEST((SELECT coalesce(max(seq), 0) FROM pep_items), 1), "
                       "(SELECT count(*) FROM pep_items) > 0)"),
           std::string("UPDATE archive_clock SET last_id = GREATEST(last_id, "
                       "(SELECT coalesce(max(id), 0) FROM archive_messages))"),
       }) {
    if (auto r = PgValue(target.conn, sql); !r.ok()) return r.error();
  }
  for (const TableProgress& table : report.tables) {
    auto copied = PgValue(target.conn, "SELECT count(*) FROM " + table.table);
    if (!copied.ok()) return copied.error();
    if (*copied != std::to_string(table.total)) {
      return MakeError(Errc::kInternal, "table " + table.table + ": " + std::to_string(table.total) +
                                            " rows in SQLite but " + *copied + " in PostgreSQL; nothing was committed");
    }
  }
  if (auto r = PgValue(target.conn, "COMMIT"); !r.ok()) return r.error();
  (void)(*source)->Exec("COMMIT");
  (void)PgValue(target.conn, "ANALYZE");
  return report;
}

}  // namespace nines::store::copy
