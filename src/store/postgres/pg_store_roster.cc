// Rosters, offline messages, vCards, block lists, archiving preferences and
// private XML storage on PostgreSQL (store.h has the contract,
// sqlite_store.cc the reference behaviour).
//
// Every call is one Write or Read (pg_store.h). Writes to an account that
// does not exist are expected outcomes, not errors to raise: each write
// selects its owner from `accounts` (INSERT ... SELECT ... FROM accounts, or
// a function that returns a status), so a missing account writes nothing,
// reads back as zero rows and becomes kNotFound without aborting the group
// commit it shares. The foreign keys stay as the backstop (an account
// deleted by another node at the same moment still fails the insert).
#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/postgres/pg_store.h"

namespace nines::store::postgres {

// Text keys use the "C" collation (byte order, as the SQLite backend
// compares). Everything an account owns goes with it (ON DELETE CASCADE;
// roster groups go with their item).
//
// offline_messages is keyed (username, id): the one index serves count,
// load and delete, which all select one user's messages; ids come from the
// identity sequence, so they are unique, never reused, and increase in the
// order the (single) writer issues them.
//
// nines_put_roster_item: bumps the roster version (locking the account row,
// so concurrent roster writers, on other nodes too, serialise), upserts the
// item and makes its groups exactly `p_groups` (a set). Returns the new
// version, or NULL with nothing written if there is no such account.
//
// nines_set_private: inserts or replaces one private XML element unless that
// would add a key beyond `p_max_items`. It locks the account row (FOR NO KEY
// UPDATE, which does not block inserts that merely reference the account)
// so that the count stays exact when several nodes write at once. Returns
// 'stored', 'limit' or 'no account' (the checks in the SQLite backend's
// order: the limit first), writing nothing unless 'stored'.
const char kSchemaRoster[] = R"sql(
CREATE TABLE roster_items (
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid text COLLATE "C" NOT NULL,
  name text NOT NULL DEFAULT '',
  subscription text NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
  ask_out boolean NOT NULL DEFAULT false,
  pending_in boolean NOT NULL DEFAULT false,
  preapproved boolean NOT NULL DEFAULT false,
  pending_in_stanza text NOT NULL DEFAULT '',
  PRIMARY KEY (username, jid)
);

CREATE TABLE roster_groups (
  username text COLLATE "C" NOT NULL,
  jid text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  PRIMARY KEY (username, jid, name),
  FOREIGN KEY (username, jid) REFERENCES roster_items(username, jid) ON DELETE CASCADE
);

CREATE TABLE offline_messages (
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  id bigint GENERATED ALWAYS AS IDENTITY,
  stamp_ms bigint NOT NULL,
  stanza text NOT NULL,
  PRIMARY KEY (username, id)
);

CREATE TABLE vcards (
  username text COLLATE "C" PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
  xml text NOT NULL,
  updated_ms bigint NOT NULL
);

CREATE TABLE blocklist (
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid text COLLATE "C" NOT NULL,
  PRIMARY KEY (username, jid)
);

CREATE TABLE private_storage (
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  key text COLLATE "C" NOT NULL,
  xml text NOT NULL,
  PRIMARY KEY (username, key)
);

CREATE TABLE archive_prefs (
  username text COLLATE "C" PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
  default_mode text NOT NULL CHECK (default_mode IN ('always', 'never', 'roster'))
);

CREATE TABLE archive_pref_jids (
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid text COLLATE "C" NOT NULL,
  always boolean NOT NULL,
  PRIMARY KEY (username, jid)
);

CREATE FUNCTION nines_put_roster_item(p_username text, p_jid text, p_name text, p_subscription text,
                                      p_ask_out boolean, p_pending_in boolean, p_preapproved boolean,
                                      p_pending_in_stanza text, p_groups text[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_version bigint;
BEGIN
  UPDATE accounts SET roster_version = roster_version + 1 WHERE username = p_username
    RETURNING roster_version INTO v_version;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  INSERT INTO roster_items (username, jid, name, subscription, ask_out, pending_in, preapproved,
                            pending_in_stanza)
    VALUES (p_username, p_jid, p_name, p_subscription, p_ask_out, p_pending_in, p_preapproved,
            p_pending_in_stanza)
    ON CONFLICT (username, jid) DO UPDATE SET name = excluded.name, subscription = excluded.subscription,
      ask_out = excluded.ask_out, pending_in = excluded.pending_in, preapproved = excluded.preapproved,
      pending_in_stanza = excluded.pending_in_stanza;
  DELETE FROM roster_groups WHERE username = p_username AND jid = p_jid AND name <> ALL (p_groups);
  INSERT INTO roster_groups (username, jid, name)
    SELECT p_username, p_jid, g FROM unnest(p_groups) AS g
    ON CONFLICT DO NOTHING;
  RETURN v_version;
END
$$;

CREATE FUNCTION nines_set_private(p_username text, p_key text, p_xml text, p_max_items bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v_account boolean;
BEGIN
  PERFORM 1 FROM accounts WHERE username = p_username FOR NO KEY UPDATE;
  v_account := FOUND;
  IF NOT EXISTS (SELECT 1 FROM private_storage WHERE username = p_username AND key = p_key)
     AND (SELECT count(*) FROM private_storage WHERE username = p_username) >= p_max_items THEN
    RETURN 'limit';
  END IF;
  IF NOT v_account THEN
    RETURN 'no account';
  END IF;
  INSERT INTO private_storage (username, key, xml) VALUES (p_username, p_key, p_xml)
    ON CONFLICT (username, key) DO UPDATE SET xml = excluded.xml;
  RETURN 'stored';
END
$$;
)sql";

namespace {

// ---- Rosters ----

// One row per (item, group), items in jid order and each item's groups in
// name order; an item without groups has one row with a NULL group, an
// account without items one row with a NULL jid, and no account no row.
// One statement, so it needs no snapshot transaction of its own.
constexpr const char kGetRosterSql[] =
    "SELECT a.roster_version, i.jid, i.name, i.subscription, i.ask_out, i.pending_in, i.preapproved,"
    " i.pending_in_stanza, g.name"
    " FROM accounts a"
    " LEFT JOIN roster_items i ON i.username = a.username"
    " LEFT JOIN roster_groups g ON g.username = i.username AND g.jid = i.jid"
    " WHERE a.username = $1"
    " ORDER BY i.jid, g.name";

constexpr const char kPutRosterItemSql[] =
    "SELECT nines_put_roster_item($1::text, $2::text, $3::text, $4::text, $5::boolean, $6::boolean,"
    " $7::boolean, $8::text, $9::text[])";

// Bumps the version only if the item was there (its groups go by cascade).
constexpr const char kRemoveRosterItemSql[] =
    "WITH removed AS (DELETE FROM roster_items WHERE username = $1 AND jid = $2 RETURNING username)"
    " UPDATE accounts SET roster_version = roster_version + 1"
    " WHERE username = $1 AND EXISTS (SELECT 1 FROM removed)"
    " RETURNING roster_version";

// ---- Offline messages ----

constexpr const char kStoreOfflineSql[] =
    "INSERT INTO offline_messages (username, stamp_ms, stanza)"
    " SELECT username, $2::bigint, $3::text FROM accounts WHERE username = $1"
    " RETURNING id";

constexpr const char kCountOfflineSql[] = "SELECT count(*) FROM offline_messages WHERE username = $1";

constexpr const char kLoadOfflineSql[] =
    "SELECT id, stamp_ms, stanza FROM offline_messages WHERE username = $1 ORDER BY id";

constexpr const char kDeleteOfflineSql[] =
    "DELETE FROM offline_messages WHERE username = $1 AND id <= $2::bigint";

// ---- vCards ----

constexpr const char kGetVCardSql[] = "SELECT xml FROM vcards WHERE username = $1";

constexpr const char kSetVCardSql[] =
    "INSERT INTO vcards (username, xml, updated_ms)"
    " SELECT username, $2::text, $3::bigint FROM accounts WHERE username = $1"
    " ON CONFLICT (username) DO UPDATE SET xml = excluded.xml, updated_ms = excluded.updated_ms";

// ---- Block lists ----

constexpr const char kGetBlocklistSql[] = "SELECT jid FROM blocklist WHERE username = $1 ORDER BY jid";

// Returns one row: 1 if the account exists (and the JIDs not yet there were
// added), 0 if it does not (nothing added).
constexpr const char kBlockSql[] =
    "WITH account AS (SELECT username FROM accounts WHERE username = $1),"
    " added AS (INSERT INTO blocklist (username, jid)"
    "  SELECT a.username, j.jid FROM account a CROSS JOIN (SELECT DISTINCT unnest($2::text[]) AS jid) j"
    "  ON CONFLICT DO NOTHING)"
    " SELECT count(*) FROM account";

constexpr const char kUnblockAllSql[] = "DELETE FROM blocklist WHERE username = $1";

constexpr const char kUnblockSql[] = "DELETE FROM blocklist WHERE username = $1 AND jid = ANY ($2::text[])";

// ---- Archiving preferences ----

// Always one row: the mode (NULL if never set) with each JID in jid order,
// or with NULLs if there are none.
constexpr const char kGetArchivePrefsSql[] =
    "SELECT p.default_mode, j.jid, j.always"
    " FROM (SELECT $1::text AS username) u"
    " LEFT JOIN archive_prefs p ON p.username = u.username"
    " LEFT JOIN archive_pref_jids j ON j.username = u.username"
    " ORDER BY j.jid";

// Affects no row if there is no account; the statements after it then
// change nothing either.
constexpr const char kSetArchiveModeSql[] =
    "INSERT INTO archive_prefs (username, default_mode)"
    " SELECT username, $2::text FROM accounts WHERE username = $1"
    " ON CONFLICT (username) DO UPDATE SET default_mode = excluded.default_mode";

constexpr const char kClearArchivePrefJidsSql[] = "DELETE FROM archive_pref_jids WHERE username = $1";

constexpr const char kInsertArchivePrefJidsSql[] =
    "INSERT INTO archive_pref_jids (username, jid, always)"
    " SELECT a.username, j.jid, j.always FROM accounts a"
    " CROSS JOIN (SELECT jid, true AS always FROM unnest($2::text[]) AS jid"
    "             UNION ALL SELECT jid, false FROM unnest($3::text[]) AS jid) j"
    " WHERE a.username = $1"
    " ON CONFLICT DO NOTHING";

// ---- Private XML storage ----

constexpr const char kGetPrivateSql[] = "SELECT xml FROM private_storage WHERE username = $1 AND key = $2";

constexpr const char kSetPrivateSql[] = "SELECT nines_set_private($1::text, $2::text, $3::text, $4::bigint)";

Error NoAccount(const std::string& username) {
  return MakeError(Errc::kNotFound, "no account '" + username + "'");
}

Subscription SubscriptionFromName(std::string_view name) {
  if (name == "to") return Subscription::kTo;
  if (name == "from") return Subscription::kFrom;
  if (name == "both") return Subscription::kBoth;
  return Subscription::kNone;  // the CHECK constraint admits nothing else
}

}  // namespace

void PgStore::GetRoster(std::string username, Reply<Roster> reply) {
  Read(std::move(reply), [username = std::move(username)](Pipeline& p, std::optional<Result<Roster>>& out) {
    p.Query(kGetRosterSql, Params().Text(username), [&out](const Rows& rows) {
      Roster roster;  // no row: no account, an empty roster at version 0
      for (int i = 0; i < rows.size(); ++i) {
        if (i == 0) roster.version = rows.Int(0, 0);
        if (rows.IsNull(i, 1)) continue;  // the account has no items
        std::string jid = rows.Text(i, 1);
        if (roster.items.empty() || roster.items.back().jid != jid) {
          RosterItem item;
          item.jid = std::move(jid);
          item.name = rows.Text(i, 2);
          item.subscription = SubscriptionFromName(rows.Text(i, 3));
          item.ask_out = rows.Bool(i, 4);
          item.pending_in = rows.Bool(i, 5);
          item.preapproved = rows.Bool(i, 6);
          item.pending_in_stanza = rows.Text(i, 7);
          roster.items.push_back(std::move(item));
        }
        if (!rows.IsNull(i, 8)) roster.items.back().groups.push_back(rows.Text(i, 8));
      }
      out = std::move(roster);
    });
  });
}

void PgStore::PutRosterItem(std::string username, RosterItem item, Reply<int64_t> reply) {
  Write(std::move(reply), [username = std::move(username), item = std::move(item)](
                              Pipeline& p, std::optional<Result<int64_t>>& out) {
    if (item.subscription == Subscription::kRemove) {
      out = MakeError(Errc::kInvalidArgument,
                      "subscription 'remove' is not a stored state; use RemoveRosterItem");
      return;
    }
    Params params;
    params.Text(username)
        .Text(item.jid)
        .Text(item.name)
        .Text(SubscriptionName(item.subscription))
        .Bool(item.ask_out)
        .Bool(item.pending_in)
        .Bool(item.preapproved)
        .Text(item.pending_in_stanza)
        .TextArray(item.groups);  // a set: the function collapses duplicates
    p.Query(kPutRosterItemSql, std::move(params), [&out, &username](const Rows& rows) {
      if (rows.size() == 0 || rows.IsNull(0, 0)) {
        out = NoAccount(username);
        return;
      }
      out = rows.Int(0, 0);
    });
  });
}

void PgStore::RemoveRosterItem(std::string username, std::string jid, Reply<int64_t> reply) {
  Write(std::move(reply), [username = std::move(username), jid = std::move(jid)](
                              Pipeline& p, std::optional<Result<int64_t>>& out) {
    p.Query(kRemoveRosterItemSql, Params().Text(username).Text(jid),
            [&out, &username, &jid](const Rows& rows) {
              if (rows.size() == 0) {
                out = MakeError(Errc::kNotFound, "no roster item '" + jid + "' for '" + username + "'");
                return;
              }
              out = rows.Int(0, 0);
            });
  });
}

void PgStore::StoreOffline(std::string username, OfflineMessage message, Reply<int64_t> reply) {
  Write(std::move(reply), [username = std::move(username), message = std::move(message)](
                              Pipeline& p, std::optional<Result<int64_t>>& out) {
    p.Query(kStoreOfflineSql, Params().Text(username).Int(message.stamp_ms).Text(message.stanza),
            [&out, &username](const Rows& rows) {
              if (rows.size() == 0) {
                out = NoAccount(username);
                return;
              }
              out = rows.Int(0, 0);
            });
  });
}

void PgStore::CountOffline(std::string username, Reply<int64_t> reply) {
  Read(std::move(reply), [username = std::move(username)](Pipeline& p, std::optional<Result<int64_t>>& out) {
    p.Query(kCountOfflineSql, Params().Text(username),
            [&out](const Rows& rows) { out = rows.size() > 0 ? rows.Int(0, 0) : int64_t{0}; });
  });
}

void PgStore::LoadOffline(std::string username, Reply<std::vector<OfflineMessage>> reply) {
  Read(std::move(reply), [username = std::move(username)](
                             Pipeline& p, std::optional<Result<std::vector<OfflineMessage>>>& out) {
    p.Query(kLoadOfflineSql, Params().Text(username), [&out](const Rows& rows) {
      std::vector<OfflineMessage> messages;
      messages.reserve(static_cast<size_t>(rows.size()));
      for (int i = 0; i < rows.size(); ++i) {
        OfflineMessage message;
        message.id = rows.Int(i, 0);
        message.stamp_ms = rows.Int(i, 1);
        message.stanza = rows.Text(i, 2);
        messages.push_back(std::move(message));
      }
      out = std::move(messages);
    });
  });
}

void PgStore::DeleteOffline(std::string username, int64_t up_to_id, Reply<void> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), up_to_id](Pipeline& p, std::optional<Result<void>>&) {
        p.Query(kDeleteOfflineSql, Params().Text(username).Int(up_to_id));
      },
      /*idempotent=*/true);
}

void PgStore::GetVCard(std::string username, Reply<std::string> reply) {
  Read(std::move(reply),
       [username = std::move(username)](Pipeline& p, std::optional<Result<std::string>>& out) {
         p.Query(kGetVCardSql, Params().Text(username), [&out, &username](const Rows& rows) {
           if (rows.size() == 0) {
             out = MakeError(Errc::kNotFound, "no vCard for '" + username + "'");
             return;
           }
           out = rows.Text(0, 0);
         });
       });
}

void PgStore::SetVCard(std::string username, std::string vcard_xml, Reply<void> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), vcard_xml = std::move(vcard_xml)](Pipeline& p,
                                                                         std::optional<Result<void>>& out) {
        p.Query(kSetVCardSql, Params().Text(username).Text(vcard_xml).Int(NowMs()),
                [&out, &username](const Rows& rows) {
                  if (rows.Affected() == 0) out = NoAccount(username);
                });
      },
      /*idempotent=*/true);
}

void PgStore::GetBlocklist(std::string username, Reply<std::vector<std::string>> reply) {
  Read(std::move(reply),
       [username = std::move(username)](Pipeline& p, std::optional<Result<std::vector<std::string>>>& out) {
         p.Query(kGetBlocklistSql, Params().Text(username), [&out](const Rows& rows) {
           std::vector<std::string> jids;
           jids.reserve(static_cast<size_t>(rows.size()));
           for (int i = 0; i < rows.size(); ++i) jids.push_back(rows.Text(i, 0));
           out = std::move(jids);
         });
       });
}

void PgStore::Block(std::string username, std::vector<std::string> jids, Reply<void> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), jids = std::move(jids)](Pipeline& p,
                                                               std::optional<Result<void>>& out) {
        for (const auto& jid : jids) {
          if (jid.empty()) {
            out = MakeError(Errc::kInvalidArgument, "an empty JID cannot be blocked");
            return;
          }
        }
        if (jids.empty()) return;  // nothing to add (as on SQLite, even without an account)
        p.Query(kBlockSql, Params().Text(username).TextArray(jids), [&out, &username](const Rows& rows) {
          if (rows.size() == 0 || rows.Int(0, 0) == 0) out = NoAccount(username);
        });
      },
      /*idempotent=*/true);
}

// Not idempotent: a rerun after a commit whose outcome was lost would report
// 0 removed, where the first run removed some.
void PgStore::Unblock(std::string username, std::vector<std::string> jids, Reply<int64_t> reply) {
  Write(std::move(reply), [username = std::move(username), jids = std::move(jids)](
                              Pipeline& p, std::optional<Result<int64_t>>& out) {
    auto count = [&out](const Rows& rows) { out = rows.Affected(); };
    if (jids.empty()) {
      p.Query(kUnblockAllSql, Params().Text(username), count);
    } else {
      p.Query(kUnblockSql, Params().Text(username).TextArray(jids), count);
    }
  });
}

void PgStore::GetArchivePrefs(std::string username, Reply<ArchivePrefs> reply) {
  Read(std::move(reply),
       [username = std::move(username)](Pipeline& p, std::optional<Result<ArchivePrefs>>& out) {
         p.Query(kGetArchivePrefsSql, Params().Text(username), [&out](const Rows& rows) {
           ArchivePrefs prefs;  // never set: the defaults
           for (int i = 0; i < rows.size(); ++i) {
             if (i == 0 && !rows.IsNull(0, 0)) prefs.default_mode = rows.Text(0, 0);
             if (rows.IsNull(i, 1)) continue;
             (rows.Bool(i, 2) ? prefs.always : prefs.never).push_back(rows.Text(i, 1));
           }
           out = std::move(prefs);
         });
       });
}

void PgStore::SetArchivePrefs(std::string username, ArchivePrefs prefs, Reply<void> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), prefs = std::move(prefs)](Pipeline& p,
                                                                 std::optional<Result<void>>& out) {
        if (prefs.default_mode != "always" && prefs.default_mode != "never" &&
            prefs.default_mode != "roster") {
          out = MakeError(Errc::kInvalidArgument, "default_mode must be always, never or roster");
          return;
        }
        for (const auto* list : {&prefs.always, &prefs.never}) {
          for (const auto& jid : *list) {
            if (jid.empty()) {
              out = MakeError(Errc::kInvalidArgument, "an empty JID");
              return;
            }
          }
        }
        for (const auto& jid : prefs.always) {
          if (std::find(prefs.never.begin(), prefs.never.end(), jid) != prefs.never.end()) {
            out = MakeError(Errc::kInvalidArgument, "a JID cannot be both always and never archived");
            return;
          }
        }
        p.Query(kSetArchiveModeSql, Params().Text(username).Text(prefs.default_mode),
                [&out, &username](const Rows& rows) {
                  if (rows.Affected() == 0) out = NoAccount(username);
                });
        p.Query(kClearArchivePrefJidsSql, Params().Text(username));
        p.Query(kInsertArchivePrefJidsSql,
                Params().Text(username).TextArray(prefs.always).TextArray(prefs.never));
      },
      /*idempotent=*/true);
}

void PgStore::GetPrivate(std::string username, std::string key, Reply<std::string> reply) {
  Read(std::move(reply), [username = std::move(username), key = std::move(key)](
                             Pipeline& p, std::optional<Result<std::string>>& out) {
    p.Query(kGetPrivateSql, Params().Text(username).Text(key), [&out](const Rows& rows) {
      if (rows.size() == 0) {
        out = MakeError(Errc::kNotFound, "no private data under that key");
        return;
      }
      out = rows.Text(0, 0);
    });
  });
}

void PgStore::SetPrivate(std::string username, std::string key, std::string xml, int64_t max_items,
                         Reply<void> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), key = std::move(key), xml = std::move(xml), max_items](
          Pipeline& p, std::optional<Result<void>>& out) {
        p.Query(
            kSetPrivateSql, Params().Text(username).Text(key).Text(xml).Int(max_items),
            [&out, &username](const Rows& rows) {
              std::string status = rows.size() > 0 && !rows.IsNull(0, 0) ? rows.Text(0, 0) : std::string();
              if (status == "stored") return;
              if (status == "limit") {
                out = MakeError(Errc::kLimitExceeded, "the account holds as many private items as allowed");
              } else if (status == "no account") {
                out = NoAccount(username);
              } else {
                out = MakeError(Errc::kInternal, "nines_set_private returned '" + status + "'");
              }
            });
      },
      /*idempotent=*/true);
}

}  // namespace nines::store::postgres
