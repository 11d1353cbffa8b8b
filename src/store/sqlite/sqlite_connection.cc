#include "store/sqlite/sqlite_connection.h"

#include <sqlite3.h>

#include <utility>

namespace nines::store::sqlite {

Errc ErrcFromSqlite(int code) {
  if (code == SQLITE_CONSTRAINT_FOREIGNKEY) return Errc::kNotFound;
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
      return Errc::kConflict;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
      return Errc::kUnavailable;
    case SQLITE_TOOBIG:
      return Errc::kLimitExceeded;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_NOTADB:
      return Errc::kInvalidArgument;
    default:
      return Errc::kInternal;
  }
}

// ---- Statement ----

Statement::~Statement() {
  if (stmt_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

void Statement::Reset() {
  if (stmt_ != nullptr) sqlite3_reset(stmt_);
}

void Statement::BindInt(int index, int64_t value) { sqlite3_bind_int64(stmt_, index, value); }

void Statement::BindText(int index, std::string_view value) {
  // An empty text binds as '', never NULL, whatever the view's data().
  sqlite3_bind_text64(stmt_, index, value.empty() ? "" : value.data(), value.size(), SQLITE_TRANSIENT,
                      SQLITE_UTF8);
}

void Statement::BindBlob(int index, std::string_view value) {
  // A zero-length blob must still bind as a blob, not NULL: data() of an
  // empty view may be null, so give SQLite a valid pointer.
  static const char kEmpty = 0;
  sqlite3_bind_blob64(stmt_, index, value.empty() ? &kEmpty : value.data(), value.size(), SQLITE_TRANSIENT);
}

Result<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // With the v2 prepare interface sqlite3_step returns the specific
  // (extended, since extended codes are on) error code directly.
  return MakeError(ErrcFromSqlite(rc), std::string(sqlite3_errstr(rc)) + ": " + sqlite3_errmsg(db_));
}

Result<void> Statement::Run() {
  while (true) {
    auto row = Step();
    if (!row.ok()) return row.error();
    if (!*row) return {};
  }
}

int64_t Statement::ColumnInt(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::ColumnText(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  int size = sqlite3_column_bytes(stmt_, column);
  return text == nullptr ? std::string() : std::string(text, static_cast<size_t>(size));
}

std::string Statement::ColumnBlob(int column) const { return std::string(ColumnBlobView(column)); }

std::string_view Statement::ColumnBlobView(int column) const {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  int size = sqlite3_column_bytes(stmt_, column);
  return data == nullptr ? std::string_view() : std::string_view(data, static_cast<size_t>(size));
}

// ---- Connection ----

bool ConfigureSqliteProcess() {
  static const bool configured = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  return configured;
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& path, Mode mode,
                                                     int busy_timeout_ms) {
  (void)ConfigureSqliteProcess();  // before the first open, which initialises SQLite
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  flags |= mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return MakeError(ErrcFromSqlite(rc), std::move(message));
  }
  std::unique_ptr<Connection> conn(new Connection(db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_timeout_ms);
  if (mode == Mode::kReadWrite) {
    // foreign_keys is per connection and a no-op inside a transaction; we
    // are outside one here. synchronous=FULL makes every WAL commit fsync.
    // journal_size_limit truncates the WAL back to 64 MiB after a
    // checkpoint, so one burst does not leave a huge file behind.
    // wal_autocheckpoint: a checkpoint runs inside the commit that crosses
    // it, and every write waits for it; 4096 pages (16 MiB) keep that wait
    // to tens of milliseconds (at 16384, 60-100 ms set the p99 of archived
    // messages) and cost no throughput (docs/benchmarks.md, fifteenth
    // session).
    // cache_size: the archive's per-owner indexes take inserts all over
    // their b-trees; with SQLite's default 2 MiB cache the writer spent most
    // of its time evicting and re-reading pages (docs/benchmarks.md).
    if (auto r = conn->Exec("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;"
                            " PRAGMA journal_size_limit = 67108864; PRAGMA cache_size = -65536;"
                            " PRAGMA wal_autocheckpoint = 4096;");
        !r.ok()) {
      return r.error();
    }
  }
  return conn;
}

Connection::~Connection() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Result<void> Connection::Exec(const char* sql) {
  char* message = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return {};
  std::string text = std::string(sqlite3_errstr(rc)) + ": " + (message ? message : "");
  sqlite3_free(message);
  return MakeError(ErrcFromSqlite(rc), std::move(text));
}

Result<Statement> Connection::Prepare(std::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                &stmt, nullptr);
    if (rc != SQLITE_OK) return MakeSqliteError(rc, "prepare");
    it = statements_.emplace(std::string(sql), stmt).first;
  }
  return Statement(db_, it->second);
}

int64_t Connection::Changes() const { return sqlite3_changes64(db_); }

int64_t Connection::TotalChanges() const { return sqlite3_total_changes64(db_); }

bool Connection::InAutocommit() const { return sqlite3_get_autocommit(db_) != 0; }

Error Connection::MakeSqliteError(int code, std::string_view what) const {
  std::string message(what);
  message += ": ";
  message += sqlite3_errstr(code);
  message += ": ";
  message += sqlite3_errmsg(db_);
  return MakeError(ErrcFromSqlite(code), std::move(message));
}

}  // namespace nines::store::sqlite
