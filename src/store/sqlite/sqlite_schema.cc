#include "store/sqlite/sqlite_schema.h"

#include "store/sqlite/archive_log.h"

#include <spdlog/spdlog.h>

#include <array>
#include <string>
#include <vector>

namespace nines::store::sqlite {
namespace {

// Version 1: accounts, roster items (groups as a JSON array), offline
// messages. Each account keeps its roster version counter.
constexpr const char* kV1 = R"sql(
PRAGMA application_id = 1852403301;

CREATE TABLE accounts (
  username TEXT PRIMARY KEY NOT NULL,
  sha1_salt BLOB NOT NULL,
  sha1_iterations INTEGER NOT NULL,
  sha1_stored_key BLOB NOT NULL,
  sha1_server_key BLOB NOT NULL,
  sha256_salt BLOB NOT NULL,
  sha256_iterations INTEGER NOT NULL,
  sha256_stored_key BLOB NOT NULL,
  sha256_server_key BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  roster_version INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE roster_items (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
  ask_out INTEGER NOT NULL DEFAULT 0,
  pending_in INTEGER NOT NULL DEFAULT 0,
  preapproved INTEGER NOT NULL DEFAULT 0,
  groups_json TEXT NOT NULL DEFAULT '[]',
  PRIMARY KEY (username, jid)
);

CREATE TABLE offline_messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  stamp_ms INTEGER NOT NULL,
  stanza TEXT NOT NULL
);
CREATE INDEX offline_messages_by_user ON offline_messages(username, id);
)sql";

// Version 2: roster groups move from a JSON column to their own table (so a
// group can be renamed or listed with SQL), roster items keep the pending
// inbound subscribe stanza, and vCards arrive. Malformed JSON left by hand
// edits is treated as no groups rather than failing the upgrade.
constexpr const char* kV2 = R"sql(
ALTER TABLE roster_items ADD COLUMN pending_in_stanza TEXT NOT NULL DEFAULT '';

CREATE TABLE roster_groups (
  username TEXT NOT NULL,
  jid TEXT NOT NULL,
  name TEXT NOT NULL,
  PRIMARY KEY (username, jid, name),
  FOREIGN KEY (username, jid) REFERENCES roster_items(username, jid) ON DELETE CASCADE
);

INSERT INTO roster_groups (username, jid, name)
  SELECT DISTINCT r.username, r.jid, g.value
  FROM roster_items AS r,
       json_each(CASE WHEN json_valid(r.groups_json) AND json_type(r.groups_json) = 'array'
                      THEN r.groups_json ELSE '[]' END) AS g
  WHERE g.type = 'text';

ALTER TABLE roster_items DROP COLUMN groups_json;

CREATE TABLE vcards (
  username TEXT PRIMARY KEY NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  xml TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
);
)sql";

// Version 3: the message archive (XEP-0313). A message's text is stored
// once in archive_messages, keyed by its archive id, so rows are appended in
// id order and stay on a few hot pages. Each owner has a small row in
// `archive` (a message between two local accounts has two), keyed by
// (owner, id) so a page of one owner's archive is one index range; the peer
// index serves `with` queries and the partial origin index finds
// retransmissions (XEP-0359). Text rows are reference-counted by a trigger,
// so pruning one owner's archive or deleting the account (ON DELETE CASCADE
// fires triggers) frees the text once no owner keeps it. Time filters are id
// ranges (the hub's ids are microsecond timestamps), so no time index.
constexpr const char* kV3 = R"sql(
CREATE TABLE archive_messages (
  id INTEGER PRIMARY KEY CHECK (id > 0),
  stamp_ms INTEGER NOT NULL,
  owners INTEGER NOT NULL,
  stanza TEXT NOT NULL
);
CREATE TABLE archive (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  id INTEGER NOT NULL,
  peer TEXT NOT NULL,
  peer_resource TEXT NOT NULL DEFAULT '',
  outgoing INTEGER NOT NULL,
  origin_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (username, id)
) WITHOUT ROWID;
CREATE INDEX archive_by_peer ON archive(username, peer, id);
CREATE INDEX archive_by_origin ON archive(username, origin_id) WHERE origin_id <> '';
CREATE TRIGGER archive_release AFTER DELETE ON archive BEGIN
  UPDATE archive_messages SET owners = owners - 1 WHERE id = OLD.id;
  DELETE FROM archive_messages WHERE id = OLD.id AND owners <= 0;
END;
)sql";

// Version 4: device states, the XEP-0198 sessions a later process may
// resume (store.h, DeviceState), keyed by a hash of the resumption token.
constexpr const char* kV4 = R"sql(
CREATE TABLE device_states (
  key TEXT PRIMARY KEY NOT NULL,
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  resource TEXT NOT NULL,
  inbound_h INTEGER NOT NULL,
  cursor INTEGER NOT NULL,
  presence TEXT NOT NULL,
  priority INTEGER NOT NULL,
  carbons INTEGER NOT NULL,
  roster_requested INTEGER NOT NULL,
  resume_timeout_s INTEGER NOT NULL,
  detached_ms INTEGER NOT NULL
);
CREATE INDEX device_states_by_user ON device_states(username);
)sql";

// Version 5: XEP-0357 push registrations (store.h, PushRegistration).
constexpr const char* kV5 = R"sql(
CREATE TABLE push_registrations (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid TEXT NOT NULL,
  node TEXT NOT NULL,
  options TEXT NOT NULL,
  resource TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (username, jid, node)
);
)sql";

// Version 6: XEP-0191 block lists.
constexpr const char* kV6 = R"sql(
CREATE TABLE blocklist (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid TEXT NOT NULL,
  PRIMARY KEY (username, jid)
) WITHOUT ROWID;
)sql";

// Version 7: XEP-0049 private XML storage, one row per (element, namespace).
constexpr const char* kV7 = R"sql(
CREATE TABLE private_storage (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  key TEXT NOT NULL,
  xml TEXT NOT NULL,
  PRIMARY KEY (username, key)
) WITHOUT ROWID;
)sql";

// Version 8: XEP-0313 archiving preferences.
constexpr const char* kV8 = R"sql(
CREATE TABLE archive_prefs (
  username TEXT PRIMARY KEY REFERENCES accounts(username) ON DELETE CASCADE,
  default_mode TEXT NOT NULL CHECK (default_mode IN ('always', 'never', 'roster'))
) WITHOUT ROWID;
CREATE TABLE archive_pref_jids (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid TEXT NOT NULL,
  always INTEGER NOT NULL,
  PRIMARY KEY (username, jid)
) WITHOUT ROWID;
)sql";

// Version 9: personal eventing (XEP-0163) nodes and their items. A node's
// roster groups get their own table, as roster groups did in version 2. An
// item's seq (its rowid) is its publish order: re-publishing an id deletes
// the old row and inserts a new one, so the newest item of a node is the
// one with the highest seq, found through pep_items_newest, and pruning to
// max_items deletes from the low end of that range. Items and groups go
// with their node, and nodes with their account (ON DELETE CASCADE).
constexpr const char* kV9 = R"sql(
CREATE TABLE pep_nodes (
  username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  node TEXT NOT NULL CHECK (node <> ''),
  access_model TEXT NOT NULL CHECK (access_model IN ('open', 'presence', 'roster', 'whitelist')),
  max_items INTEGER NOT NULL,
  persist_items INTEGER NOT NULL,
  send_last TEXT NOT NULL CHECK (send_last IN ('never', 'on_sub', 'on_sub_and_presence')),
  notify_retract INTEGER NOT NULL,
  notify_delete INTEGER NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (username, node)
) WITHOUT ROWID;
CREATE TABLE pep_node_groups (
  username TEXT NOT NULL,
  node TEXT NOT NULL,
  name TEXT NOT NULL,
  PRIMARY KEY (username, node, name),
  FOREIGN KEY (username, node) REFERENCES pep_nodes(username, node) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE pep_items (
  seq INTEGER PRIMARY KEY,
  username TEXT NOT NULL,
  node TEXT NOT NULL,
  item_id TEXT NOT NULL CHECK (item_id <> ''),
  xml TEXT NOT NULL,
  publisher TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,
  UNIQUE (username, node, item_id),
  FOREIGN KEY (username, node) REFERENCES pep_nodes(username, node) ON DELETE CASCADE
);
CREATE INDEX pep_items_newest ON pep_items(username, node, seq);
)sql";

// Version 10: the archive as a log and posting lists (archive_log.h has the
// format and why). The version-9 rows are converted in C++
// (ArchiveLog::ConvertV9), which then drops the old tables. No foreign keys
// to accounts: ArchiveLog deletes an owner's entries with the account.
constexpr const char* kV10 = R"sql(
CREATE TABLE archive_log (
  first_id INTEGER PRIMARY KEY CHECK (first_id > 0),
  last_id INTEGER NOT NULL,
  live INTEGER NOT NULL
);
CREATE INDEX archive_log_by_last ON archive_log(last_id);
CREATE TABLE archive_log_data (
  first_id INTEGER PRIMARY KEY,
  data BLOB NOT NULL
);
CREATE TABLE archive_index (
  username TEXT NOT NULL,
  last_id INTEGER NOT NULL,
  first_id INTEGER NOT NULL,
  count INTEGER NOT NULL,
  entries BLOB NOT NULL,
  PRIMARY KEY (username, last_id)
) WITHOUT ROWID;
CREATE TABLE archive_origins (
  username TEXT NOT NULL,
  origin_id TEXT NOT NULL,
  id INTEGER NOT NULL,
  PRIMARY KEY (username, origin_id)
) WITHOUT ROWID;
CREATE TABLE archive_erased (
  username TEXT PRIMARY KEY NOT NULL,
  below_id INTEGER NOT NULL
);
CREATE TABLE archive_state (
  key TEXT PRIMARY KEY NOT NULL,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO archive_state (key, value) VALUES ('generation', 0), ('indexed_through', 0);
)sql";

// archive_index rows written from now on use posting-row format 2
// (archive_log.cc, EncodeRow), which builds before this one cannot read;
// format-1 rows stay as they are and are still read. Retransmissions are
// looked for in the owners' newest rows (ArchiveLog::FindOrigin), which
// hold the origin-ids, so the table of every origin-id goes.
constexpr const char* kV11 = "DROP TABLE archive_origins;";

// Posting rows in a rowid table, appended in the order index runs write
// them, with the (owner, last id) key as an index. Keyed by owner in a
// WITHOUT ROWID table, a row of 128 entries (about 1.3 KB) outgrew the
// b-tree's inline limit for a 4 KiB page (about 1 KB) and spilled to an
// overflow page of its own, and each owner's new rows went into a leaf in
// the middle of the tree: an index run rewrote a page or two per owner for
// about 1.4 KB of entries. Appended, rows fill their pages, and the index
// entries are small (docs/benchmarks.md, fourteenth session).
constexpr const char* kV12 = R"sql(
CREATE TABLE archive_index_v12 (
  username TEXT NOT NULL,
  last_id INTEGER NOT NULL,
  first_id INTEGER NOT NULL,
  count INTEGER NOT NULL,
  entries BLOB NOT NULL
);
INSERT INTO archive_index_v12 (username, last_id, first_id, count, entries)
  SELECT username, last_id, first_id, count, entries FROM archive_index ORDER BY last_id;
DROP TABLE archive_index;
ALTER TABLE archive_index_v12 RENAME TO archive_index;
CREATE UNIQUE INDEX archive_index_by_owner ON archive_index(username, last_id);
)sql";

constexpr std::array kMigrations = {
    Migration{1, "accounts, roster, offline messages", kV1},
    Migration{2, "roster groups table, pending subscribe stanza, vCards", kV2},
    Migration{3, "message archive", kV3},
    Migration{4, "device states for stream resumption", kV4},
    Migration{5, "push registrations", kV5},
    Migration{6, "block lists", kV6},
    Migration{7, "private XML storage", kV7},
    Migration{8, "archiving preferences", kV8},
    Migration{9, "personal eventing nodes and items", kV9},
    Migration{10, "message archive as a log with posting lists", kV10, &ArchiveLog::ConvertV9},
    Migration{11, "compact posting rows, no origin-id table in the message archive", kV11},
    Migration{12, "message archive posting rows appended in write order", kV12},
};

Result<int64_t> ReadPragmaInt(Connection& conn, std::string_view sql) {
  auto stmt = conn.Prepare(sql);
  if (!stmt.ok()) return stmt.error();
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  if (!*row) return MakeError(Errc::kInternal, std::string(sql) + " returned no row");
  return stmt->ColumnInt(0);
}

Result<void> SetWal(Connection& conn) {
  auto stmt = conn.Prepare("PRAGMA journal_mode = WAL");
  if (!stmt.ok()) return stmt.error();
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  std::string mode = *row ? stmt->ColumnText(0) : std::string();
  if (mode != "wal") {
    return MakeError(Errc::kUnavailable,
                     "cannot switch the database to WAL mode (journal_mode is '" + mode + "')");
  }
  return {};
}

// Fails if any foreign key points nowhere; run inside each migration so a
// bad data transformation rolls back instead of leaving orphans.
Result<void> CheckForeignKeys(Connection& conn) {
  auto stmt = conn.Prepare("PRAGMA foreign_key_check");
  if (!stmt.ok()) return stmt.error();
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  if (*row) return MakeError(Errc::kInternal, "foreign key violation in table " + stmt->ColumnText(0));
  return {};
}

// Migration `migration` inside the caller's transaction.
Result<void> Step(Connection& conn, const Migration& migration) {
  auto fail = [&](const Error& error) {
    return MakeError(error.code, "schema migration to version " + std::to_string(migration.version) + " (" +
                                     migration.description + ") failed: " + error.message);
  };
  if (auto r = conn.Exec(migration.sql); !r.ok()) return fail(r.error());
  if (migration.convert != nullptr) {
    if (auto r = migration.convert(conn); !r.ok()) return fail(r.error());
  }
  if (auto r = CheckForeignKeys(conn); !r.ok()) return fail(r.error());
  std::string set_version = "PRAGMA user_version = " + std::to_string(migration.version);
  if (auto r = conn.Exec(set_version.c_str()); !r.ok()) return fail(r.error());
  return {};
}

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

int CurrentVersion() { return kMigrations.back().version; }

Result<int> Migrate(Connection& conn) { return Migrate(conn, kMigrations); }

Result<int> Migrate(Connection& conn, std::span<const Migration> migrations) {
  const int newest = migrations.empty() ? 0 : migrations.back().version;
  // Reading the header first also turns "not a database" into a clean error
  // before we try to change anything.
  auto application_id = ReadPragmaInt(conn, "PRAGMA application_id");
  if (!application_id.ok()) return application_id.error();
  if (*application_id != 0 && *application_id != kApplicationId) {
    return MakeError(Errc::kInvalidArgument,
                     "the database file belongs to another application (application_id " +
                         std::to_string(*application_id) + ")");
  }
  auto found = ReadPragmaInt(conn, "PRAGMA user_version");
  if (!found.ok()) return found.error();
  if (*found > newest) {
    return MakeError(Errc::kInvalidArgument, "the database schema version is " + std::to_string(*found) +
                                                 ", newer than this build of nines supports (" +
                                                 std::to_string(newest) +
                                                 "); run a newer nines or restore a backup");
  }
  if (*found < 0) {
    return MakeError(Errc::kInvalidArgument, "invalid database schema version " + std::to_string(*found));
  }
  if (auto r = SetWal(conn); !r.ok()) return r.error();
  if (*found == newest) return static_cast<int>(*found);
  // Every pending migration in one transaction: a crash or a failure leaves
  // the file as it was, never between two versions (where an older build
  // that knows the in-between version could misread what a later step of
  // this upgrade already wrote). The version is read again inside it, in
  // case another process migrated the file meanwhile.
  if (auto r = conn.Exec("BEGIN IMMEDIATE"); !r.ok()) return r.error();
  std::vector<const Migration*> applied;
  auto attempt = [&]() -> Result<void> {
    auto version = ReadPragmaInt(conn, "PRAGMA user_version");
    if (!version.ok()) return version.error();
    for (const Migration& migration : migrations) {
      if (migration.version <= *version) continue;
      if (auto r = Step(conn, migration); !r.ok()) return r;
      applied.push_back(&migration);
    }
    return conn.Exec("COMMIT");
  };
  if (auto r = attempt(); !r.ok()) {
    if (!conn.InAutocommit()) (void)conn.Exec("ROLLBACK");
    return r.error();
  }
  for (const Migration* migration : applied) {
    spdlog::info("store: database schema at version {} ({})", migration->version, migration->description);
  }
  return static_cast<int>(*found);
}

}  // namespace nines::store::sqlite
