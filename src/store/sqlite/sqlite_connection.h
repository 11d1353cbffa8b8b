// Connection and Statement: a thin, error-as-value wrapper over one sqlite3
// handle and its cached prepared statements.
//
// Thread safety: a Connection is used by one thread at a time (it is opened
// with SQLITE_OPEN_NOMUTEX). SqliteStore opens each connection on the caller's
// thread in OpenSqlite and then hands it to exactly one worker thread; thread
// creation orders the hand-off.
//
// Statements are prepared once per connection and cached by their SQL text,
// which must be a string literal (or otherwise outlive the connection): the
// cache keys on the view, not on a copy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/result.h"
#include "base/string_hash.h"

struct sqlite3;
struct sqlite3_stmt;

namespace nines::store::sqlite {

// Maps a SQLite result code (primary or extended) to an Errc, once, for the
// whole backend:
//   foreign-key constraint       -> kNotFound   (the owning row does not exist)
//   other constraints            -> kConflict   (the row already exists)
//   BUSY, LOCKED, IOERR, FULL,
//   CANTOPEN, READONLY, NOMEM,
//   PROTOCOL                     -> kUnavailable (may be retried)
//   TOOBIG                       -> kLimitExceeded
//   MISMATCH, RANGE, NOTADB      -> kInvalidArgument
//   anything else (CORRUPT, ...) -> kInternal
Errc ErrcFromSqlite(int code);

// A cached, prepared statement borrowed from its Connection. Destruction
// resets it and clears its bindings, so no statement stays active (and no
// read snapshot stays open) past the scope that used it. Move-only.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Binders; `index` is 1-based as in SQLite. Text and blobs are copied
  // (SQLITE_TRANSIENT), so arguments need not outlive the call.
  void BindInt(int index, int64_t value);
  void BindText(int index, std::string_view value);
  void BindBlob(int index, std::string_view value);

  // Steps once. True if a row is available, false when done.
  Result<bool> Step();
  // Steps until done, ignoring rows.
  Result<void> Run();
  // Abandons the remaining rows (and ends the statement's read), without
  // stepping through them as Run would.
  void Reset();

  int64_t ColumnInt(int column) const;
  std::string ColumnText(int column) const;
  std::string ColumnBlob(int column) const;
  // The column's bytes in place: valid until the statement steps, is reset
  // or is finalized.
  std::string_view ColumnBlobView(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// Process-wide SQLite settings, which SQLite accepts only before it
// initialises (its first open): memory statistics off, since they take a
// global mutex around every SQLite malloc and free and nines never reads
// them. Runs once per process; Connection::Open calls it, so only code that
// uses SQLite without a Connection must call it first. False if SQLite had
// already initialised and refused (nothing breaks; it is only slower).
bool ConfigureSqliteProcess();

class Connection {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Opens `path` (creating it in kReadWrite mode), sets busy_timeout_ms, and
  // for kReadWrite enables foreign keys and synchronous=FULL. It does not set
  // the journal mode; the schema code does that once per file.
  static Result<std::unique_ptr<Connection>> Open(const std::string& path, Mode mode, int busy_timeout_ms);

  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements with no parameters and no result rows of
  // interest (schema scripts, BEGIN/COMMIT, pragmas).
  Result<void> Exec(const char* sql);

  // Returns the cached statement for `sql`, preparing it on first use. The
  // cache copies the text, so `sql` may be built at run time; keep the
  // number of distinct texts small (each stays prepared until close).
  Result<Statement> Prepare(std::string_view sql);

  // Rows changed by every completed INSERT, UPDATE and DELETE on this
  // connection since it opened, trigger programs included. A statement that
  // fails is undone by SQLite and not counted, so an unchanged total across
  // a failed job means the job left nothing behind.
  int64_t TotalChanges() const;
  // Rows changed by the most recent INSERT/UPDATE/DELETE (not counting
  // foreign-key cascades).
  int64_t Changes() const;

  // True if no transaction is open. After a failed statement this tells the
  // writer whether SQLite rolled the whole transaction back on its own.
  bool InAutocommit() const;

  // An Error for result code `code`, carrying SQLite's message. `what` says
  // what was being done; messages never include bound values.
  Error MakeSqliteError(int code, std::string_view what) const;

  sqlite3* handle() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  // Prepared statements by SQL text. Owned keys: some SQL is built at run
  // time (archive queries name only the filters they use).
  std::unordered_map<std::string, sqlite3_stmt*, StringHash, std::equal_to<>> statements_;
};

}  // namespace nines::store::sqlite
