// The message archive (XEP-0313), device states (XEP-0198 resumption from
// the store) and push registrations (XEP-0357) on PostgreSQL (store.h has
// the contract, sqlite_store.cc the reference behaviour).
//
// Every call is one Write or Read (pg_store.h). Expected outcomes that change
// nothing (a retransmission, a missing account, a taken id) come back as rows
// and never RAISE, so they do not abort the group commit they share; the
// constraints stay as the backstop for races with other nodes.
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "store/postgres/pg_store.h"

namespace nines::store::postgres {

// The archive keeps a message's text once, in archive_messages, keyed by its
// archive id; each owner has a small row in `archive` (a message between two
// local accounts has two), keyed (username, id) so that a page of one
// owner's archive is one index range. archive_by_peer serves `with` queries
// and the partial archive_by_origin finds retransmissions (XEP-0359). Time
// filters are id ranges (ids are microsecond timestamps), so no time index.
//
// Text rows are reference-counted: archive_release, a statement trigger
// (one pass per DELETE, however many rows it takes; an account's cascade
// fires it too), first deletes the texts whose every remaining owner went
// (most pruned texts have one owner: deleting a row is much cheaper than
// writing a new version of it), then, if some texts are shared, subtracts
// from the others' `owners` in a statement of its own and deletes those that
// reached zero. That keeps concurrent releases of one text on several nodes
// exact: the DELETE skips a text another transaction is releasing (it still
// sees two owners), the UPDATE then waits for that transaction and, under
// READ COMMITTED, decrements the committed count, and what reached zero goes.
// Released ids are visited in id order, so two such releases lock shared
// texts in the same order (a deadlock, should one happen, is kUnavailable).
//
// Ids. Several nodes write at once, and an id must follow commit order (a
// client that has seen id N live finds every later message after N). Every
// nines_archive_many call first locks the one row of archive_clock; the lock is
// held until its transaction commits, so archive writers (every node's whole
// group commit) are serialised, and an id chosen under the lock as
// max(max archived id + 1, now in µs) is above every id committed before.
// (Retransmissions are looked up under the same lock, so two nodes cannot
// both store one.)
// The hot path only locks the row: updating it per message would leave a
// dead version per message in every group commit, each later update walking
// that chain. Explicit ids need no bookkeeping (they are in archive_messages,
// so max() covers them). archive_clock.last_id is the watermark for what
// max() cannot see: when the trigger frees the newest texts, it records the
// highest freed id, so ids keep increasing (a device's resume cursor stays
// valid) even after the newest messages were pruned.
//
// nines_archive_many archives a run of messages (the consecutive Archive
// calls of one group commit: one statement, merged by the framework, see
// MergeSpec) in order, each for every one of its owners or not at all. Its
// input is one row per entry: (ordinal of the message, explicit id or 0,
// stamp, stanza, owner, peer, resource, outgoing, origin-id). It returns one
// row per message: (ordinal, outcome, id, owner), where outcome is
//   'stored'     id is the message's id;
//   'duplicate'  an outgoing entry's origin-id is already in that owner's
//                archive, or in an earlier message of the run; id is the
//                first copy's (nothing written);
//   'taken'      the explicit id is already used (nothing written);
//   'no account' `owner` has no account (nothing written);
//   'repeated'   `owner` appears twice (nothing written);
// checked in the SQLite backend's order (retransmission, id, then the
// entries in order). The lookups are set-based (one statement each for the
// whole run, EXECUTEd so they are planned for the tables as they are), the
// decisions a loop over the messages in memory, and the writes two INSERTs:
// the per-message cost is mostly the rows written.
//
// Device states and push registrations are plain rows owned by an account.
const char kSchemaArchive[] = R"sql(
CREATE TABLE archive_messages (
  id bigint PRIMARY KEY CHECK (id > 0),
  stamp_ms bigint NOT NULL,
  owners bigint NOT NULL,
  stanza text NOT NULL
);

CREATE TABLE archive (
  username text COLLATE "C" NOT NULL,  -- an account's; see accounts_archive_cascade
  id bigint NOT NULL,
  peer text COLLATE "C" NOT NULL,
  peer_resource text COLLATE "C" NOT NULL DEFAULT '',
  outgoing boolean NOT NULL,
  origin_id text COLLATE "C" NOT NULL DEFAULT '',
  PRIMARY KEY (username, id)
);
CREATE INDEX archive_by_peer ON archive (username, peer, id);
-- Not a foreign key: that would lock the owner's account row once per
-- archived row (a third of the archive's cost). nines_archive_many locks
-- the owners' rows once per run instead (FOR KEY SHARE, so a concurrent
-- account delete waits), and this trigger does what ON DELETE CASCADE did.
CREATE FUNCTION nines_archive_of_deleted_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM archive WHERE username = OLD.username;
  RETURN NULL;
END
$$;
CREATE TRIGGER accounts_archive_cascade AFTER DELETE ON accounts
  FOR EACH ROW EXECUTE FUNCTION nines_archive_of_deleted_account();
CREATE INDEX archive_by_origin ON archive (username, origin_id) WHERE origin_id <> '';

CREATE TABLE archive_clock (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_id bigint NOT NULL
);
INSERT INTO archive_clock (last_id) VALUES (0);

CREATE FUNCTION nines_archive_release() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_texts bigint;
  v_freed bigint;
  v_top bigint;
  v_emptied bigint[];
BEGIN
  WITH released_counts AS (SELECT r.id, count(*) AS n FROM released AS r GROUP BY r.id ORDER BY r.id),
       freed AS (DELETE FROM archive_messages AS m USING released_counts AS c
                 WHERE m.id = c.id AND m.owners <= c.n RETURNING m.id)
  SELECT (SELECT count(*) FROM released_counts), count(*), max(freed.id) INTO v_texts, v_freed, v_top FROM freed;
  IF v_freed < v_texts THEN
    WITH released_counts AS (SELECT r.id, count(*) AS n FROM released AS r GROUP BY r.id ORDER BY r.id),
         counted AS (UPDATE archive_messages AS m SET owners = m.owners - c.n FROM released_counts AS c
                     WHERE m.id = c.id RETURNING m.id, m.owners)
    SELECT array_agg(counted.id) INTO v_emptied FROM counted WHERE counted.owners <= 0;
    IF v_emptied IS NOT NULL THEN
      DELETE FROM archive_messages AS m WHERE m.id = ANY (v_emptied);
      v_top := greatest(v_top, (SELECT max(e) FROM unnest(v_emptied) AS e));
    END IF;
  END IF;
  IF v_top > coalesce((SELECT max(m.id) FROM archive_messages AS m), 0) THEN
    UPDATE archive_clock SET last_id = v_top WHERE last_id < v_top;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER archive_release AFTER DELETE ON archive REFERENCING OLD TABLE AS released
  FOR EACH STATEMENT EXECUTE FUNCTION nines_archive_release();

CREATE FUNCTION nines_archive_many(p_ord bigint[], p_id bigint[], p_stamp bigint[], p_stanza text[],
                                   p_owner text[], p_peer text[], p_resource text[], p_outgoing boolean[],
                                   p_origin text[])
RETURNS TABLE (o_ord bigint, o_outcome text, o_id bigint, o_owner text)
LANGUAGE plpgsql AS $$
DECLARE
  v_known jsonb;            -- 'owner origin-id' -> id, for retransmissions already archived
  v_first_key jsonb;        -- 'owner origin-id' -> the first message of this run that carries it
  v_first_id jsonb;         -- explicit id -> the first message of this run that gives it
  v_id_of bigint[];         -- message ordinal -> the id it was stored under (0: not stored)
  v_missing text[];         -- owners without an account
  v_taken bigint[];         -- explicit ids already used
  v_last bigint;
  v_now bigint;
  v_ords bigint[] := '{}';  -- the stored messages' ordinals and ids
  v_ids bigint[] := '{}';
  v_first bigint;
  m record;
  j int;
BEGIN
  -- Held until commit: archive writers everywhere are serialised, so ids
  -- follow commit order.
  PERFORM 1 FROM archive_clock FOR UPDATE;
  -- The lookups into tables that grow are EXECUTEd, so each is planned for
  -- the tables as they are now: a plan cached while they were small (a new
  -- database) would scan them whole later.
  EXECUTE $q$
    SELECT coalesce(jsonb_object_agg(k.key, k.id), '{}') FROM (
      SELECT e.owner || ' ' || e.origin AS key,
             (SELECT a.id FROM archive AS a
               WHERE a.username = e.owner AND a.origin_id = e.origin AND a.origin_id <> ''
               ORDER BY a.id LIMIT 1) AS id
      FROM unnest($1, $2, $3) AS e(owner, origin, outgoing)
      WHERE e.outgoing AND e.origin <> '') AS k
    WHERE k.id IS NOT NULL$q$
    INTO v_known USING p_owner, p_origin, p_outgoing;
  -- Repeats within the run (a retransmission in the same group commit, an
  -- explicit id given twice), found once rather than message by message.
  SELECT coalesce(jsonb_object_agg(k.key, k.ord), '{}') INTO v_first_key FROM (
    SELECT e.owner || ' ' || e.origin AS key, min(e.ord) AS ord
    FROM unnest(p_owner, p_origin, p_outgoing, p_ord) AS e(owner, origin, outgoing, ord)
    WHERE e.outgoing AND e.origin <> '' GROUP BY 1) AS k;
  SELECT coalesce(jsonb_object_agg(k.id::text, k.ord), '{}') INTO v_first_id FROM (
    SELECT e.id, min(e.ord) AS ord FROM unnest(p_id, p_ord) AS e(id, ord) WHERE e.id <> 0 GROUP BY 1) AS k;
  v_id_of := array_fill(0::bigint, ARRAY[coalesce((SELECT max(o) FROM unnest(p_ord) AS o), 0)::int]);
  -- The owners' accounts, locked against deletion until commit (what a
  -- foreign key would do per row, once per run).
  EXECUTE $q$
    WITH present AS (SELECT ac.username FROM accounts AS ac WHERE ac.username = ANY ($1) FOR KEY SHARE)
    SELECT coalesce(array_agg(DISTINCT e.owner), '{}') FROM unnest($1) AS e(owner)
    WHERE e.owner NOT IN (SELECT p.username FROM present AS p)$q$
    INTO v_missing USING p_owner;
  EXECUTE $q$SELECT coalesce(array_agg(a.id), '{}') FROM archive_messages AS a WHERE a.id = ANY ($1)$q$
    INTO v_taken USING p_id;
  SELECT greatest(c.last_id, coalesce((SELECT max(a.id) FROM archive_messages AS a), 0)) INTO v_last
    FROM archive_clock AS c;
  v_now := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
  -- One row per message, its entries' owners and retransmission keys in
  -- small arrays (subscripting the long input arrays would cost their length).
  FOR m IN
    SELECT e.ord, min(e.id) AS id,
           array_agg(e.owner ORDER BY e.n) AS owners,
           array_agg(CASE WHEN e.outgoing AND e.origin <> '' THEN e.owner || ' ' || e.origin END ORDER BY e.n) AS keys
    FROM unnest(p_ord, p_id, p_owner, p_origin, p_outgoing) WITH ORDINALITY AS e(ord, id, owner, origin, outgoing, n)
    GROUP BY e.ord ORDER BY e.ord
  LOOP
    o_ord := m.ord;
    o_outcome := NULL;
    o_owner := NULL;
    o_id := m.id;
    FOR j IN 1..cardinality(m.keys) LOOP
      CONTINUE WHEN m.keys[j] IS NULL;
      IF v_known ? m.keys[j] THEN
        o_outcome := 'duplicate';
        o_id := (v_known ->> m.keys[j])::bigint;
        EXIT;
      END IF;
      v_first := (v_first_key ->> m.keys[j])::bigint;
      IF v_first < m.ord AND v_id_of[v_first] <> 0 THEN
        o_outcome := 'duplicate';
        o_id := v_id_of[v_first];
        EXIT;
      END IF;
    END LOOP;
    IF o_outcome IS NULL AND m.id <> 0 THEN
      v_first := (v_first_id ->> m.id::text)::bigint;
      IF m.id = ANY (v_taken) OR (v_first < m.ord AND v_id_of[v_first] <> 0) THEN
        o_outcome := 'taken';
      END IF;
    END IF;
    IF o_outcome IS NULL THEN
      FOR j IN 1..cardinality(m.owners) LOOP
        IF m.owners[j] = ANY (v_missing) THEN
          o_outcome := 'no account';
        ELSIF j > 1 AND m.owners[j] = ANY (m.owners[1:j - 1]) THEN
          o_outcome := 'repeated';
        END IF;
        IF o_outcome IS NOT NULL THEN
          o_owner := m.owners[j];
          EXIT;
        END IF;
      END LOOP;
    END IF;
    IF o_outcome IS NULL THEN
      IF o_id = 0 THEN
        o_id := greatest(v_last + 1, v_now);
      END IF;
      v_last := greatest(v_last, o_id);
      v_ords := v_ords || m.ord;
      v_ids := v_ids || o_id;
      v_id_of[m.ord] := o_id;
      o_outcome := 'stored';
    END IF;
    RETURN NEXT;
  END LOOP;
  IF cardinality(v_ids) > 0 THEN
    INSERT INTO archive_messages (id, stamp_ms, owners, stanza)
      SELECT s.id, CASE WHEN f.id = 0 THEN s.id / 1000 ELSE f.stamp END, f.owners, f.stanza
      FROM unnest(v_ords, v_ids) AS s(ord, id)
      JOIN (SELECT e.ord, min(e.id) AS id, min(e.stamp) AS stamp, count(*) AS owners,
                   (array_agg(e.stanza ORDER BY e.n))[1] AS stanza
            FROM unnest(p_ord, p_id, p_stamp, p_stanza) WITH ORDINALITY AS e(ord, id, stamp, stanza, n)
            GROUP BY e.ord) AS f ON f.ord = s.ord;
    INSERT INTO archive (username, id, peer, peer_resource, outgoing, origin_id)
      SELECT e.owner, s.id, e.peer, e.resource, e.outgoing, CASE WHEN e.outgoing THEN e.origin ELSE '' END
      FROM unnest(v_ords, v_ids) AS s(ord, id)
      JOIN unnest(p_ord, p_owner, p_peer, p_resource, p_outgoing, p_origin)
        AS e(ord, owner, peer, resource, outgoing, origin) ON e.ord = s.ord;
  END IF;
END
$$;

CREATE TABLE device_states (
  key text COLLATE "C" PRIMARY KEY,
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  resource text NOT NULL,
  inbound_h bigint NOT NULL,
  cursor bigint NOT NULL,
  presence text NOT NULL,
  priority bigint NOT NULL,
  carbons boolean NOT NULL,
  roster_requested boolean NOT NULL,
  resume_timeout_s bigint NOT NULL,
  detached_ms bigint NOT NULL
);
CREATE INDEX device_states_by_user ON device_states (username);

CREATE TABLE push_registrations (
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  jid text COLLATE "C" NOT NULL,
  node text COLLATE "C" NOT NULL,
  options text NOT NULL,
  resource text NOT NULL,
  created_ms bigint NOT NULL,
  PRIMARY KEY (username, jid, node)
);
)sql";

namespace {

Error NoAccount(const std::string& username) {
  return MakeError(Errc::kNotFound, "no account '" + username + "'");
}

// ---- Archive ----

// Rows: (message ordinal) id, stamp, stanza, owner, peer, resource, outgoing, origin-id.
constexpr MergeSpec kArchiveMany{
    "SELECT * FROM nines_archive_many($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],"
    " $6::text[], $7::text[], $8::boolean[], $9::text[])",
    8};

// QueryArchive names only the filters in use, so each combination gets the
// plan that fits it (the (username, id) primary key, or archive_by_peer for
// `with`); parameters are numbered in the order the filters appear.
//
// The page is cut from `archive` first and only then are its texts looked up,
// one primary-key probe per row (LATERAL ... LIMIT 1 cannot be flattened into
// a join). With a plain join the planner may pick a merge join with
// archive_messages, which reads that table from its first id up to the page:
// forward paging from the middle of a large archive took 0.5 s instead of
// 0.2 ms.
enum QueryShape : unsigned {
  kWith = 1U << 0,
  kWithResource = 1U << 1,
  kAfter = 1U << 2,
  kBefore = 1U << 3,
  kIds = 1U << 4,
  kFromEnd = 1U << 5,
  kShapes = 1U << 6,
};

std::string BuildQuerySql(unsigned shape) {
  std::string sql =
      "SELECT a.id, m.stamp_ms, a.peer, a.peer_resource, a.outgoing, a.origin_id, m.stanza"
      " FROM (SELECT id, peer, peer_resource, outgoing, origin_id FROM archive WHERE username = $1::text";
  int next = 2;
  auto param = [&next](const char* cast) { return "$" + std::to_string(next++) + cast; };
  if ((shape & kWith) != 0) sql += " AND peer = " + param("::text");
  if ((shape & kWithResource) != 0) sql += " AND peer_resource = " + param("::text");
  if ((shape & kAfter) != 0) sql += " AND id > " + param("::bigint");
  if ((shape & kBefore) != 0) sql += " AND id < " + param("::bigint");
  if ((shape & kIds) != 0) sql += " AND id = ANY (" + param("::bigint[]") + ")";
  const char* order = (shape & kFromEnd) != 0 ? " DESC" : "";
  sql += std::string(" ORDER BY id") + order + " LIMIT " + param("::bigint") + ") AS a";
  sql +=
      " CROSS JOIN LATERAL (SELECT stamp_ms, stanza FROM archive_messages"
      " WHERE archive_messages.id = a.id LIMIT 1) AS m";
  sql += std::string(" ORDER BY a.id") + order;
  return sql;
}

// Statements are prepared by their text, which must outlive the store: the
// texts are built once and kept.
const char* QuerySql(unsigned shape) {
  static const std::array<std::string, kShapes> texts = [] {
    std::array<std::string, kShapes> built;
    for (unsigned each = 0; each < kShapes; ++each) built[each] = BuildQuerySql(each);
    return built;
  }();
  return texts[shape].c_str();
}

ArchivedMessage ReadArchivedMessage(const Rows& rows, int row) {
  ArchivedMessage m;
  m.id = rows.Int(row, 0);
  m.stamp_ms = rows.Int(row, 1);
  m.peer = rows.Text(row, 2);
  m.peer_resource = rows.Text(row, 3);
  m.outgoing = rows.Bool(row, 4);
  m.origin_id = rows.Text(row, 5);
  m.stanza = rows.Text(row, 6);
  return m;
}

constexpr const char kPruneBeforeSql[] = "DELETE FROM archive WHERE username = $1::text AND id < $2::bigint";

constexpr const char kPruneKeepSql[] =
    "DELETE FROM archive WHERE username = $1::text AND id <="
    " (SELECT id FROM archive WHERE username = $1::text ORDER BY id DESC LIMIT 1 OFFSET $2::bigint)";

// ---- Device states ----

// Selecting the owner from `accounts` writes nothing for a missing account:
// no row, which becomes kNotFound without aborting the group commit.
constexpr const char kPutDeviceStateSql[] =
    "INSERT INTO device_states (key, username, resource, inbound_h, cursor, presence, priority, carbons,"
    " roster_requested, resume_timeout_s, detached_ms)"
    " SELECT $1::text, username, $3::text, $4::bigint, $5::bigint, $6::text, $7::bigint, $8::boolean,"
    " $9::boolean, $10::bigint, $11::bigint FROM accounts WHERE username = $2::text"
    " ON CONFLICT (key) DO UPDATE SET username = excluded.username, resource = excluded.resource,"
    " inbound_h = excluded.inbound_h, cursor = excluded.cursor, presence = excluded.presence,"
    " priority = excluded.priority, carbons = excluded.carbons, roster_requested = excluded.roster_requested,"
    " resume_timeout_s = excluded.resume_timeout_s, detached_ms = excluded.detached_ms";

constexpr const char kGetDeviceStateSql[] =
    "SELECT username, resource, inbound_h, cursor, presence, priority, carbons, roster_requested,"
    " resume_timeout_s, detached_ms FROM device_states WHERE key = $1::text";

constexpr const char kDeleteDeviceStateSql[] = "DELETE FROM device_states WHERE key = $1::text";

constexpr const char kDetachDeviceStatesSql[] =
    "UPDATE device_states SET detached_ms = $1::bigint WHERE detached_ms = 0";

constexpr const char kDropExpiredDeviceStatesSql[] =
    "DELETE FROM device_states WHERE detached_ms + resume_timeout_s * 1000 < $1::bigint";

// ---- Push registrations ----

constexpr const char kPutPushRegistrationSql[] =
    "INSERT INTO push_registrations (username, jid, node, options, resource, created_ms)"
    " SELECT username, $2::text, $3::text, $4::text, $5::text, $6::bigint"
    " FROM accounts WHERE username = $1::text"
    " ON CONFLICT (username, jid, node) DO UPDATE SET"
    " options = excluded.options, resource = excluded.resource, created_ms = excluded.created_ms";

constexpr const char kDeletePushServiceSql[] =
    "DELETE FROM push_registrations WHERE username = $1::text AND jid = $2::text";

constexpr const char kDeletePushNodeSql[] =
    "DELETE FROM push_registrations WHERE username = $1::text AND jid = $2::text AND node = $3::text";

constexpr const char kListPushRegistrationsSql[] =
    "SELECT jid, node, options, resource, created_ms FROM push_registrations WHERE username = $1::text"
    " ORDER BY created_ms, jid, node";

}  // namespace

// ---- Archive ----

void PgStore::Archive(std::vector<ArchiveEntry> entries, Reply<ArchiveOutcome> reply) {
  Write(std::move(reply), [entries = std::move(entries)](Pipeline& p,
                                                         std::optional<Result<ArchiveOutcome>>& out) {
    if (entries.empty()) {
      out = MakeError(Errc::kInvalidArgument, "nothing to archive");
      return;
    }
    const ArchivedMessage& first = entries.front().message;
    if (first.id < 0) {
      out = MakeError(Errc::kInvalidArgument, "archive ids must be positive");
      return;
    }
    std::vector<std::vector<std::string>> rows;
    rows.reserve(entries.size());
    for (const ArchiveEntry& entry : entries) {
      const ArchivedMessage& m = entry.message;
      if (m.id != first.id || m.stamp_ms != first.stamp_ms ||
          (!m.stanza.empty() && m.stanza != first.stanza)) {
        out = MakeError(Errc::kInvalidArgument, "the entries of one Archive call must be one message");
        return;
      }
      // The text goes with the first entry only; the others reuse it.
      rows.push_back({std::to_string(first.id), std::to_string(first.stamp_ms), rows.empty() ? m.stanza : "",
                      entry.username, m.peer, m.peer_resource, m.outgoing ? "t" : "f",
                      m.outgoing ? m.origin_id : std::string()});  // incoming copies carry none
    }
    p.Merged(kArchiveMany, std::move(rows), [&out](const Rows& rows) {
      if (rows.size() != 1) {
        out = MakeError(Errc::kInternal, "nines_archive_many returned no row for a message");
        return;
      }
      const std::string outcome = rows.Text(0, 1);
      const int64_t id = rows.Int(0, 2);
      ArchiveOutcome done;
      if (outcome == "stored") {
        done.id = id;
        out = done;
      } else if (outcome == "duplicate") {
        done.duplicate = true;
        done.existing_id = id;
        out = done;
      } else if (outcome == "taken") {
        out = MakeError(Errc::kConflict, "archive id " + std::to_string(id) + " is already used");
      } else if (outcome == "no account") {
        out = NoAccount(rows.Text(0, 3));
      } else if (outcome == "repeated") {
        out = MakeError(Errc::kConflict,
                        "archive id " + std::to_string(id) + " already used for '" + rows.Text(0, 3) + "'");
      } else {
        out = MakeError(Errc::kInternal, "nines_archive_many returned '" + outcome + "'");
      }
    });
  });
}

void PgStore::QueryArchive(std::string username, ArchiveQuery query, Reply<ArchivePage> reply) {
  Read(std::move(reply), [username = std::move(username), query = std::move(query)](
                             Pipeline& p, std::optional<Result<ArchivePage>>& out) {
    unsigned shape = 0;
    Params params;
    params.Text(username);
    if (!query.with.empty()) {
      shape |= kWith;
      params.Text(query.with);
    }
    if (!query.with_resource.empty()) {
      shape |= kWithResource;
      params.Text(query.with_resource);
    }
    if (query.after_id) {
      shape |= kAfter;
      params.Int(*query.after_id);
    }
    if (query.before_id) {
      shape |= kBefore;
      params.Int(*query.before_id);
    }
    if (!query.ids.empty()) {
      shape |= kIds;
      params.IntArray(query.ids);
    }
    if (query.from_end) shape |= kFromEnd;
    const int64_t max = std::max<int64_t>(query.max, 0);
    // One more than asked tells whether the page is the last.
    params.Int(max < std::numeric_limits<int64_t>::max() ? max + 1 : max);
    p.Query(QuerySql(shape), std::move(params), [&out, &query, max](const Rows& rows) {
      ArchivePage page;
      const int count = rows.size();
      const int keep = static_cast<int>(std::min<int64_t>(count, max));
      page.complete = count <= keep;
      page.messages.reserve(static_cast<size_t>(keep));
      for (int i = 0; i < keep; ++i) page.messages.push_back(ReadArchivedMessage(rows, i));
      if (query.from_end) std::reverse(page.messages.begin(), page.messages.end());
      out = std::move(page);
    });
  });
}

void PgStore::PruneArchive(std::string username, int64_t before_id, int64_t keep, Reply<int64_t> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), before_id, keep](Pipeline& p, std::optional<Result<int64_t>>& out) {
        // Rows affected count the owner's rows only, not the trigger's work.
        p.Query(kPruneBeforeSql, Params().Text(username).Int(before_id),
                [&out](const Rows& rows) { out = rows.Affected(); });
        if (keep < 0) return;
        p.Query(kPruneKeepSql, Params().Text(username).Int(keep), [&out](const Rows& rows) {
          const int64_t earlier = out && out->ok() ? **out : 0;
          out = earlier + rows.Affected();
        });
      },
      /*idempotent=*/true);
}

// ---- Device states ----

void PgStore::PutDeviceState(DeviceState state, Reply<void> reply) {
  Write(
      std::move(reply),
      [state = std::move(state)](Pipeline& p, std::optional<Result<void>>& out) {
        if (state.key.empty()) {
          out = MakeError(Errc::kInvalidArgument, "a device state needs a key");
          return;
        }
        Params params;
        params.Text(state.key).Text(state.username).Text(state.resource);
        params.Int(state.inbound_h).Int(state.cursor).Text(state.presence).Int(state.priority);
        params.Bool(state.carbons)
            .Bool(state.roster_requested)
            .Int(state.resume_timeout_s)
            .Int(state.detached_ms);
        p.Query(kPutDeviceStateSql, std::move(params), [&out, &state](const Rows& rows) {
          if (rows.Affected() == 0) out = NoAccount(state.username);
        });
      },
      /*idempotent=*/true);
}

void PgStore::GetDeviceState(std::string key, Reply<DeviceState> reply) {
  Read(std::move(reply), [key = std::move(key)](Pipeline& p, std::optional<Result<DeviceState>>& out) {
    p.Query(kGetDeviceStateSql, Params().Text(key), [&out, &key](const Rows& rows) {
      if (rows.size() == 0) {
        out = MakeError(Errc::kNotFound, "no such device state");
        return;
      }
      DeviceState state;
      state.key = key;
      state.username = rows.Text(0, 0);
      state.resource = rows.Text(0, 1);
      state.inbound_h = rows.Int(0, 2);
      state.cursor = rows.Int(0, 3);
      state.presence = rows.Text(0, 4);
      state.priority = rows.Int(0, 5);
      state.carbons = rows.Bool(0, 6);
      state.roster_requested = rows.Bool(0, 7);
      state.resume_timeout_s = rows.Int(0, 8);
      state.detached_ms = rows.Int(0, 9);
      out = std::move(state);
    });
  });
}

void PgStore::DeleteDeviceState(std::string key, Reply<void> reply) {
  Write(
      std::move(reply),
      [key = std::move(key)](Pipeline& p, std::optional<Result<void>>&) {
        p.Query(kDeleteDeviceStateSql, Params().Text(key));
      },
      /*idempotent=*/true);
}

void PgStore::SweepDeviceStates(int64_t now_ms, Reply<int64_t> reply) {
  Write(
      std::move(reply),
      [now_ms](Pipeline& p, std::optional<Result<int64_t>>& out) {
        p.Query(kDetachDeviceStatesSql, Params().Int(now_ms));
        p.Query(kDropExpiredDeviceStatesSql, Params().Int(now_ms),
                [&out](const Rows& rows) { out = rows.Affected(); });
      },
      /*idempotent=*/true);
}

// ---- Push registrations ----

void PgStore::PutPushRegistration(PushRegistration registration, Reply<void> reply) {
  Write(
      std::move(reply),
      [reg = std::move(registration)](Pipeline& p, std::optional<Result<void>>& out) {
        if (reg.jid.empty() || reg.node.empty()) {
          out = MakeError(Errc::kInvalidArgument, "a push registration needs a jid and a node");
          return;
        }
        Params params;
        params.Text(reg.username).Text(reg.jid).Text(reg.node).Text(reg.options).Text(reg.resource);
        params.Int(reg.created_ms);
        p.Query(kPutPushRegistrationSql, std::move(params), [&out, &reg](const Rows& rows) {
          if (rows.Affected() == 0) out = NoAccount(reg.username);
        });
      },
      /*idempotent=*/true);
}

void PgStore::DeletePushRegistrations(std::string username, std::string jid, std::string node,
                                      Reply<int64_t> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), jid = std::move(jid), node = std::move(node)](
          Pipeline& p, std::optional<Result<int64_t>>& out) {
        auto count = [&out](const Rows& rows) { out = rows.Affected(); };
        if (node.empty()) {
          p.Query(kDeletePushServiceSql, Params().Text(username).Text(jid), count);
        } else {
          p.Query(kDeletePushNodeSql, Params().Text(username).Text(jid).Text(node), count);
        }
      },
      /*idempotent=*/true);
}

void PgStore::ListPushRegistrations(std::string username, Reply<std::vector<PushRegistration>> reply) {
  Read(std::move(reply), [username = std::move(username)](
                             Pipeline& p, std::optional<Result<std::vector<PushRegistration>>>& out) {
    p.Query(kListPushRegistrationsSql, Params().Text(username), [&out, &username](const Rows& rows) {
      std::vector<PushRegistration> registrations;
      registrations.reserve(static_cast<size_t>(rows.size()));
      for (int i = 0; i < rows.size(); ++i) {
        PushRegistration reg;
        reg.username = username;
        reg.jid = rows.Text(i, 0);
        reg.node = rows.Text(i, 1);
        reg.options = rows.Text(i, 2);
        reg.resource = rows.Text(i, 3);
        reg.created_ms = rows.Int(i, 4);
        registrations.push_back(std::move(reg));
      }
      out = std::move(registrations);
    });
  });
}

}  // namespace nines::store::postgres
