// The PostgreSQL schema and its migrations.
//
// Versions are rows of `nines_schema`. Migrate() takes a session advisory
// lock first, so nodes that start at once wait for each other instead of
// racing: the first applies what is missing, the others then find nothing
// to do. Each migration runs in one transaction.
#pragma once

#include "base/result.h"
#include "store/postgres/pg_connection.h"

namespace nines::store::postgres {

// The advisory lock key ("nines" in ASCII).
inline constexpr int64_t kMigrationLock = 0x6e696e6573;

int CurrentVersion();

// Brings the database up to CurrentVersion(); returns the version found.
// kInvalidArgument if the database is newer than this build.
Result<int> Migrate(Connection& conn);

}  // namespace nines::store::postgres
