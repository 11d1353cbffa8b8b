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
// nines_archive call first locks the one row of archive_clock; the lock is
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
// nines_archive writes one message for every owner, or nothing. It returns
// (outcome, id, owner) where outcome is
//   'stored'     id is the message's id;
//   'duplicate'  an outgoing entry's origin-id is already in that owner's
//                archive; id is the first copy's (nothing written);
//   'taken'      the explicit id is already used (nothing written);
//   'no account' `owner` has no account (nothing written);
//   'repeated'   `owner` appears twice (nothing written);
// checked in the SQLite backend's order (retransmission, id, then the
// entries in order). Its statements are simple index lookups and inserts;
// plan_cache_mode = force_generic_plan keeps PostgreSQL from re-planning them
// on every call (with unnest() the custom plans look cheaper, and planning
// would cost more than running them).
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
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  id bigint NOT NULL,
  peer text COLLATE "C" NOT NULL,
  peer_resource text COLLATE "C" NOT NULL DEFAULT '',
  outgoing boolean NOT NULL,
  origin_id text COLLATE "C" NOT NULL DEFAULT '',
  PRIMARY KEY (username, id)
);
CREATE INDEX archive_by_peer ON archive (username, peer, id);
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

CREATE FUNCTION nines_archive(p_id bigint, p_stamp_ms bigint, p_stanza text, p_owners text[], p_peers text[],
                              p_resources text[], p_outgoing boolean[], p_origin_ids text[],
                              OUT o_outcome text, OUT o_id bigint, OUT o_owner text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_existing bigint;
BEGIN
  PERFORM 1 FROM archive_clock FOR UPDATE;
  -- Read after the lock (a statement of its own, so a snapshot of its own):
  -- whatever the previous holder wrote is visible.
  SELECT
    (SELECT a.id FROM unnest(p_owners, p_outgoing, p_origin_ids) WITH ORDINALITY AS e(owner, outgoing, origin_id, n)
       JOIN archive AS a ON a.username = e.owner AND a.origin_id = e.origin_id AND a.origin_id <> ''
       WHERE e.outgoing AND e.origin_id <> ''
       ORDER BY e.n LIMIT 1),
    (SELECT e.owner FROM unnest(p_owners) WITH ORDINALITY AS e(owner, n)
       LEFT JOIN accounts AS ac ON ac.username = e.owner
       WHERE ac.username IS NULL OR e.owner = ANY (p_owners[1:e.n - 1])
       ORDER BY e.n LIMIT 1)
    INTO v_existing, o_owner;
  IF v_existing IS NOT NULL THEN
    o_outcome := 'duplicate';
    o_id := v_existing;
    o_owner := NULL;
    RETURN;
  END IF;
  IF p_id = 0 THEN
    SELECT greatest(c.last_id, (SELECT max(m.id) FROM archive_messages AS m)) + 1 INTO o_id FROM archive_clock AS c;
    o_id := greatest(o_id, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
    p_stamp_ms := o_id / 1000;
  ELSE
    o_id := p_id;
    IF EXISTS (SELECT 1 FROM archive_messages AS m WHERE m.id = p_id) THEN
      o_outcome := 'taken';
      o_owner := NULL;
      RETURN;
    END IF;
  END IF;
  IF o_owner IS NOT NULL THEN
    o_outcome := CASE WHEN EXISTS (SELECT 1 FROM accounts AS ac WHERE ac.username = o_owner)
                      THEN 'repeated' ELSE 'no account' END;
    RETURN;
  END IF;
  INSERT INTO archive_messages (id, stamp_ms, owners, stanza)
    VALUES (o_id, p_stamp_ms, cardinality(p_owners), p_stanza);
  INSERT INTO archive (username, id, peer, peer_resource, outgoing, origin_id)
    SELECT e.owner, o_id, e.peer, e.resource, e.outgoing, CASE WHEN e.outgoing THEN e.origin_id ELSE '' END
    FROM unnest(p_owners, p_peers, p_resources, p_outgoing, p_origin_ids)
      AS e(owner, peer, resource, outgoing, origin_id);
  o_outcome := 'stored';
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

constexpr const char kArchiveSql[] =
    "SELECT o_outcome, o_id, o_owner FROM nines_archive($1::bigint, $2::bigint, $3::text, $4::text[], $5::text[],"
    " $6::text[], $7::boolean[], $8::text[])";

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
    " SELECT username, $2::text, $3::text, $4::text, $5::text, $6::bigint FROM accounts WHERE username = $1::text"
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
  Write(std::move(reply), [entries = std::move(entries)](Pipeline& p, std::optional<Result<ArchiveOutcome>>& out) {
    if (entries.empty()) {
      out = MakeError(Errc::kInvalidArgument, "nothing to archive");
      return;
    }
    const ArchivedMessage& first = entries.front().message;
    if (first.id < 0) {
      out = MakeError(Errc::kInvalidArgument, "archive ids must be positive");
      return;
    }
    std::vector<std::string> owners;
    std::vector<std::string> peers;
    std::vector<std::string> resources;
    std::vector<bool> outgoing;
    std::vector<std::string> origin_ids;
    owners.reserve(entries.size());
    peers.reserve(entries.size());
    resources.reserve(entries.size());
    outgoing.reserve(entries.size());
    origin_ids.reserve(entries.size());
    for (const ArchiveEntry& entry : entries) {
      const ArchivedMessage& m = entry.message;
      if (m.id != first.id || m.stamp_ms != first.stamp_ms || m.stanza != first.stanza) {
        out = MakeError(Errc::kInvalidArgument, "the entries of one Archive call must be one message");
        return;
      }
      owners.push_back(entry.username);
      peers.push_back(m.peer);
      resources.push_back(m.peer_resource);
      outgoing.push_back(m.outgoing);
      origin_ids.push_back(m.outgoing ? m.origin_id : std::string());  // incoming copies carry none
    }
    Params params;
    params.Int(first.id).Int(first.stamp_ms).Text(first.stanza);
    params.TextArray(owners).TextArray(peers).TextArray(resources).BoolArray(outgoing).TextArray(origin_ids);
    p.Query(kArchiveSql, std::move(params), [&out](const Rows& rows) {
      if (rows.size() != 1) {
        out = MakeError(Errc::kInternal, "nines_archive returned no row");
        return;
      }
      const std::string outcome = rows.Text(0, 0);
      const int64_t id = rows.Int(0, 1);
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
        out = NoAccount(rows.Text(0, 2));
      } else if (outcome == "repeated") {
        out = MakeError(Errc::kConflict,
                        "archive id " + std::to_string(id) + " already used for '" + rows.Text(0, 2) + "'");
      } else {
        out = MakeError(Errc::kInternal, "nines_archive returned '" + outcome + "'");
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
        params.Bool(state.carbons).Bool(state.roster_requested).Int(state.resume_timeout_s).Int(state.detached_ms);
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
  Read(std::move(reply),
       [username = std::move(username)](Pipeline& p, std::optional<Result<std::vector<PushRegistration>>>& out) {
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
