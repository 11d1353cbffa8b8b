#include "store/postgres/pg_connection.h"

#include <poll.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <boost/endian/conversion.hpp>

namespace nines::store::postgres {

// ---- Params ----

Params& Params::Text(std::string_view value) {
  values_.emplace_back(value);
  binary_.push_back(false);
  null_.push_back(false);
  return *this;
}

Params& Params::Int(int64_t value) { return Text(std::to_string(value)); }

Params& Params::Bool(bool value) { return Text(value ? "t" : "f"); }

Params& Params::Bytes(std::string_view value) {
  values_.emplace_back(value);
  binary_.push_back(true);
  null_.push_back(false);
  return *this;
}

Params& Params::Null() {
  values_.emplace_back();
  binary_.push_back(false);
  null_.push_back(true);
  return *this;
}

Params& Params::TextArray(const std::vector<std::string>& values) {
  std::string literal = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) literal.push_back(',');
    literal.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') literal.push_back('\\');
      literal.push_back(c);
    }
    literal.push_back('"');
  }
  literal.push_back('}');
  return Text(literal);
}

Params& Params::IntArray(const std::vector<int64_t>& values) {
  std::string literal = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) literal.push_back(',');
    literal += std::to_string(values[i]);
  }
  literal.push_back('}');
  return Text(literal);
}

Params& Params::BoolArray(const std::vector<bool>& values) {
  std::string literal = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) literal.push_back(',');
    literal.push_back(values[i] ? 't' : 'f');
  }
  literal.push_back('}');
  return Text(literal);
}

std::vector<const char*> Params::Values() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) out.push_back(null_[i] ? nullptr : values_[i].data());
  return out;
}

std::vector<int> Params::Lengths() const {
  std::vector<int> out;
  out.reserve(values_.size());
  for (const std::string& value : values_) out.push_back(static_cast<int>(value.size()));
  return out;
}

std::vector<int> Params::Formats() const {
  std::vector<int> out;
  out.reserve(values_.size());
  for (bool binary : binary_) out.push_back(binary ? 1 : 0);
  return out;
}

// ---- Rows ----

int Rows::size() const { return count_; }

bool Rows::IsNull(int row, int col) const { return PQgetisnull(result_, first_ + row, col) != 0; }

std::string Rows::Text(int row, int col) const {
  return std::string(PQgetvalue(result_, first_ + row, col),
                     static_cast<size_t>(PQgetlength(result_, first_ + row, col)));
}

int64_t Rows::Int(int row, int col) const {
  if (IsNull(row, col)) return 0;
  const char* data = PQgetvalue(result_, first_ + row, col);
  switch (PQgetlength(result_, first_ + row, col)) {
    case 8: {
      int64_t value;
      std::memcpy(&value, data, 8);
      return boost::endian::big_to_native(value);
    }
    case 4: {
      int32_t value;
      std::memcpy(&value, data, 4);
      return boost::endian::big_to_native(value);
    }
    case 2: {
      int16_t value;
      std::memcpy(&value, data, 2);
      return boost::endian::big_to_native(value);
    }
    default:
      return 0;
  }
}

bool Rows::Bool(int row, int col) const {
  return !IsNull(row, col) && PQgetlength(result_, first_ + row, col) == 1 &&
         PQgetvalue(result_, first_ + row, col)[0] != 0;
}

int64_t Rows::Affected() const {
  const char* tuples = PQcmdTuples(const_cast<PGresult*>(result_));
  return tuples == nullptr || *tuples == '\0' ? 0 : std::strtoll(tuples, nullptr, 10);
}

// ---- Merged statements ----

std::vector<Step> MergeSteps(std::vector<Step> steps) {
  bool any = false;
  for (const Step& step : steps) any = any || step.merge != nullptr;
  if (!any) return steps;
  std::vector<Step> out;
  out.reserve(steps.size());
  for (size_t i = 0; i < steps.size();) {
    if (steps[i].merge == nullptr) {
      out.push_back(std::move(steps[i++]));
      continue;
    }
    const MergeSpec* spec = steps[i].merge;
    std::vector<int64_t> ords;
    std::vector<std::vector<std::string>> columns(static_cast<size_t>(spec->columns));
    std::vector<std::function<void(StepStatus, const Rows*, const Error*)>> dones;
    for (; i < steps.size() && steps[i].merge == spec; ++i) {
      dones.push_back(std::move(steps[i].done));
      for (auto& row : steps[i].merge_rows) {
        ords.push_back(static_cast<int64_t>(dones.size()));
        for (size_t c = 0; c < columns.size(); ++c) {
          columns[c].push_back(c < row.size() ? std::move(row[c]) : std::string());
        }
      }
    }
    Step merged;
    merged.sql = spec->sql;
    merged.params.IntArray(ords);
    for (const auto& column : columns) merged.params.TextArray(column);
    merged.done = [dones = std::move(dones)](StepStatus status, const Rows* rows, const Error* error) {
      if (status != StepStatus::kOk) {
        for (const auto& done : dones) {
          if (done) done(status, nullptr, error);
        }
        return;
      }
      int r = 0;
      for (size_t k = 0; k < dones.size(); ++k) {
        const int64_t ord = static_cast<int64_t>(k) + 1;
        while (r < rows->size() && rows->Int(r, 0) < ord) ++r;  // rows of no job: ignored
        int start = r;
        while (r < rows->size() && rows->Int(r, 0) == ord) ++r;
        Rows own(rows->result(), rows->first() + start, r - start);
        if (dones[k]) dones[k](StepStatus::kOk, &own, nullptr);
      }
    };
    out.push_back(std::move(merged));
  }
  return out;
}

// ---- Errors ----

namespace {

std::string Trimmed(const char* message) {
  std::string out = message == nullptr ? "" : message;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

Error MapError(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  std::string sqlstate = state == nullptr ? "" : state;
  std::string message = Trimmed(PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY));
  if (message.empty()) message = Trimmed(PQresultErrorMessage(result));
  std::string text = "PostgreSQL: " + message + (sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")");
  auto cls = sqlstate.substr(0, 2);
  if (sqlstate == "23505") return MakeError(Errc::kConflict, text);
  if (sqlstate == "23503" || sqlstate == "P0002") return MakeError(Errc::kNotFound, text);
  if (sqlstate == "23514" || cls == "22") return MakeError(Errc::kInvalidArgument, text);
  if (cls == "54") return MakeError(Errc::kLimitExceeded, text);
  // Connection exceptions, shutdown, too many connections or out of
  // resources, serialization failure, deadlock, a read-only server (a
  // standby that was the primary before a failover): try again later.
  if (sqlstate.empty() || cls == "08" || cls == "57" || cls == "53" || cls == "40" || sqlstate == "25006" ||
      sqlstate == "55P03") {
    return MakeError(Errc::kUnavailable, text);
  }
  return MakeError(Errc::kInternal, text);
}

bool EndsSession(const PGresult* result) {
  const char* severity = PQresultErrorField(result, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  std::string_view sqlstate = state == nullptr ? "" : state;
  return (severity != nullptr && (std::string_view(severity) == "FATAL" || std::string_view(severity) == "PANIC")) ||
         sqlstate.starts_with("57P") || sqlstate.starts_with("08");
}

std::string StatementName(std::string_view sql) {
  // FNV-1a, 64 bits: names only need to differ between this build's statements.
  uint64_t hash = 1469598103934665603ULL;
  for (char c : sql) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  char name[24];
  std::snprintf(name, sizeof name, "n%016llx", static_cast<unsigned long long>(hash));
  return name;
}

// ---- Connection ----

Result<std::unique_ptr<Connection>> Connection::Open(const ConnectOptions& options) {
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.conninfo.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string why = parse_error != nullptr ? Trimmed(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return MakeError(Errc::kInvalidArgument, "bad PostgreSQL connection string: " + why);
  }
  std::vector<std::string> keywords;
  std::vector<std::string> values;
  auto set = [&](const std::string& keyword, const std::string& value) {
    for (size_t i = 0; i < keywords.size(); ++i) {
      if (keywords[i] == keyword) return;  // the string's own value wins
    }
    keywords.push_back(keyword);
    values.push_back(value);
  };
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val != nullptr && *o->val != '\0') set(o->keyword, o->val);
  }
  PQconninfoFree(parsed);
  set("target_session_attrs", options.default_target_session_attrs);
  set("connect_timeout", std::to_string(options.default_connect_timeout_s));
  set("application_name", "nines");
  // Notice a dead server (a host gone without a RST) within seconds, not
  // after the kernel's two hours.
  set("client_encoding", "UTF8");  // whatever PGCLIENTENCODING says: the store speaks UTF-8
  set("keepalives", "1");
  set("keepalives_idle", "5");
  set("keepalives_interval", "2");
  set("keepalives_count", "3");
  set("tcp_user_timeout", "10000");
  // The server's side too: a backend whose nines host died mid-batch (with
  // the archive clock locked) notices within seconds, not hours.
  const std::string server_keepalives =
      "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 -c tcp_user_timeout=10000";
  bool has_options = false;
  for (size_t i = 0; i < keywords.size(); ++i) {
    if (keywords[i] == "options") {
      values[i] += " " + server_keepalives;
      has_options = true;
    }
  }
  if (!has_options) set("options", server_keepalives);

  std::vector<const char*> kw;
  std::vector<const char*> vals;
  for (size_t i = 0; i < keywords.size(); ++i) {
    kw.push_back(keywords[i].c_str());
    vals.push_back(values[i].c_str());
  }
  kw.push_back(nullptr);
  vals.push_back(nullptr);
  PGconn* conn = PQconnectdbParams(kw.data(), vals.data(), 0);
  if (conn == nullptr) return MakeError(Errc::kUnavailable, "PostgreSQL: out of memory connecting");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return MakeError(Errc::kUnavailable, "cannot connect to PostgreSQL: " + why);
  }
  return std::unique_ptr<Connection>(new Connection(conn));
}

Connection::~Connection() { PQfinish(conn_); }

std::string Connection::Describe() const {
  const char* host = PQhost(conn_);
  const char* port = PQport(conn_);
  return std::string(host != nullptr ? host : "?") + ":" + (port != nullptr ? port : "?");
}

Error Connection::Broken(std::string_view what) {
  broken_ = true;
  return MakeError(Errc::kUnavailable,
                   "PostgreSQL connection to " + Describe() + " " + std::string(what) + ": " +
                       Trimmed(PQerrorMessage(conn_)));
}

Result<void> Connection::Exec(const char* sql) {
  PGresult* result = PQexec(conn_, sql);
  ExecStatusType status = PQresultStatus(result);
  Result<void> out;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    out = result != nullptr ? MapError(result) : Broken("failed");
  }
  PQclear(result);
  return out;
}

Result<std::string> Connection::QueryValue(const char* sql, const Params& params) {
  auto values = params.Values();
  auto lengths = params.Lengths();
  auto formats = params.Formats();
  PGresult* result = PQexecParams(conn_, sql, params.size(), nullptr, values.data(), lengths.data(),
                                  formats.data(), 0);
  ExecStatusType status = PQresultStatus(result);
  Result<std::string> out = std::string();
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    out = result != nullptr ? MapError(result) : Broken("failed");
  } else if (PQntuples(result) > 0 && PQnfields(result) > 0 && !PQgetisnull(result, 0, 0)) {
    out = std::string(PQgetvalue(result, 0, 0));
  }
  PQclear(result);
  return out;
}

Result<void> Connection::EnterPipeline() {
  if (pipeline_) return {};
  if (PQsetnonblocking(conn_, 1) != 0) return Broken("cannot be made non-blocking");
  if (PQenterPipelineMode(conn_) != 1) return Broken("cannot enter pipeline mode");
  pipeline_ = true;
  return {};
}

Result<void> Connection::Wait(bool want_write) {
  pollfd fd{};
  fd.fd = PQsocket(conn_);
  if (fd.fd < 0) return Broken("has no socket");
  fd.events = static_cast<short>(POLLIN | (want_write ? POLLOUT : 0));
  while (true) {
    int ready = poll(&fd, 1, -1);
    if (ready > 0) break;
    if (ready < 0 && errno != EINTR) return Broken("poll failed");
  }
  if ((fd.revents & (POLLIN | POLLERR | POLLHUP)) != 0 && PQconsumeInput(conn_) != 1) {
    return Broken("broke");
  }
  return {};
}

Result<void> Connection::Flush() {
  while (true) {
    int flushed = PQflush(conn_);
    if (flushed == 0) return {};
    if (flushed < 0) return Broken("broke while sending");
    // The kernel buffer is full: the server may be blocked writing results
    // we have not read, so read while waiting to write.
    if (auto r = Wait(true); !r.ok()) return r;
  }
}

Result<void> Connection::PrepareMissing(const std::vector<Step>& steps) {
  std::vector<Step> prepares;
  for (const Step& step : steps) {
    if (step.kind != Step::Kind::kQuery) continue;
    if (!prepared_.insert(step.sql).second) continue;
    Step prepare;
    prepare.sql = step.sql;
    prepare.kind = Step::Kind::kQuery;
    prepares.push_back(std::move(prepare));
    Step sync;
    sync.kind = Step::Kind::kSync;
    prepares.push_back(std::move(sync));
  }
  if (prepares.empty()) return {};
  // Sent as prepare steps: Run() below sends PQsendPrepare for steps whose
  // params are empty and whose `done` is unset.
  for (size_t i = 0; i < prepares.size(); i += 2) {
    std::string sql = prepares[i].sql;
    prepares[i].done = [this, sql](StepStatus status, const Rows*, const Error* error) {
      if (status != StepStatus::kOk) prepared_.erase(sql);
      (void)error;  // the statement's own execution reports it
    };
  }
  size_t next = 0;
  for (Step& step : prepares) {
    if (step.kind == Step::Kind::kSync) {
      if (PQpipelineSync(conn_) != 1) return Broken("refused a sync");
    } else if (PQsendPrepare(conn_, StatementName(step.sql).c_str(), step.sql, 0, nullptr) != 1) {
      return Broken("refused a statement");
    }
  }
  if (auto r = Flush(); !r.ok()) return r;
  // Read the prepares' results.
  bool awaiting_null = false;
  while (next < prepares.size()) {
    if (PQisBusy(conn_) != 0) {
      if (auto r = Wait(false); !r.ok()) return r;
      continue;
    }
    PGresult* result = PQgetResult(conn_);
    if (awaiting_null) {
      if (result != nullptr) PQclear(result);
      awaiting_null = false;
      ++next;
      continue;
    }
    if (result == nullptr) {
      if (PQstatus(conn_) == CONNECTION_BAD) return Broken("broke");
      continue;
    }
    ExecStatusType status = PQresultStatus(result);
    Step& step = prepares[next];
    if (step.kind == Step::Kind::kSync) {
      PQclear(result);
      if (status != PGRES_PIPELINE_SYNC) return Broken("failed a sync");
      ++next;
      continue;
    }
    if (status != PGRES_COMMAND_OK && (EndsSession(result) || PQstatus(conn_) == CONNECTION_BAD)) {
      PQclear(result);
      return Broken("ended the session");
    }
    if (status == PGRES_COMMAND_OK) {
      step.done(StepStatus::kOk, nullptr, nullptr);
    } else {
      Error error = MapError(result);
      step.done(StepStatus::kError, nullptr, &error);
    }
    PQclear(result);
    if (PQstatus(conn_) == CONNECTION_BAD) return Broken("broke");
    awaiting_null = true;
  }
  return {};
}

Result<void> Connection::Run(std::vector<Step>& steps) {
  if (broken_) return MakeError(Errc::kUnavailable, "the PostgreSQL connection is broken");
  steps = MergeSteps(std::move(steps));
  if (auto r = EnterPipeline(); !r.ok()) return r;
  if (auto r = PrepareMissing(steps); !r.ok()) return r;

  // Send everything. Flush as we go, so a long batch does not sit in
  // libpq's buffer while the server could already be working on it.
  constexpr size_t kFlushEvery = 64;
  for (size_t i = 0; i < steps.size(); ++i) {
    Step& step = steps[i];
    int sent;
    if (step.kind == Step::Kind::kSync) {
      sent = PQpipelineSync(conn_);
    } else {
      auto values = step.params.Values();
      auto lengths = step.params.Lengths();
      auto formats = step.params.Formats();
      sent = PQsendQueryPrepared(conn_, StatementName(step.sql).c_str(), step.params.size(), values.data(),
                                 lengths.data(), formats.data(), 1);
    }
    if (sent != 1) return Broken("refused a statement");
    if ((i + 1) % kFlushEvery == 0 && PQflush(conn_) < 0) return Broken("broke while sending");
  }
  if (auto r = Flush(); !r.ok()) return r;

  // Read every result, in order. A query's result is followed by a null
  // result; a sync's is not.
  size_t next = 0;
  bool awaiting_null = false;
  while (next < steps.size()) {
    if (PQisBusy(conn_) != 0) {
      if (auto r = Wait(false); !r.ok()) return r;
      continue;
    }
    PGresult* result = PQgetResult(conn_);
    if (awaiting_null) {
      if (result != nullptr) PQclear(result);  // not expected: a query has one result set
      awaiting_null = false;
      ++next;
      continue;
    }
    if (result == nullptr) {
      if (PQstatus(conn_) == CONNECTION_BAD) return Broken("broke");
      continue;
    }
    ExecStatusType status = PQresultStatus(result);
    Step& step = steps[next];
    if (step.kind == Step::Kind::kSync) {
      PQclear(result);
      // An error here would be the implicit COMMIT at the sync failing; its
      // outcome is then unknown to us, as after a broken connection.
      if (status != PGRES_PIPELINE_SYNC) return Broken("failed a sync (commit)");
      if (step.done) step.done(StepStatus::kOk, nullptr, nullptr);
      ++next;
      continue;
    }
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
      if (step.done) {
        Rows rows(result);
        step.done(StepStatus::kOk, &rows, nullptr);
      }
    } else if (status == PGRES_PIPELINE_ABORTED) {
      if (step.done) step.done(StepStatus::kAborted, nullptr, nullptr);
    } else {
      if (PQstatus(conn_) == CONNECTION_BAD) {
        PQclear(result);
        return Broken("broke");
      }
      Error error = MapError(result);
      if (EndsSession(result)) {
        // The server ended the session (shut down, terminated us, timed us
        // out) before or while running this statement: its segment's sync
        // was never processed, so neither it nor anything after it was
        // committed. Those steps did not run: safe to send again.
        PQclear(result);
        for (size_t i = next; i < steps.size(); ++i) {
          if (steps[i].kind == Step::Kind::kQuery && steps[i].done) steps[i].done(StepStatus::kAborted, nullptr, nullptr);
        }
        broken_ = true;
        return MakeError(Errc::kUnavailable, "PostgreSQL ended the session: " + error.message);
      }
      if (PQresultErrorField(result, PG_DIAG_SQLSTATE) == nullptr ||
          PQpipelineStatus(conn_) != PQ_PIPELINE_ABORTED) {
        // Made by libpq itself (out of memory, a protocol problem): the
        // server may still run and commit the segment. Outcome unknown.
        PQclear(result);
        return Broken("failed inside libpq (" + error.message + ")");
      }
      if (step.done) step.done(StepStatus::kError, nullptr, &error);
    }
    PQclear(result);
    awaiting_null = true;
  }
  return {};
}

}  // namespace nines::store::postgres
