#include "store/postgres/pg_schema.h"

#include <spdlog/spdlog.h>

#include <string>

#include "store/postgres/pg_store.h"

namespace nines::store::postgres {
namespace {

struct Migration {
  int version;
  const char* description;
  std::string sql;
};

// Version 1 is everything the SQLite schema reached at its version 9; its
// parts live next to the calls that use them (pg_store_*.cc).
std::vector<Migration> Migrations() {
  return {
      Migration{1,
                "accounts, roster, offline messages, vCards, block lists, private storage, archive, "
                "archiving preferences, device states, push registrations, personal eventing",
                std::string(kSchemaAccounts) + kSchemaRoster + kSchemaArchive + kSchemaPep},
  };
}

Result<void> Apply(Connection& conn, const Migration& migration) {
  if (auto r = conn.Exec("BEGIN"); !r.ok()) return r;
  auto attempt = [&]() -> Result<void> {
    if (auto r = conn.Exec(migration.sql.c_str()); !r.ok()) return r;
    Params params;
    params.Int(migration.version).Text(migration.description);
    auto recorded = conn.QueryValue(
        "INSERT INTO nines_schema (version, description, applied_at) VALUES ($1::int, $2, now())", params);
    if (!recorded.ok()) return recorded.error();
    return conn.Exec("COMMIT");
  };
  auto result = attempt();
  if (!result.ok()) {
    (void)conn.Exec("ROLLBACK");
    return MakeError(result.error().code, "schema migration to version " + std::to_string(migration.version) +
                                              " failed: " + result.error().message);
  }
  return {};
}

Result<int> MigrateLocked(Connection& conn) {
  if (auto r = conn.Exec("CREATE TABLE IF NOT EXISTS nines_schema ("
                         " version integer PRIMARY KEY,"
                         " description text NOT NULL,"
                         " applied_at timestamptz NOT NULL)");
      !r.ok()) {
    return r.error();
  }
  auto found_text = conn.QueryValue("SELECT coalesce(max(version), 0) FROM nines_schema", Params());
  if (!found_text.ok()) return found_text.error();
  int found = std::stoi(*found_text);
  if (found > CurrentVersion()) {
    return MakeError(Errc::kInvalidArgument, "the database schema version is " + std::to_string(found) +
                                                 ", newer than this build of nines supports (" +
                                                 std::to_string(CurrentVersion()) + "); run a newer nines");
  }
  for (const Migration& migration : Migrations()) {
    if (migration.version <= found) continue;
    if (auto r = Apply(conn, migration); !r.ok()) return r.error();
    spdlog::info("store: PostgreSQL schema at version {} ({})", migration.version, migration.description);
  }
  return found;
}

}  // namespace

int CurrentVersion() { return Migrations().back().version; }

Result<int> Migrate(Connection& conn) {
  // Quiet the NOTICEs of CREATE ... IF NOT EXISTS.
  (void)conn.Exec("SET client_min_messages = warning");
  Params key;
  key.Int(kMigrationLock);
  if (auto locked = conn.QueryValue("SELECT pg_advisory_lock($1::bigint)", key); !locked.ok()) {
    return locked.error();
  }
  auto result = MigrateLocked(conn);
  (void)conn.QueryValue("SELECT pg_advisory_unlock($1::bigint)", key);
  return result;
}

}  // namespace nines::store::postgres
