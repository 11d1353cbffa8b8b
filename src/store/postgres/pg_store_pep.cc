// Personal eventing (XEP-0163) nodes and items on PostgreSQL. The SQLite
// store (sqlite_store.cc, schema version 9) is the reference behaviour.
//
// The writes that branch on data (create the node unless it exists, under
// the max_nodes rule; replace an item so that it becomes the newest; prune
// to max_items) are PL/pgSQL functions, each called as one statement. A
// limit or a missing account RAISEs (program_limit_exceeded → kLimitExceeded,
// no_data_found → kNotFound), so the job's transaction rolls back and
// nothing is written. A missing node on retract, purge or delete changes
// nothing, so it is read from the rows instead and does not abort the group
// commit the job shares.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "store/postgres/pg_store.h"

namespace nines::store::postgres {

// An item's seq is its publish order: re-publishing an id deletes the old
// row and inserts a new one, so a node's newest item is the one with the
// highest seq (found backwards through pep_items_newest), and pruning to
// max_items deletes from the low end of that range. Items and roster groups
// go with their node, and nodes with their account (ON DELETE CASCADE).
//
// Creating a node locks the owner's account row (FOR NO KEY UPDATE, which
// does not block foreign key checks) before counting the owner's nodes, so
// that writers on several servers cannot together exceed max_nodes.
const char kSchemaPep[] = R"sql(
CREATE TABLE pep_nodes (
  username text COLLATE "C" NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
  node text COLLATE "C" NOT NULL CHECK (node <> ''),
  access_model text NOT NULL CHECK (access_model IN ('open', 'presence', 'roster', 'whitelist')),
  max_items bigint NOT NULL,
  persist_items boolean NOT NULL,
  send_last text NOT NULL CHECK (send_last IN ('never', 'on_sub', 'on_sub_and_presence')),
  notify_retract boolean NOT NULL,
  notify_delete boolean NOT NULL,
  title text NOT NULL DEFAULT '',
  created_ms bigint NOT NULL,
  PRIMARY KEY (username, node)
);
CREATE TABLE pep_node_groups (
  username text COLLATE "C" NOT NULL,
  node text COLLATE "C" NOT NULL,
  name text COLLATE "C" NOT NULL,
  PRIMARY KEY (username, node, name),
  FOREIGN KEY (username, node) REFERENCES pep_nodes(username, node) ON DELETE CASCADE
);
CREATE TABLE pep_items (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username text COLLATE "C" NOT NULL,
  node text COLLATE "C" NOT NULL,
  item_id text COLLATE "C" NOT NULL CHECK (item_id <> ''),
  xml text NOT NULL,
  publisher text NOT NULL,
  updated_ms bigint NOT NULL,
  UNIQUE (username, node, item_id),
  FOREIGN KEY (username, node) REFERENCES pep_nodes(username, node) ON DELETE CASCADE
);
CREATE INDEX pep_items_newest ON pep_items (username, node, seq);

-- For a write that would create node p_node of p_username: locks the
-- account row, then raises no_data_found if there is no account and
-- program_limit_exceeded if the owner already has p_max_nodes nodes.
-- Returns false if the node exists after all (another server created it
-- meanwhile), true if the caller may create it.
CREATE FUNCTION pep_admit_node(p_username text, p_node text, p_max_nodes bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM FROM accounts WHERE username = p_username FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no account ''%''', p_username USING ERRCODE = 'no_data_found';
  END IF;
  IF EXISTS (SELECT FROM pep_nodes WHERE username = p_username AND node = p_node) THEN
    RETURN false;
  END IF;
  IF (SELECT count(*) FROM pep_nodes WHERE username = p_username) >= p_max_nodes THEN
    RAISE EXCEPTION 'the account has as many PEP nodes as allowed' USING ERRCODE = 'program_limit_exceeded';
  END IF;
  RETURN true;
END $$;

-- Inserts the node, or replaces its configuration (keeping created_ms) and
-- makes its roster groups exactly p_groups (a set).
CREATE FUNCTION pep_write_node(p_username text, p_node text, p_access_model text, p_groups text[],
    p_max_items bigint, p_persist_items boolean, p_send_last text, p_notify_retract boolean,
    p_notify_delete boolean, p_title text, p_created_ms bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO pep_nodes (username, node, access_model, max_items, persist_items, send_last,
                         notify_retract, notify_delete, title, created_ms)
  VALUES (p_username, p_node, p_access_model, p_max_items, p_persist_items, p_send_last,
          p_notify_retract, p_notify_delete, p_title, p_created_ms)
  ON CONFLICT (username, node) DO UPDATE SET access_model = excluded.access_model,
    max_items = excluded.max_items, persist_items = excluded.persist_items,
    send_last = excluded.send_last, notify_retract = excluded.notify_retract,
    notify_delete = excluded.notify_delete, title = excluded.title;
  DELETE FROM pep_node_groups
  WHERE username = p_username AND node = p_node AND name <> ALL (p_groups);
  INSERT INTO pep_node_groups (username, node, name)
  SELECT DISTINCT p_username, p_node, g FROM unnest(p_groups) AS g
  ON CONFLICT DO NOTHING;
END $$;

-- Deletes all but the newest p_keep items of the node.
CREATE FUNCTION pep_prune(p_username text, p_node text, p_keep bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM pep_items WHERE username = p_username AND node = p_node AND seq <=
    (SELECT seq FROM pep_items WHERE username = p_username AND node = p_node
     ORDER BY seq DESC OFFSET greatest(p_keep, 0) LIMIT 1);
END $$;

-- Store::PutPepNode.
CREATE FUNCTION pep_put_node(p_username text, p_node text, p_access_model text, p_groups text[],
    p_max_items bigint, p_persist_items boolean, p_send_last text, p_notify_retract boolean,
    p_notify_delete boolean, p_title text, p_created_ms bigint, p_max_nodes bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pep_nodes WHERE username = p_username AND node = p_node) THEN
    PERFORM pep_admit_node(p_username, p_node, p_max_nodes);
  END IF;
  PERFORM pep_write_node(p_username, p_node, p_access_model, p_groups, p_max_items, p_persist_items,
                         p_send_last, p_notify_retract, p_notify_delete, p_title, p_created_ms);
  PERFORM pep_prune(p_username, p_node, p_max_items);
END $$;

-- For PublishPepItem and SetPepItems: creates the node with the given
-- configuration if its owner has no node of that name (under the
-- max_nodes rule), else leaves it alone; returns the node's max_items.
CREATE FUNCTION pep_ensure_node(p_username text, p_node text, p_access_model text, p_groups text[],
    p_max_items bigint, p_persist_items boolean, p_send_last text, p_notify_retract boolean,
    p_notify_delete boolean, p_title text, p_created_ms bigint, p_max_nodes bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_max_items bigint;
BEGIN
  SELECT max_items INTO v_max_items FROM pep_nodes WHERE username = p_username AND node = p_node;
  IF FOUND THEN
    RETURN v_max_items;
  END IF;
  IF NOT pep_admit_node(p_username, p_node, p_max_nodes) THEN
    SELECT max_items INTO STRICT v_max_items FROM pep_nodes WHERE username = p_username AND node = p_node;
    RETURN v_max_items;
  END IF;
  PERFORM pep_write_node(p_username, p_node, p_access_model, p_groups, p_max_items, p_persist_items,
                         p_send_last, p_notify_retract, p_notify_delete, p_title, p_created_ms);
  RETURN p_max_items;
END $$;

-- Store::PublishPepItem. p_now_ms is both the created_ms of a new node and
-- the item's updated_ms.
CREATE FUNCTION pep_publish_item(p_username text, p_node text, p_access_model text, p_groups text[],
    p_max_items bigint, p_persist_items boolean, p_send_last text, p_notify_retract boolean,
    p_notify_delete boolean, p_title text, p_now_ms bigint, p_max_nodes bigint,
    p_item_id text, p_xml text, p_publisher text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_max_items bigint;
BEGIN
  v_max_items := pep_ensure_node(p_username, p_node, p_access_model, p_groups, p_max_items,
                                 p_persist_items, p_send_last, p_notify_retract, p_notify_delete,
                                 p_title, p_now_ms, p_max_nodes);
  DELETE FROM pep_items WHERE username = p_username AND node = p_node AND item_id = p_item_id;
  INSERT INTO pep_items (username, node, item_id, xml, publisher, updated_ms)
  VALUES (p_username, p_node, p_item_id, p_xml, p_publisher, p_now_ms);
  PERFORM pep_prune(p_username, p_node, v_max_items);
END $$;

-- Store::SetPepItems: the items are given as three arrays of equal length,
-- oldest first. An id given twice is stored once, where it was last given
-- (as if each item were published in turn).
CREATE FUNCTION pep_set_items(p_username text, p_node text, p_access_model text, p_groups text[],
    p_max_items bigint, p_persist_items boolean, p_send_last text, p_notify_retract boolean,
    p_notify_delete boolean, p_title text, p_now_ms bigint, p_max_nodes bigint,
    p_item_ids text[], p_xmls text[], p_publishers text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_max_items bigint;
BEGIN
  v_max_items := pep_ensure_node(p_username, p_node, p_access_model, p_groups, p_max_items,
                                 p_persist_items, p_send_last, p_notify_retract, p_notify_delete,
                                 p_title, p_now_ms, p_max_nodes);
  DELETE FROM pep_items WHERE username = p_username AND node = p_node;
  -- The rows are inserted in ORDER BY order, so seq follows the given order.
  INSERT INTO pep_items (username, node, item_id, xml, publisher, updated_ms)
  SELECT p_username, p_node, kept.item_id, kept.xml, kept.publisher, p_now_ms
  FROM (SELECT DISTINCT ON (given.item_id) given.item_id, given.xml, given.publisher, given.ord
        FROM unnest(p_item_ids, p_xmls, p_publishers) WITH ORDINALITY AS given(item_id, xml, publisher, ord)
        ORDER BY given.item_id, given.ord DESC) AS kept
  ORDER BY kept.ord;
  PERFORM pep_prune(p_username, p_node, v_max_items);
END $$;
)sql";

namespace {

// $1..$10 are the node's configuration, $11 now (the created_ms of a new
// node, and the items' updated_ms), $12 max_nodes (PepNodeParams).
constexpr const char kPutPepNodeSql[] =
    "SELECT pep_put_node($1::text, $2::text, $3::text, $4::text[], $5::bigint, $6::boolean, $7::text,"
    " $8::boolean, $9::boolean, $10::text, $11::bigint, $12::bigint)";

constexpr const char kPublishPepItemSql[] =
    "SELECT pep_publish_item($1::text, $2::text, $3::text, $4::text[], $5::bigint, $6::boolean, $7::text,"
    " $8::boolean, $9::boolean, $10::text, $11::bigint, $12::bigint, $13::text, $14::text, $15::text)";

constexpr const char kSetPepItemsSql[] =
    "SELECT pep_set_items($1::text, $2::text, $3::text, $4::text[], $5::bigint, $6::boolean, $7::text,"
    " $8::boolean, $9::boolean, $10::text, $11::bigint, $12::bigint, $13::text[], $14::text[], $15::text[])";

// One row per (node, roster group), a node without groups once with a NULL
// group: one statement, so no snapshot transaction is needed.
constexpr const char kListPepNodesSql[] =
    "SELECT n.username, n.node, n.access_model, n.max_items, n.persist_items, n.send_last, n.notify_retract,"
    " n.notify_delete, n.title, n.created_ms, g.name FROM pep_nodes AS n"
    " LEFT JOIN pep_node_groups AS g ON g.username = n.username AND g.node = n.node"
    " WHERE n.username = $1::text ORDER BY n.node, g.name";

// The newest item of each named node of each named owner that has one,
// leaving out the owners whose block list holds any of $3. Each node is
// found through its primary key, and its newest item backwards through
// pep_items_newest. The blocking owners are found first, once, through the
// block list's primary key (owners × JIDs probes), so the block list is
// never scanned whole however the planner estimates the arrays.
constexpr const char kLastPepItemsSql[] =
    "SELECT n.username, n.node, n.access_model, n.max_items, n.persist_items, n.send_last, n.notify_retract,"
    " n.notify_delete, n.title, n.created_ms, i.item_id, i.xml, i.publisher, i.updated_ms"
    " FROM pep_nodes AS n CROSS JOIN LATERAL"
    " (SELECT item_id, xml, publisher, updated_ms FROM pep_items"
    "  WHERE username = n.username AND node = n.node ORDER BY seq DESC LIMIT 1) AS i"
    " WHERE n.username = ANY ($1::text[]) AND n.node = ANY ($2::text[])"
    " AND n.username <> ALL (ARRAY(SELECT b.username FROM blocklist AS b"
    "  WHERE b.username = ANY ($1::text[]) AND b.jid = ANY ($3::text[])))"
    " ORDER BY n.username, n.node";

// The roster groups of the same nodes (also of those left out above; those
// rows are ignored).
constexpr const char kLastPepItemsGroupsSql[] =
    "SELECT username, node, name FROM pep_node_groups"
    " WHERE username = ANY ($1::text[]) AND node = ANY ($2::text[]) ORDER BY username, node, name";

// GetPepItems: one row per item, newest first, or one row of NULLs if the
// node has none (so that no row at all means no node). $3 is the most to
// return, NULL for all.
constexpr const char kGetNewestPepItemsSql[] =
    "SELECT i.item_id, i.xml, i.publisher, i.updated_ms FROM pep_nodes AS n LEFT JOIN LATERAL"
    " (SELECT item_id, xml, publisher, updated_ms, seq FROM pep_items"
    "  WHERE username = n.username AND node = n.node ORDER BY seq DESC LIMIT $3::bigint) AS i ON true"
    " WHERE n.username = $1::text AND n.node = $2::text ORDER BY i.seq DESC";

constexpr const char kGetPepItemsByIdSql[] =
    "SELECT i.item_id, i.xml, i.publisher, i.updated_ms FROM pep_nodes AS n LEFT JOIN LATERAL"
    " (SELECT item_id, xml, publisher, updated_ms, seq FROM pep_items"
    "  WHERE username = n.username AND node = n.node AND item_id = ANY ($3::text[])) AS i ON true"
    " WHERE n.username = $1::text AND n.node = $2::text ORDER BY i.seq DESC";

// Its items and roster groups go with it (ON DELETE CASCADE).
constexpr const char kDeletePepNodeSql[] =
    "DELETE FROM pep_nodes WHERE username = $1::text AND node = $2::text";

// Whether the node exists, and how many items went.
constexpr const char kRetractPepItemsSql[] =
    "WITH gone AS (DELETE FROM pep_items"
    " WHERE username = $1::text AND node = $2::text AND item_id = ANY ($3::text[]) RETURNING 1)"
    " SELECT EXISTS (SELECT FROM pep_nodes WHERE username = $1::text AND node = $2::text),"
    " (SELECT count(*) FROM gone)";

constexpr const char kPurgePepNodeSql[] =
    "WITH gone AS (DELETE FROM pep_items WHERE username = $1::text AND node = $2::text RETURNING 1)"
    " SELECT EXISTS (SELECT FROM pep_nodes WHERE username = $1::text AND node = $2::text)";

Error NoPepNode(const std::string& username) {
  return MakeError(Errc::kNotFound, "no such PEP node of '" + username + "'");
}

// $1..$12 of pep_put_node, pep_publish_item and pep_set_items.
Params PepNodeParams(const PepNode& node, int64_t now_ms, int64_t max_nodes) {
  Params params;
  params.Text(node.username)
      .Text(node.node)
      .Text(node.access_model)
      .TextArray(node.roster_groups)
      .Int(node.max_items)
      .Bool(node.persist_items)
      .Text(node.send_last)
      .Bool(node.notify_retract)
      .Bool(node.notify_delete)
      .Text(node.title)
      .Int(now_ms)
      .Int(max_nodes);
  return params;
}

// The node columns username, node, access_model, max_items, persist_items,
// send_last, notify_retract, notify_delete, title, created_ms from `first`.
// Roster groups are read separately.
PepNode ReadPepNode(const Rows& rows, int row, int first) {
  PepNode node;
  node.username = rows.Text(row, first);
  node.node = rows.Text(row, first + 1);
  node.access_model = rows.Text(row, first + 2);
  node.max_items = rows.Int(row, first + 3);
  node.persist_items = rows.Bool(row, first + 4);
  node.send_last = rows.Text(row, first + 5);
  node.notify_retract = rows.Bool(row, first + 6);
  node.notify_delete = rows.Bool(row, first + 7);
  node.title = rows.Text(row, first + 8);
  node.created_ms = rows.Int(row, first + 9);
  return node;
}

// The item columns item_id, xml, publisher, updated_ms from `first`.
PepItem ReadPepItem(const Rows& rows, int row, int first) {
  PepItem item;
  item.id = rows.Text(row, first);
  item.xml = rows.Text(row, first + 1);
  item.publisher = rows.Text(row, first + 2);
  item.updated_ms = rows.Int(row, first + 3);
  return item;
}

}  // namespace

void PgStore::ListPepNodes(std::string username, Reply<std::vector<PepNode>> reply) {
  Read(std::move(reply),
       [username = std::move(username)](Pipeline& p, std::optional<Result<std::vector<PepNode>>>& out) {
         p.Query(kListPepNodesSql, Params().Text(username), [&out](const Rows& rows) {
           std::vector<PepNode> nodes;
           for (int i = 0; i < rows.size(); ++i) {
             // Rows come sorted by node: a node's rows are adjacent.
             if (nodes.empty() || nodes.back().node != rows.Text(i, 1)) {
               nodes.push_back(ReadPepNode(rows, i, 0));
             }
             if (!rows.IsNull(i, 10)) nodes.back().roster_groups.push_back(rows.Text(i, 10));
           }
           out = std::move(nodes);
         });
       });
}

void PgStore::PutPepNode(PepNode node, int64_t max_nodes, Reply<void> reply) {
  Write(
      std::move(reply),
      [node = std::move(node), max_nodes](Pipeline& p, std::optional<Result<void>>& out) {
        if (auto checked = CheckPepNode(node); !checked.ok()) {
          out = checked;
          return;
        }
        p.Query(kPutPepNodeSql, PepNodeParams(node, NowMs(), max_nodes));
      },
      /*idempotent=*/true);
}

void PgStore::DeletePepNode(std::string username, std::string node, Reply<void> reply) {
  Write(std::move(reply), [username = std::move(username), node = std::move(node)](
                              Pipeline& p, std::optional<Result<void>>& out) {
    p.Query(kDeletePepNodeSql, Params().Text(username).Text(node), [&out, &username](const Rows& rows) {
      if (rows.Affected() == 0) out = NoPepNode(username);
    });
  });
}

void PgStore::PublishPepItem(PepNode node, PepItem item, int64_t max_nodes, Reply<void> reply) {
  // Publishing the same item twice leaves the node as publishing it once.
  Write(
      std::move(reply),
      [node = std::move(node), item = std::move(item), max_nodes](Pipeline& p,
                                                                  std::optional<Result<void>>& out) {
        if (auto checked = CheckPepNode(node); !checked.ok()) {
          out = checked;
          return;
        }
        if (item.id.empty()) {
          out = MakeError(Errc::kInvalidArgument, "a PEP item needs an id");
          return;
        }
        Params params = PepNodeParams(node, NowMs(), max_nodes);
        params.Text(item.id).Text(item.xml).Text(item.publisher);
        p.Query(kPublishPepItemSql, std::move(params));
      },
      /*idempotent=*/true);
}

void PgStore::SetPepItems(PepNode node, std::vector<PepItem> items, int64_t max_nodes, Reply<void> reply) {
  Write(
      std::move(reply),
      [node = std::move(node), items = std::move(items), max_nodes](Pipeline& p,
                                                                    std::optional<Result<void>>& out) {
        if (auto checked = CheckPepNode(node); !checked.ok()) {
          out = checked;
          return;
        }
        std::vector<std::string> ids;
        std::vector<std::string> xmls;
        std::vector<std::string> publishers;
        ids.reserve(items.size());
        xmls.reserve(items.size());
        publishers.reserve(items.size());
        for (const PepItem& item : items) {
          if (item.id.empty()) {
            out = MakeError(Errc::kInvalidArgument, "a PEP item needs an id");
            return;
          }
          ids.push_back(item.id);
          xmls.push_back(item.xml);
          publishers.push_back(item.publisher);
        }
        Params params = PepNodeParams(node, NowMs(), max_nodes);
        params.TextArray(ids).TextArray(xmls).TextArray(publishers);
        p.Query(kSetPepItemsSql, std::move(params));
      },
      /*idempotent=*/true);
}

void PgStore::GetPepItems(std::string username, std::string node, std::vector<std::string> ids, int64_t max,
                          Reply<std::vector<PepItem>> reply) {
  Read(std::move(reply), [username = std::move(username), node = std::move(node), ids = std::move(ids), max](
                             Pipeline& p, std::optional<Result<std::vector<PepItem>>>& out) {
    Params params;
    params.Text(username).Text(node);
    if (!ids.empty()) {
      params.TextArray(ids);
    } else if (max < 0) {
      params.Null();  // LIMIT NULL: all of them
    } else {
      params.Int(max);
    }
    p.Query(ids.empty() ? kGetNewestPepItemsSql : kGetPepItemsByIdSql, std::move(params),
            [&out, &username](const Rows& rows) {
              if (rows.size() == 0) {
                out = NoPepNode(username);
                return;
              }
              std::vector<PepItem> items;
              items.reserve(static_cast<size_t>(rows.size()));
              for (int i = 0; i < rows.size(); ++i) {
                if (!rows.IsNull(i, 0)) items.push_back(ReadPepItem(rows, i, 0));
              }
              out = std::move(items);
            });
  });
}

void PgStore::RetractPepItems(std::string username, std::string node, std::vector<std::string> ids,
                              Reply<int64_t> reply) {
  Write(std::move(reply), [username = std::move(username), node = std::move(node), ids = std::move(ids)](
                              Pipeline& p, std::optional<Result<int64_t>>& out) {
    p.Query(kRetractPepItemsSql, Params().Text(username).Text(node).TextArray(ids),
            [&out, &username](const Rows& rows) {
              if (rows.size() != 1 || !rows.Bool(0, 0)) {
                out = NoPepNode(username);
                return;
              }
              out = rows.Int(0, 1);
            });
  });
}

void PgStore::PurgePepNode(std::string username, std::string node, Reply<void> reply) {
  Write(
      std::move(reply),
      [username = std::move(username), node = std::move(node)](Pipeline& p,
                                                               std::optional<Result<void>>& out) {
        p.Query(kPurgePepNodeSql, Params().Text(username).Text(node), [&out, &username](const Rows& rows) {
          if (rows.size() != 1 || !rows.Bool(0, 0)) out = NoPepNode(username);
        });
      },
      /*idempotent=*/true);
}

void PgStore::LastPepItems(std::vector<std::string> owners, std::vector<std::string> nodes,
                           std::vector<std::string> unless_blocking, Reply<std::vector<PepLastItem>> reply) {
  Read(std::move(reply), [owners = std::move(owners), nodes = std::move(nodes),
                          unless_blocking = std::move(unless_blocking)](
                             Pipeline& p, std::optional<Result<std::vector<PepLastItem>>>& out) {
    if (owners.empty() || nodes.empty()) {
      out = std::vector<PepLastItem>();
      return;
    }
    // Both statements run in one snapshot; the second's handler adds the
    // roster groups to what the first found.
    p.Query(kLastPepItemsSql, Params().TextArray(owners).TextArray(nodes).TextArray(unless_blocking),
            [&out](const Rows& rows) {
              std::vector<PepLastItem> found;
              found.reserve(static_cast<size_t>(rows.size()));
              for (int i = 0; i < rows.size(); ++i) {
                PepLastItem last;
                last.node = ReadPepNode(rows, i, 0);
                last.item = ReadPepItem(rows, i, 10);
                found.push_back(std::move(last));
              }
              out = std::move(found);
            });
    p.Query(kLastPepItemsGroupsSql, Params().TextArray(owners).TextArray(nodes), [&out](const Rows& rows) {
      if (!out || !out->ok() || (*out)->empty()) return;
      std::vector<PepLastItem>& found = **out;
      std::map<std::pair<std::string, std::string>, size_t> by_node;
      for (size_t i = 0; i < found.size(); ++i) {
        by_node.emplace(std::make_pair(found[i].node.username, found[i].node.node), i);
      }
      for (int i = 0; i < rows.size(); ++i) {
        auto it = by_node.find({rows.Text(i, 0), rows.Text(i, 1)});
        if (it != by_node.end()) found[it->second].node.roster_groups.push_back(rows.Text(i, 2));
      }
    });
  });
}

}  // namespace nines::store::postgres
