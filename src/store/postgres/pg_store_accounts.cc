// Accounts on PostgreSQL, and the model for every other store call here:
// one Write or Read, statements queued on the Pipeline, `out` filled from
// their rows. Expected outcomes that change nothing are read from the rows
// (ON CONFLICT DO NOTHING, rows affected) rather than raised, so they do not
// abort the group commit they share.
#include <string>
#include <utility>
#include <vector>

#include "store/postgres/pg_store.h"

namespace nines::store::postgres {

// Text keys use the "C" collation: the store compares and sorts usernames
// and JIDs byte for byte, whatever the database's default collation is.
const char kSchemaAccounts[] = R"sql(
CREATE TABLE accounts (
  username text COLLATE "C" PRIMARY KEY,
  sha1_salt bytea NOT NULL,
  sha1_iterations bigint NOT NULL,
  sha1_stored_key bytea NOT NULL,
  sha1_server_key bytea NOT NULL,
  sha256_salt bytea NOT NULL,
  sha256_iterations bigint NOT NULL,
  sha256_stored_key bytea NOT NULL,
  sha256_server_key bytea NOT NULL,
  created_ms bigint NOT NULL,
  roster_version bigint NOT NULL DEFAULT 0
);
)sql";

namespace {

constexpr const char kInsertAccountSql[] =
    "INSERT INTO accounts (username, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,"
    " sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (username) DO NOTHING";

// All or none: a taken name raises unique_violation (kConflict), which rolls
// the whole call back.
constexpr const char kInsertAccountsSql[] =
    "INSERT INTO accounts (username, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,"
    " sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created_ms)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

constexpr const char kGetAccountSql[] =
    "SELECT sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,"
    " sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created_ms"
    " FROM accounts WHERE username = $1";

constexpr const char kSetCredentialsSql[] =
    "UPDATE accounts SET sha1_salt = $2, sha1_iterations = $3, sha1_stored_key = $4, sha1_server_key = $5,"
    " sha256_salt = $6, sha256_iterations = $7, sha256_stored_key = $8, sha256_server_key = $9"
    " WHERE username = $1";

// Everything the account owns goes with it (ON DELETE CASCADE).
constexpr const char kDeleteAccountSql[] = "DELETE FROM accounts WHERE username = $1";

constexpr const char kListAccountsSql[] = "SELECT username FROM accounts ORDER BY username";

void AddKeys(Params& params, const ScramKeys& keys) {
  params.Bytes(keys.salt).Int(keys.iterations).Bytes(keys.stored_key).Bytes(keys.server_key);
}

Params AccountParams(const Account& account) {
  Params params;
  params.Text(account.username);
  AddKeys(params, account.sha1);
  AddKeys(params, account.sha256);
  params.Int(account.created_ms);
  return params;
}

Error NoAccount(const std::string& username) {
  return MakeError(Errc::kNotFound, "no account '" + username + "'");
}

}  // namespace

ScramKeys ReadKeys(const Rows& rows, int row, int first) {
  ScramKeys keys;
  keys.salt = rows.Text(row, first);
  keys.iterations = rows.Int(row, first + 1);
  keys.stored_key = rows.Text(row, first + 2);
  keys.server_key = rows.Text(row, first + 3);
  return keys;
}

void PgStore::CreateAccount(Account account, Reply<void> reply) {
  Write(std::move(reply), [account = std::move(account)](Pipeline& p, std::optional<Result<void>>& out) {
    p.Query(kInsertAccountSql, AccountParams(account), [&out, &account](const Rows& rows) {
      if (rows.Affected() == 0) {
        out = MakeError(Errc::kConflict, "account '" + account.username + "' already exists");
      }
    });
  });
}

void PgStore::CreateAccounts(std::vector<Account> accounts, Reply<void> reply) {
  Write(std::move(reply), [accounts = std::move(accounts)](Pipeline& p, std::optional<Result<void>>&) {
    for (const Account& account : accounts) p.Query(kInsertAccountsSql, AccountParams(account));
  });
}

void PgStore::GetAccount(std::string username, Reply<Account> reply) {
  Read(std::move(reply), [username = std::move(username)](Pipeline& p, std::optional<Result<Account>>& out) {
    p.Query(kGetAccountSql, Params().Text(username), [&out, &username](const Rows& rows) {
      if (rows.size() == 0) {
        out = NoAccount(username);
        return;
      }
      Account account;
      account.username = username;
      account.sha1 = ReadKeys(rows, 0, 0);
      account.sha256 = ReadKeys(rows, 0, 4);
      account.created_ms = rows.Int(0, 8);
      out = std::move(account);
    });
  });
}

void PgStore::SetCredentials(std::string username, ScramKeys sha1, ScramKeys sha256, Reply<void> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), sha1 = std::move(sha1), sha256 = std::move(sha256)](
          Pipeline& p, std::optional<Result<void>>& out) {
        Params params;
        params.Text(username);
        AddKeys(params, sha1);
        AddKeys(params, sha256);
        p.Query(kSetCredentialsSql, std::move(params), [&out, &username](const Rows& rows) {
          if (rows.Affected() == 0) out = NoAccount(username);
        });
      },
      /*idempotent=*/true);
}

void PgStore::DeleteAccount(std::string username, Reply<void> reply) {
  Write(std::move(reply), [username = std::move(username)](Pipeline& p, std::optional<Result<void>>& out) {
    p.Query(kDeleteAccountSql, Params().Text(username), [&out, &username](const Rows& rows) {
      if (rows.Affected() == 0) out = NoAccount(username);
    });
  });
}

void PgStore::ListAccounts(Reply<std::vector<std::string>> reply) {
  Read(std::move(reply), [](Pipeline& p, std::optional<Result<std::vector<std::string>>>& out) {
    p.Query(kListAccountsSql, Params(), [&out](const Rows& rows) {
      std::vector<std::string> usernames;
      usernames.reserve(static_cast<size_t>(rows.size()));
      for (int i = 0; i < rows.size(); ++i) usernames.push_back(rows.Text(i, 0));
      out = std::move(usernames);
    });
  });
}

}  // namespace nines::store::postgres
