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
  return store::OpenSqlite({config.SqlitePath(), config.sqlite_commit_batch});
}

}  // namespace nines::app
