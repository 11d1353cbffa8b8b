#include "app/open_store.h"

namespace nines::app {

Result<std::unique_ptr<store::Store>> OpenConfiguredStore(const Config& config) {
  if (config.store_backend == "postgres") {
    store::PostgresOptions options;
    options.uri = config.postgres_uri;
    options.pool_size = config.postgres_pool;
    options.commit_batch = config.postgres_commit_batch;
    options.failover_timeout_ms = config.postgres_failover_timeout_ms;
    return store::OpenPostgres(options);
  }
  store::SqliteOptions options;
  options.path = config.SqlitePath();
  options.commit_batch = config.sqlite_commit_batch;
  options.commit_delay_us = config.sqlite_commit_delay_us;
  return store::OpenSqlite(options);
}

}  // namespace nines::app
