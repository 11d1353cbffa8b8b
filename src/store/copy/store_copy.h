// Copying a whole server's data from SQLite to PostgreSQL
// (`nines store migrate --from sqlite:PATH --to postgres:URI`).
//
// Both schemas are brought to this build's version first (the SQLite file
// too, as `nines serve` would). The PostgreSQL database must hold no
// accounts. Every table is then streamed with COPY in one PostgreSQL
// transaction, so a failed or interrupted copy leaves the target empty;
// identity sequences and the archive id clock are moved past the copied ids,
// and the row counts of both sides are compared before COMMIT. The server
// must not be running on the SQLite file meanwhile (writes made during the
// copy would be missed).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.h"

namespace nines::store::copy {

struct TableProgress {
  std::string table;
  int64_t done = 0;   // rows copied so far
  int64_t total = 0;  // rows in the source table
};

struct CopyReport {
  std::vector<TableProgress> tables;  // in copy order, done == total
  int64_t rows = 0;
};

// `progress` is called often (every few thousand rows and at each table's end).
Result<CopyReport> CopySqliteToPostgres(const std::string& sqlite_path, const std::string& postgres_uri,
                                        const std::function<void(const TableProgress&)>& progress);

}  // namespace nines::store::copy
