// The SQLite schema, as an ordered list of migrations.
//
// The file's schema version is PRAGMA user_version; PRAGMA application_id
// marks the file as a nines database. Migration N takes version N-1 to N and
// sets user_version. Every migration an open needs runs in one BEGIN
// IMMEDIATE transaction, so a crash or a failure mid-upgrade leaves the file
// at the version it had, never between two. A new
// file is built by running every migration from 1, so the upgrade path is the
// only path and is exercised by every test.
//
// Adding a migration: append to the list in sqlite_schema.cc; never edit one
// that has shipped. The test in sqlite_store_test.cc that opens a v1 fixture
// must keep passing.
#pragma once

#include <span>

#include "base/result.h"
#include "store/sqlite/sqlite_connection.h"

namespace nines::store::sqlite {

struct Migration {
  int version;              // the version this migration produces
  const char* description;  // for logs and errors
  const char* sql;          // run inside the migration's transaction
  // Run after `sql`, in the same transaction: a conversion SQL cannot do.
  Result<void> (*convert)(Connection&) = nullptr;
};

// "nine" in ASCII; stored in PRAGMA application_id by migration 1.
inline constexpr int kApplicationId = 0x6E696E65;

// Every migration, in order: Migrations()[i].version == i + 1.
std::span<const Migration> Migrations();

// The newest version, i.e. Migrations().back().version.
int CurrentVersion();

// Puts the file into WAL mode, then brings it up to CurrentVersion(), all
// pending migrations in one transaction (a file already at the newest
// version is left as it is).
// Safe against another process migrating the same file at the same time:
// the version is read again inside the write transaction.
// Fails with kInvalidArgument if the file belongs to another application or
// has a version newer than this build knows; with the SQLite error mapped
// otherwise. Returns the version the file had before.
Result<int> Migrate(Connection& conn);
// The same with another list (tests).
Result<int> Migrate(Connection& conn, std::span<const Migration> migrations);

}  // namespace nines::store::sqlite
