// One libpq connection in pipeline mode, and the small types the PostgreSQL
// store's statements are written with.
//
// A Connection belongs to one store thread (pg_store.h). That thread builds a
// list of Steps (statements and Syncs), and Run() sends them all without
// waiting (libpq pipeline mode, non-blocking socket), reading results as they
// arrive so neither side's buffers can fill up, and hands each statement's
// result to its Step's callback in order. Only the store's own thread ever
// waits on the socket; the server's event loops never do.
//
// Statements are prepared once per connection, the first time their SQL is
// run (each prepare in its own Sync segment, ahead of the batch, so a bad
// statement cannot abort other work).
//
// Parameters go as text, except bytea, which goes binary; results come back
// binary (int8, int4, bool, text, bytea), read through Rows.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/result.h"

namespace nines::store::postgres {

// The parameters of one statement, $1 first.
class Params {
 public:
  Params& Text(std::string_view value);
  Params& Int(int64_t value);
  Params& Bool(bool value);
  Params& Bytes(std::string_view value);  // bytea, sent in binary
  Params& Null();
  // A text[] / int8[] / bool[] literal ('{"a","b"}'), for unnest() and = ANY().
  Params& TextArray(const std::vector<std::string>& values);
  Params& IntArray(const std::vector<int64_t>& values);
  Params& BoolArray(const std::vector<bool>& values);

  int size() const { return static_cast<int>(values_.size()); }
  // For PQsendQueryPrepared; valid until the next change.
  std::vector<const char*> Values() const;
  std::vector<int> Lengths() const;
  std::vector<int> Formats() const;

 private:
  std::vector<std::string> values_;
  std::vector<bool> binary_;
  std::vector<bool> null_;
};

// The rows of one successful statement (binary format), or a contiguous
// range of them (a merged statement's rows for one job).
class Rows {
 public:
  explicit Rows(const PGresult* result, int first = 0, int count = -1)
      : result_(result), first_(first), count_(count < 0 ? PQntuples(result) - first : count) {}
  int size() const;
  bool IsNull(int row, int col) const;
  // text, varchar or bytea: the raw bytes.
  std::string Text(int row, int col) const;
  // int8, int4 or int2.
  int64_t Int(int row, int col) const;
  bool Bool(int row, int col) const;
  // Rows an INSERT/UPDATE/DELETE touched (PQcmdTuples).
  int64_t Affected() const;
  const PGresult* result() const { return result_; }
  int first() const { return first_; }

 private:
  const PGresult* result_;
  int first_;
  int count_;
};

// A statement that consecutive jobs' rows share: one call for a run of them
// (a group commit of many archive writes is one statement, not hundreds).
// `sql` takes $1, an int8[] of the job ordinals (1, 2, ...) of its input
// rows, and $2..$(columns+1), one text[] per column (cast them in the SQL);
// it returns rows whose first column is the ordinal, ordered by it. Each job
// sees only its own rows.
struct MergeSpec {
  const char* sql;
  int columns;
};

// What became of one statement.
enum class StepStatus {
  kOk,       // ran; the callback got its rows
  kError,    // failed; error says why
  kAborted,  // skipped, because an earlier statement of its Sync segment failed
};

struct Step {
  // kSync ends a segment. The statements of a segment are one (implicit)
  // transaction: the sync commits it if none of them failed, and an error
  // rolls it back and skips the rest of that segment only. A sync's `done`
  // runs with kOk once the server has processed it (committed, if no
  // statement of the segment failed).
  enum class Kind { kQuery, kSync } kind = Kind::kQuery;
  const char* sql = nullptr;  // a static string: statements are prepared by their text
  Params params;
  // Runs once the statement's result is in, before later steps' callbacks.
  // `rows` is valid only when status is kOk; `error` only for kError.
  std::function<void(StepStatus status, const Rows* rows, const Error* error)> done;
  // Instead of sql/params: rows for a merged statement (MergeSpec). Run()
  // turns each run of consecutive steps with the same spec into one call.
  const MergeSpec* merge = nullptr;
  std::vector<std::vector<std::string>> merge_rows;
};

// Replaces every run of consecutive merge steps by one statement step.
std::vector<Step> MergeSteps(std::vector<Step> steps);

// Maps a failed result to an Errc (SQLSTATE classes): unique violation →
// kConflict; foreign key, no_data_found → kNotFound; check, data exceptions,
// invalid_parameter_value → kInvalidArgument; program_limit_exceeded →
// kLimitExceeded; connection, shutdown, serialization and deadlock →
// kUnavailable; anything else kInternal.
Error MapError(const PGresult* result);

struct ConnectOptions {
  // A libpq connection string (URI or key=value), possibly multi-host.
  std::string conninfo;
  // Added when conninfo does not say: target_session_attrs=read-write (so a
  // multi-host string follows a failover to the new primary) and
  // connect_timeout (seconds).
  std::string default_target_session_attrs = "read-write";
  int default_connect_timeout_s = 5;
};

class Connection {
 public:
  // Connects (blocking: at startup, or on a store thread reconnecting).
  static Result<std::unique_ptr<Connection>> Open(const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // For the schema migration at Open only, before Run() is first used:
  // runs a script of statements with PQexec (blocking, not in a pipeline).
  Result<void> Exec(const char* sql);
  // Runs one statement with PQexecParams and returns its rows' first column
  // of the first row as text, or "" if no row (blocking; for migrations).
  Result<std::string> QueryValue(const char* sql, const Params& params);

  // Sends every step (in pipeline mode) and delivers every result. Returns
  // an error only if the connection broke or could not be used; then the
  // steps whose callbacks have not run did not complete (the caller decides
  // what may be retried), and the Connection must be thrown away.
  Result<void> Run(std::vector<Step>& steps);

  // Host and port of the server it is connected to, for logs.
  std::string Describe() const;
  bool broken() const { return broken_; }

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  Result<void> EnterPipeline();
  Result<void> PrepareMissing(const std::vector<Step>& steps);
  // Flushes what libpq has buffered, reading input meanwhile; waits on the
  // socket when the kernel buffer is full.
  Result<void> Flush();
  // Waits until the socket is readable (and writable, if `want_write`).
  Result<void> Wait(bool want_write);
  Error Broken(std::string_view what);

  PGconn* conn_;
  bool pipeline_ = false;
  bool broken_ = false;
  std::unordered_set<std::string> prepared_;  // SQL texts prepared on this connection
};

// The error ends the session (FATAL, or SQLSTATE class 57P/08): the server
// ran nothing after it.
bool EndsSession(const PGresult* result);

// The statement name a SQL text is prepared under (stable: a hash of the text).
std::string StatementName(std::string_view sql);

}  // namespace nines::store::postgres
