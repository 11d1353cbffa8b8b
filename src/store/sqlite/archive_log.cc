#include "store/sqlite/archive_log.h"

#include <sqlite3.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

namespace nines::store::sqlite {
namespace {

constexpr int64_t kNoId = std::numeric_limits<int64_t>::max();

// ---- Encoding: LEB128 varints and length-prefixed strings ----

// Appends to a string through a raw pointer, into room made up front (at
// most `bound` bytes; the string is cut to what was written when the
// Appender goes). The encoders below write a dozen small fields per message,
// and a std::string append each, with its capacity check and length update,
// cost more than the bytes: about 40 instructions a field against 5.
class Appender {
 public:
  Appender(std::string& out, size_t bound) : out_(out) {
    const size_t start = out.size();
    out.resize(start + bound);
    at_ = out.data() + start;
    end_ = at_ + bound;
  }
  ~Appender() { out_.resize(static_cast<size_t>(at_ - out_.data())); }
  Appender(const Appender&) = delete;
  Appender& operator=(const Appender&) = delete;

  static constexpr size_t kMaxVarint = 10;

  void Varint(uint64_t v) {
    assert(end_ - at_ >= static_cast<ptrdiff_t>(kMaxVarint));
    while (v >= 0x80) {
      *at_++ = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    *at_++ = static_cast<char>(v);
  }
  void Byte(char c) {
    assert(at_ < end_);
    *at_++ = c;
  }
  void Bytes(std::string_view s) {
    assert(end_ - at_ >= static_cast<ptrdiff_t>(s.size()));
    if (!s.empty()) std::memcpy(at_, s.data(), s.size());
    at_ += s.size();
  }
  void String(std::string_view s) {
    Varint(s.size());
    Bytes(s);
  }
  // The string's size so far: where the next byte goes.
  size_t offset() const { return static_cast<size_t>(at_ - out_.data()); }

 private:
  std::string& out_;
  char* at_;
  char* end_;
};

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// Differences and sums in two's complement, so that extreme values (given
// ids and stamps, a damaged row) wrap instead of overflowing.
int64_t WrapSub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}
int64_t WrapAdd(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}

// Reads what the Put functions wrote; a truncated or malformed input sets
// ok() false and yields zeros (the caller reports corruption).
class Decoder {
 public:
  explicit Decoder(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) break;
      auto byte = static_cast<uint8_t>(data_[pos_++]);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return v;
    }
    ok_ = false;
    pos_ = data_.size();
    return 0;
  }
  std::string_view Bytes(size_t n) {
    if (n > data_.size() - pos_) {
      ok_ = false;
      pos_ = data_.size();
      return {};
    }
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view String() { return Bytes(Varint()); }
  uint8_t Byte() {
    std::string_view b = Bytes(1);
    return b.empty() ? 0 : static_cast<uint8_t>(b.front());
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Error Corrupt(std::string_view what) {
  return MakeError(Errc::kInternal, "the archive is damaged: " + std::string(what) + " cannot be decoded");
}

// A chunk's record of one message: id, stamp, each owner's fields, then the
// stanza. Appends to `chunk` and returns the stanza's offset in it; if
// `fields` is given, fields[i] receives the offsets of entries[i]'s peer,
// resource and origin-id in it.
// At least the bytes AppendRecord appends for a message.
size_t RecordBound(std::string_view stanza, std::span<const ArchiveBatch::Entry> entries) {
  constexpr size_t kVarint = Appender::kMaxVarint;
  size_t n = 4 * kVarint + stanza.size();
  for (const ArchiveBatch::Entry& entry : entries) {
    n += 4 * kVarint + 1 + entry.username.size() + entry.peer.size() + entry.peer_resource.size() +
         entry.origin_id.size();
  }
  return n;
}

size_t AppendRecord(std::string& chunk, int64_t id, int64_t stamp_ms, std::string_view stanza,
                    std::span<const ArchiveBatch::Entry> entries, std::array<size_t, 3>* fields = nullptr) {
  Appender out(chunk, RecordBound(stanza, entries));
  out.Varint(static_cast<uint64_t>(id));
  out.Varint(ZigZag(stamp_ms));
  out.Varint(entries.size());
  for (const ArchiveBatch::Entry& entry : entries) {
    out.String(entry.username);
    out.Varint(entry.peer.size());
    if (fields != nullptr) (*fields)[0] = out.offset();
    out.Bytes(entry.peer);
    out.Varint(entry.peer_resource.size());
    if (fields != nullptr) (*fields)[1] = out.offset();
    out.Bytes(entry.peer_resource);
    out.Byte(entry.outgoing ? '\1' : '\0');
    const std::string_view origin = entry.outgoing ? entry.origin_id : std::string_view();
    out.Varint(origin.size());
    if (fields != nullptr) (*fields++)[2] = out.offset();
    out.Bytes(origin);
  }
  out.Varint(stanza.size());
  const size_t offset = out.offset();
  out.Bytes(stanza);
  return offset;
}

// An Archive call's entries as views into it.
std::vector<ArchiveBatch::Entry> EntryViews(const std::vector<ArchiveEntry>& entries) {
  std::vector<ArchiveBatch::Entry> views;
  views.reserve(entries.size());
  for (const ArchiveEntry& e : entries) {
    views.push_back(
        {e.username, e.message.peer, e.message.peer_resource, e.message.outgoing, e.message.origin_id});
  }
  return views;
}

// Calls fn(owner, posting) for every owner entry of every record in a chunk.
template <class Fn>
Result<void> DecodeChunk(int64_t chunk_id, std::string_view data, Fn&& fn) {
  Decoder in(data);
  while (!in.done()) {
    const auto id = static_cast<int64_t>(in.Varint());
    const int64_t stamp = UnZigZag(in.Varint());
    const uint64_t owners = in.Varint();
    if (!in.ok() || owners > data.size()) return Corrupt("a log chunk");
    struct Owner {
      std::string_view username, peer, resource, origin;
      bool outgoing;
    };
    std::vector<Owner> list;
    list.reserve(owners);
    for (uint64_t i = 0; i < owners; ++i) {
      Owner o;
      o.username = in.String();
      o.peer = in.String();
      o.resource = in.String();
      o.outgoing = in.Bytes(1) == std::string_view("\1", 1);
      o.origin = in.String();
      list.push_back(o);
    }
    const uint64_t length = in.Varint();
    const size_t offset = in.pos();
    in.Bytes(length);
    if (!in.ok()) return Corrupt("a log chunk");
    for (const Owner& o : list) {
      ArchiveLog::Posting p;
      p.id = id;
      p.stamp_ms = stamp;
      p.chunk = chunk_id;
      p.offset = static_cast<uint32_t>(offset);
      p.length = static_cast<uint32_t>(length);
      p.outgoing = o.outgoing;
      p.peer = o.peer;
      p.peer_resource = o.resource;
      p.origin_id = o.origin;
      fn(o.username, std::move(p));
    }
  }
  return {};
}

// A posting row, format 2 (schema 11): a 0 byte, the row's distinct peers
// and resources, then its entries in id order: the id as a delta from the
// previous one, the stamp against the id's millisecond (the same for ids
// the store assigns), the chunk against the id, offset, length, flags
// (outgoing, has an origin-id), the peer and the resource as indexes into
// the row's lists, and the origin-id if there is one. An owner mostly talks
// to a few peers, so an entry is about 14 bytes, not 40.
// Format 1 (schema 10) spelled every field out in every entry and started
// with the first id's varint, which is never a 0 byte; it is still read.
constexpr uint8_t kRowFormat2 = 0;
constexpr uint8_t kPostingOutgoing = 1;
constexpr uint8_t kPostingOrigin = 2;

// The index of `s` in `list`, appending it if new.
size_t Intern(std::vector<std::string_view>& list, std::string_view s) {
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i] == s) return i;
  }
  list.push_back(s);
  return list.size() - 1;
}

std::string EncodeRow(const std::vector<ArchiveLog::Posting>& entries, size_t begin, size_t end) {
  constexpr size_t kVarint = Appender::kMaxVarint;
  std::vector<std::string_view> peers, resources;
  std::string body;
  size_t bound = 0;
  for (size_t i = begin; i < end; ++i) bound += 7 * kVarint + 1 + kVarint + entries[i].origin_id.size();
  {
    Appender out(body, bound);
    int64_t prev = 0;
    for (size_t i = begin; i < end; ++i) {
      const ArchiveLog::Posting& p = entries[i];
      out.Varint(static_cast<uint64_t>(WrapSub(p.id, prev)));
      prev = p.id;
      out.Varint(ZigZag(WrapSub(p.stamp_ms, p.id / 1000)));
      out.Varint(ZigZag(WrapSub(p.id, p.chunk)));
      out.Varint(p.offset);
      out.Varint(p.length);
      const bool origin = !p.origin_id.empty();
      out.Byte(static_cast<char>((p.outgoing ? kPostingOutgoing : 0) | (origin ? kPostingOrigin : 0)));
      out.Varint(Intern(peers, p.peer));
      out.Varint(Intern(resources, p.peer_resource));
      if (origin) out.String(p.origin_id);
    }
  }
  size_t head = 1 + 2 * kVarint;
  for (std::string_view peer : peers) head += kVarint + peer.size();
  for (std::string_view resource : resources) head += kVarint + resource.size();
  std::string row;
  row.reserve(head + body.size());
  {
    Appender out(row, head);
    out.Byte(static_cast<char>(kRowFormat2));
    out.Varint(peers.size());
    for (std::string_view peer : peers) out.String(peer);
    out.Varint(resources.size());
    for (std::string_view resource : resources) out.String(resource);
  }
  row += body;
  return row;
}

// The postings point into `data`, which must outlive them (so a temporary
// string is refused).
Result<std::vector<ArchiveLog::Posting>> DecodeRow(std::string&&) = delete;
Result<std::vector<ArchiveLog::Posting>> DecodeRow(std::string_view data) {
  std::vector<ArchiveLog::Posting> entries;
  Decoder in(data);
  int64_t prev = 0;
  if (!data.empty() && static_cast<uint8_t>(data.front()) == kRowFormat2) {
    in.Bytes(1);
    auto read_list = [&](std::vector<std::string_view>& list) {
      const uint64_t n = in.Varint();
      if (n > data.size()) return false;
      list.reserve(n);
      for (uint64_t i = 0; i < n && in.ok(); ++i) list.push_back(in.String());
      return in.ok();
    };
    std::vector<std::string_view> peers, resources;
    if (!read_list(peers) || !read_list(resources)) return Corrupt("a posting row");
    entries.reserve(ArchiveLog::kRowEntries);
    while (!in.done()) {
      ArchiveLog::Posting p;
      p.id = WrapAdd(prev, static_cast<int64_t>(in.Varint()));
      prev = p.id;
      p.stamp_ms = WrapAdd(p.id / 1000, UnZigZag(in.Varint()));
      p.chunk = WrapSub(p.id, UnZigZag(in.Varint()));
      p.offset = static_cast<uint32_t>(in.Varint());
      p.length = static_cast<uint32_t>(in.Varint());
      const uint8_t flags = in.Byte();
      p.outgoing = (flags & kPostingOutgoing) != 0;
      const uint64_t peer = in.Varint();
      const uint64_t resource = in.Varint();
      if (!in.ok() || peer >= peers.size() || resource >= resources.size()) return Corrupt("a posting row");
      p.peer = peers[peer];
      p.peer_resource = resources[resource];
      if ((flags & kPostingOrigin) != 0) p.origin_id = in.String();
      if (!in.ok()) return Corrupt("a posting row");
      entries.push_back(std::move(p));
    }
    return entries;
  }
  while (!in.done()) {
    ArchiveLog::Posting p;
    p.id = WrapAdd(prev, static_cast<int64_t>(in.Varint()));
    prev = p.id;
    p.stamp_ms = UnZigZag(in.Varint());
    p.chunk = WrapSub(p.id, UnZigZag(in.Varint()));
    p.offset = static_cast<uint32_t>(in.Varint());
    p.length = static_cast<uint32_t>(in.Varint());
    p.outgoing = in.Bytes(1) == std::string_view("\1", 1);
    p.peer = in.String();
    p.peer_resource = in.String();
    p.origin_id = in.String();
    if (!in.ok()) return Corrupt("a posting row");
    entries.push_back(std::move(p));
  }
  return entries;
}

Result<void> InsertRow(Connection& conn, const std::string& owner,
                       const std::vector<ArchiveLog::Posting>& entries, size_t begin, size_t end) {
  auto stmt = conn.Prepare(
      "INSERT INTO archive_index (username, last_id, first_id, count, entries) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, owner);
  stmt->BindInt(2, entries[end - 1].id);
  stmt->BindInt(3, entries[begin].id);
  stmt->BindInt(4, static_cast<int64_t>(end - begin));
  stmt->BindBlob(5, EncodeRow(entries, begin, end));
  return stmt->Run();
}

Result<void> InsertRows(Connection& conn, const std::string& owner,
                        const std::vector<ArchiveLog::Posting>& entries) {
  for (size_t begin = 0; begin < entries.size(); begin += ArchiveLog::kRowEntries) {
    const size_t end = std::min(entries.size(), begin + ArchiveLog::kRowEntries);
    if (auto r = InsertRow(conn, owner, entries, begin, end); !r.ok()) return r;
  }
  return {};
}

Result<void> DeleteRow(Connection& conn, const std::string& owner, int64_t last_id) {
  auto stmt = conn.Prepare("DELETE FROM archive_index WHERE username = ?1 AND last_id = ?2");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, owner);
  stmt->BindInt(2, last_id);
  return stmt->Run();
}

// Records that the owner's entries below `below_id` are gone, for when the
// chunks above the mark are read back (archive_erased).
Result<void> RecordErased(Connection& conn, const std::string& owner, int64_t below_id) {
  auto stmt = conn.Prepare(
      "INSERT INTO archive_erased (username, below_id) VALUES (?1, ?2)"
      " ON CONFLICT (username) DO UPDATE SET below_id = max(below_id, excluded.below_id)");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, owner);
  stmt->BindInt(2, below_id);
  return stmt->Run();
}

// An owner's rows cover disjoint id ranges, so the rows holding ids below
// `id` are those with last_id < id and at most one more: the first with
// last_id >= id. Returns that row's last_id (kNoId if there is none), the
// bound to give a range scan on the primary key.
Result<int64_t> RowsBelowBound(Connection& conn, const std::string& owner, int64_t id) {
  if (id == std::numeric_limits<int64_t>::max()) return id;
  auto stmt = conn.Prepare(
      "SELECT last_id FROM archive_index WHERE username = ?1 AND last_id >= ?2 ORDER BY last_id LIMIT 1");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, owner);
  stmt->BindInt(2, id);
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  int64_t bound = *row ? stmt->ColumnInt(0) : std::numeric_limits<int64_t>::max();
  stmt->Reset();
  return bound;
}

// A chunk is two rows: its bookkeeping in archive_log, which index runs
// and pruning update, and its bytes in archive_log_data, written once (an
// UPDATE of a row rewrites all of it, overflow pages included).
Result<void> InsertChunk(Connection& conn, int64_t first_id, int64_t last_id, int64_t live,
                         std::string_view data) {
  auto meta = conn.Prepare("INSERT INTO archive_log (first_id, last_id, live) VALUES (?1, ?2, ?3)");
  if (!meta.ok()) return meta.error();
  meta->BindInt(1, first_id);
  meta->BindInt(2, last_id);
  meta->BindInt(3, live);
  if (auto r = meta->Run(); !r.ok()) return r;
  auto bytes = conn.Prepare("INSERT INTO archive_log_data (first_id, data) VALUES (?1, ?2)");
  if (!bytes.ok()) return bytes.error();
  bytes->BindInt(1, first_id);
  bytes->BindBlob(2, data);
  return bytes->Run();
}

Result<int64_t> ReadInt(Connection& conn, std::string_view sql) {
  auto stmt = conn.Prepare(sql);
  if (!stmt.ok()) return stmt.error();
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  int64_t value = *row ? stmt->ColumnInt(0) : 0;
  stmt->Reset();
  return value;
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

constexpr char kGenerationSql[] = "SELECT value FROM archive_state WHERE key = 'generation'";
// Chunks with a first id above it have entries an index run has not
// written as rows (all but those of given ids, which go to rows at once).
constexpr char kIndexedThroughSql[] = "SELECT value FROM archive_state WHERE key = 'indexed_through'";

// The owner's rows, newest first (query-plan test): retransmissions are
// looked for in the first few.
extern const char kNewestRowsSql[];
const char kNewestRowsSql[] = "SELECT entries FROM archive_index WHERE username = ?1 ORDER BY last_id DESC";

// ---- Conversion from version 9 ----

Result<void> ArchiveLog::ConvertV9(Connection& conn) {
  auto exists =
      ReadInt(conn, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'archive_messages'");
  if (!exists.ok()) return exists.error();
  if (*exists == 0) return {};
  auto stmt = conn.Prepare(
      "SELECT m.id, m.stamp_ms, m.stanza, a.username, a.peer, a.peer_resource, a.outgoing, a.origin_id"
      " FROM archive_messages AS m JOIN archive AS a ON a.id = m.id ORDER BY m.id, a.username");
  if (!stmt.ok()) return stmt.error();
  std::string chunk;
  int64_t chunk_first = 0, chunk_last = 0, chunk_live = 0;
  // Each owner's entries not written yet, and the strings they point into.
  struct Pending {
    std::vector<Posting> entries;
    std::deque<std::string> strings;
  };
  std::unordered_map<std::string, Pending> pending;
  auto write_chunk = [&]() -> Result<void> {
    if (chunk.empty()) return {};
    auto inserted = InsertChunk(conn, chunk_first, chunk_last, chunk_live, chunk);
    chunk.clear();
    chunk_live = 0;
    return inserted;
  };
  auto write_owner = [&](const std::string& owner, Pending& list) -> Result<void> {
    if (list.entries.empty()) return {};
    if (auto r = InsertRows(conn, owner, list.entries); !r.ok()) return r;
    list.entries.clear();
    list.strings.clear();
    return {};
  };
  // One message's rows arrive together (ORDER BY m.id).
  std::vector<ArchiveEntry> message;
  auto flush_message = [&]() -> Result<void> {
    if (message.empty()) return {};
    const ArchivedMessage& first = message.front().message;
    if (chunk.size() >= kChunkBytes) {
      if (auto r = write_chunk(); !r.ok()) return r;
    }
    if (chunk.empty()) chunk_first = first.id;
    chunk_last = first.id;
    const size_t offset = AppendRecord(chunk, first.id, first.stamp_ms, first.stanza, EntryViews(message));
    for (const ArchiveEntry& entry : message) {
      Posting p;
      p.id = first.id;
      p.stamp_ms = first.stamp_ms;
      p.chunk = chunk_first;
      p.offset = static_cast<uint32_t>(offset);
      p.length = static_cast<uint32_t>(first.stanza.size());
      p.outgoing = entry.message.outgoing;
      auto& list = pending[entry.username];
      p.peer = list.strings.emplace_back(entry.message.peer);
      p.peer_resource = list.strings.emplace_back(entry.message.peer_resource);
      if (entry.message.outgoing) p.origin_id = list.strings.emplace_back(entry.message.origin_id);
      list.entries.push_back(p);
      ++chunk_live;
      if (list.entries.size() >= kRowEntries) {
        if (auto r = write_owner(entry.username, list); !r.ok()) return r;
      }
    }
    message.clear();
    return {};
  };
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) break;
    ArchiveEntry entry;
    entry.username = stmt->ColumnText(3);
    entry.message.id = stmt->ColumnInt(0);
    entry.message.stamp_ms = stmt->ColumnInt(1);
    entry.message.stanza = stmt->ColumnText(2);
    entry.message.peer = stmt->ColumnText(4);
    entry.message.peer_resource = stmt->ColumnText(5);
    entry.message.outgoing = stmt->ColumnInt(6) != 0;
    entry.message.origin_id = stmt->ColumnText(7);
    if (!message.empty() && message.front().message.id != entry.message.id) {
      if (auto r = flush_message(); !r.ok()) return r;
    }
    message.push_back(std::move(entry));
  }
  if (auto r = flush_message(); !r.ok()) return r;
  if (auto r = write_chunk(); !r.ok()) return r;
  for (auto& [owner, entries] : pending) {
    if (auto r = write_owner(owner, entries); !r.ok()) return r;
  }
  auto mark = conn.Prepare(
      "UPDATE archive_state SET value = (SELECT coalesce(max(last_id), 0) FROM archive_log)"
      " WHERE key = 'indexed_through'");
  if (!mark.ok()) return mark.error();
  if (auto r = mark->Run(); !r.ok()) return r;
  return conn.Exec("DROP TRIGGER archive_release; DROP TABLE archive; DROP TABLE archive_messages;");
}

// ---- The tail ----

Result<void> ArchiveLog::ReadUnindexed(Connection& conn, OwnerMap<OwnerTail>& tail, size_t& size,
                                       Buffers& buffers) {
  std::unordered_map<std::string, int64_t> erased;
  {
    auto stmt = conn.Prepare("SELECT username, below_id FROM archive_erased");
    if (!stmt.ok()) return stmt.error();
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      erased[stmt->ColumnText(0)] = stmt->ColumnInt(1);
    }
  }
  size = 0;
  auto indexed_through = ReadInt(conn, kIndexedThroughSql);
  if (!indexed_through.ok()) return indexed_through.error();
  auto stmt =
      conn.Prepare("SELECT first_id, data FROM archive_log_data WHERE first_id > ?1 ORDER BY first_id");
  if (!stmt.ok()) return stmt.error();
  stmt->BindInt(1, *indexed_through);
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) break;
    const int64_t chunk_id = stmt->ColumnInt(0);
    ChunkBuffer* buffer = NewBuffer(buffers);
    buffer->bytes = stmt->ColumnBlobView(1);
    auto decoded = DecodeChunk(chunk_id, buffer->bytes, [&](std::string_view owner, Posting p) {
      std::string name(owner);
      if (auto it = erased.find(name); it != erased.end() && p.id < it->second) return;
      OwnerTail& t = tail[name];
      p.buffer = buffer;
      ++buffer->refs;
      t.AddOrigin(p);
      t.entries.push_back(p);
      ++size;
    });
    if (!decoded.ok()) return decoded;
  }
  // Chunks are read in first-id order; explicit ids can still interleave.
  for (auto& [owner, t] : tail) {
    std::stable_sort(t.entries.begin(), t.entries.end(),
                     [](const Posting& a, const Posting& b) { return a.id < b.id; });
  }
  // An index run that did not finish (a crash, or another process's run)
  // wrote some owners' rows without marking their chunks: those entries
  // are in rows already, and stay only there.
  for (auto it = tail.begin(); it != tail.end();) {
    OwnerTail& t = it->second;
    auto stmt = conn.Prepare("SELECT entries FROM archive_index WHERE username = ?1 AND last_id >= ?2");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, it->first);
    stmt->BindInt(2, t.entries.front().id);
    std::vector<int64_t> indexed;
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      auto entries = DecodeRow(stmt->ColumnBlobView(0));
      if (!entries.ok()) return entries.error();
      for (const Posting& p : *entries) indexed.push_back(p.id);
    }
    if (!indexed.empty()) {
      std::sort(indexed.begin(), indexed.end());
      const size_t before = t.entries.size();
      std::erase_if(t.entries, [&](const Posting& p) {
        if (!std::binary_search(indexed.begin(), indexed.end(), p.id)) return false;
        t.ForgetOrigin(p);
        --p.buffer->refs;
        return true;
      });
      size -= before - t.entries.size();
    }
    it = t.entries.empty() ? tail.erase(it) : std::next(it);
  }
  std::erase_if(buffers, [](const ChunkBuffer& b) { return b.refs == 0; });
  return {};
}

Result<void> ArchiveLog::Load(Connection& conn) {
  // Everything below from one snapshot: at open (outside a transaction)
  // another process may be writing meanwhile.
  const bool own_transaction = conn.InAutocommit();
  if (own_transaction) {
    if (auto r = conn.Exec("BEGIN"); !r.ok()) return r;
  }
  auto loaded = LoadInSnapshot(conn);
  if (own_transaction && !conn.InAutocommit()) (void)conn.Exec(loaded.ok() ? "COMMIT" : "ROLLBACK");
  return loaded;
}

Result<void> ArchiveLog::LoadInSnapshot(Connection& conn) {
  OwnerMap<OwnerTail> tail;
  size_t size = 0;
  Buffers buffers;
  if (auto r = ReadUnindexed(conn, tail, size, buffers); !r.ok()) return r;
  run_active_ = false;
  run_owners_.clear();
  run_next_ = slice_start_ = 0;
  auto version = ReadInt(conn, "PRAGMA data_version");
  if (!version.ok()) return version.error();
  auto generation = ReadInt(conn, kGenerationSql);
  if (!generation.ok()) return generation.error();
  generation_ = *generation;
  {
    std::unique_lock lock(mu_);
    tail_ = std::move(tail);
    tail_size_ = size;
  }
  // The old tail's chunks stay only for the batch's postings (a reload in
  // the middle of a transaction, EraseBelow): the new tail has its own.
  std::unordered_set<const ChunkBuffer*> kept{chunk_};
  for (const Op& op : ops_) {
    if (!op.erase) kept.insert(op.posting.buffer);
  }
  for (auto b = buffers_.begin(); b != buffers_.end();) {
    if (!kept.contains(&*b)) {
      b = buffers_.erase(b);
      continue;
    }
    b->refs = 0;
    ++b;
  }
  std::erase_if(closed_, [&](const ChunkBuffer* b) { return !kept.contains(b); });
  unreferenced_.clear();
  buffers_.splice(buffers_.end(), buffers);
  data_version_ = *version;
  last_id_ = -1;
  known_owners_.clear();
  ClearOriginFilters();
  tail_stale_ = false;
  return {};
}

Result<void> ArchiveLog::BeginTransaction(Connection& conn) {
  auto version = ReadInt(conn, "PRAGMA data_version");
  if (!version.ok()) return version.error();
  if (*version == data_version_) return {};
  // Another connection committed: the CLI adding an account (nothing to do
  // but forget which accounts exist) or deleting one, which changes the
  // archive and its generation: then the tail is read again. A process
  // that does not archive (the CLI) sees the server's commits here, which
  // do not move the generation: it reads the tail again before it erases.
  known_owners_.clear();
  auto generation = ReadInt(conn, kGenerationSql);
  if (!generation.ok()) return generation.error();
  if (*generation == generation_) {
    data_version_ = *version;
    if (!archived_here_) tail_stale_ = true;
    return {};
  }
  return Load(conn);  // sets data_version_ only once it has read the tail
}

Result<void> ArchiveLog::BumpGeneration(Connection& conn) {
  auto stmt =
      conn.Prepare("UPDATE archive_state SET value = value + 1 WHERE key = 'generation' RETURNING value");
  if (!stmt.ok()) return stmt.error();
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  generation_ = *row ? stmt->ColumnInt(0) : -1;
  stmt->Reset();
  return {};
}

ArchiveLog::Mark ArchiveLog::mark() const {
  return Mark{ops_.size(), chunk_->bytes.size(), chunk_live_, chunk_last_id_, chunks_written_};
}

void ArchiveLog::Rewind(const Mark& mark) {
  bool erasures = false;
  for (size_t i = mark.ops; i < ops_.size(); ++i) {
    const Op& op = ops_[i];
    erasures = erasures || op.erase;
    if (op.erase || !op.posting.outgoing || op.posting.origin_id.empty()) continue;
    if (auto o = batch_origins_.find(BatchOriginKey(op.owner, OriginHash(op.posting.origin_id)));
        o != batch_origins_.end() && o->second == i) {
      batch_origins_.erase(o);
    }
  }
  ops_.resize(mark.ops);
  if (erasures) {
    batch_erased_.clear();
    for (const Op& op : ops_) {
      if (op.erase) batch_erased_[op.owner] = std::max(batch_erased_[op.owner], op.below_id);
    }
  }
  if (chunks_written_ != mark.chunks_written) {
    // The chunk the mark points into was written and cleared since: its
    // bytes cannot be brought back, and ROLLBACK TO may have undone the
    // write. EndTransaction fails the transaction instead.
    unrewindable_ = true;
    return;
  }
  chunk_->bytes.resize(mark.chunk_bytes);  // no posting left points past it
  chunk_live_ = mark.chunk_live;
  chunk_last_id_ = mark.chunk_last_id;
  if (chunk_->bytes.empty()) chunk_first_id_ = 0;
}

Result<void> ArchiveLog::WriteChunk(Connection& conn) {
  std::string& bytes = chunk_->bytes;
  if (!bytes.empty()) ++chunks_written_;
  if (!bytes.empty() && chunk_live_ > 0) {
    if (auto r = InsertChunk(conn, chunk_first_id_, chunk_last_id_, chunk_live_, bytes); !r.ok()) return r;
  }
  if (!bytes.empty()) {
    // The batch's postings point into it: kept while they or the tail's do.
    if (bytes.capacity() > 2 * bytes.size()) {
      // A small chunk (a small group commit): its postings move to a copy
      // of its size, and the buffer takes the next chunk.
      ChunkBuffer* fit = NewBuffer(buffers_);
      fit->bytes.assign(bytes);
      const char* from = bytes.data();
      const char* to = fit->bytes.data();
      auto moved = [&](std::string_view v) { return std::string_view(to + (v.data() - from), v.size()); };
      for (Op& op : ops_) {
        Posting& p = op.posting;
        if (op.erase || p.buffer != chunk_) continue;
        p.peer = moved(p.peer);
        p.peer_resource = moved(p.peer_resource);
        p.origin_id = moved(p.origin_id);
        p.buffer = fit;
      }
      bytes.clear();
      closed_.push_back(fit);
    } else {
      closed_.push_back(chunk_);
      chunk_ = NewBuffer(buffers_);
    }
  }
  chunk_first_id_ = chunk_last_id_ = chunk_live_ = 0;
  return {};
}

ArchiveLog::ChunkBuffer* ArchiveLog::NewBuffer(Buffers& buffers) {
  ChunkBuffer& b = buffers.emplace_back();
  b.self = std::prev(buffers.end());
  return &b;
}

void ArchiveLog::FreeUnreferenced() {
  std::vector<ChunkBuffer*> candidates = std::move(unreferenced_);
  candidates.insert(candidates.end(), closed_.begin(), closed_.end());
  unreferenced_.clear();
  closed_.clear();
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  for (ChunkBuffer* b : candidates) {
    if (b->refs == 0 && b != chunk_) buffers_.erase(b->self);
  }
}

Result<void> ArchiveLog::EndTransaction(Connection& conn) {
  if (unrewindable_) {
    return MakeError(Errc::kInternal,
                     "a failed archive write in this transaction cannot be undone on its own");
  }
  return WriteChunk(conn);
}

void ArchiveLog::ApplyOps(std::vector<Op>& ops) {
  for (Op& op : ops) {
    if (op.erase) {
      auto it = tail_.find(op.owner);
      if (it == tail_.end()) continue;
      OwnerTail& t = it->second;
      auto keep_from = std::find_if(t.entries.begin(), t.entries.end(),
                                    [&](const Posting& p) { return p.id >= op.below_id; });
      for (auto e = t.entries.begin(); e != keep_from; ++e) {
        t.ForgetOrigin(*e);
        Unref(*e);
      }
      tail_size_ -= static_cast<size_t>(keep_from - t.entries.begin());
      t.entries.erase(t.entries.begin(), keep_from);
      if (t.entries.empty()) tail_.erase(it);
      continue;
    }
    OwnerTail& t = tail_[op.owner];
    t.AddOrigin(op.posting);
    if (op.posting.buffer != nullptr) ++op.posting.buffer->refs;
    if (t.entries.empty() || t.entries.back().id < op.posting.id) {
      t.entries.push_back(std::move(op.posting));
    } else {
      auto at = std::lower_bound(t.entries.begin(), t.entries.end(), op.posting.id,
                                 [](const Posting& p, int64_t id) { return p.id < id; });
      t.entries.insert(at, std::move(op.posting));
    }
    ++tail_size_;
  }
}

void ArchiveLog::Committed() {
  if (!ops_.empty()) {
    std::unique_lock lock(mu_);
    ApplyOps(ops_);
  }
  ops_.clear();
  batch_origins_.clear();
  batch_erased_.clear();
  chunks_written_ = 0;
  unrewindable_ = false;
  Rewind(Mark{});
  FreeUnreferenced();
}

void ArchiveLog::Aborted() {
  // A COMMIT that failed may still have reached the disk, and a bump may
  // have been rolled back: the next transaction reads the tail again.
  generation_ = -1;
  data_version_ = -1;
  ops_.clear();
  batch_origins_.clear();
  batch_erased_.clear();
  chunks_written_ = 0;
  unrewindable_ = false;
  Rewind(Mark{});
  FreeUnreferenced();  // the chunks this transaction closed
  known_owners_.clear();
  ClearOriginFilters();  // one may have been filled from rows the rollback brought back
}

// ---- Writing ----

Result<void> ArchiveLog::LoadLastId(Connection& conn) {
  if (last_id_ >= 0) return {};
  auto max = ReadInt(conn, "SELECT coalesce(max(last_id), 0) FROM archive_log");
  if (!max.ok()) return max.error();
  // The chunk being filled is written only when the transaction ends: after
  // a reload in the middle of one (LoadInSnapshot), the ids it already
  // handed out are only here. Missing them, an index run would stop short
  // of their chunk, and the one at close would never finish.
  last_id_ = std::max(*max, chunk_->bytes.empty() ? int64_t{0} : chunk_last_id_);
  return {};
}

Result<bool> ArchiveLog::OwnerExists(Connection& conn, std::string_view owner) {
  if (known_owners_.contains(owner)) return true;
  auto stmt = conn.Prepare("SELECT 1 FROM accounts WHERE username = ?1");
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, owner);
  auto row = stmt->Step();
  if (!row.ok()) return row.error();
  stmt->Reset();
  if (*row) known_owners_.emplace(owner);
  return *row;
}

Result<std::optional<int64_t>> ArchiveLog::FindOrigin(Connection& conn, std::string_view owner,
                                                      std::string_view origin_id) {
  const uint64_t hash = OriginHash(origin_id);
  int64_t erased_below = std::numeric_limits<int64_t>::min();
  if (auto e = batch_erased_.find(owner); e != batch_erased_.end()) erased_below = e->second;
  if (auto o = batch_origins_.find(BatchOriginKey(owner, hash));
      o != batch_origins_.end() && o->second < ops_.size()) {
    const Op& op = ops_[o->second];
    if (!op.erase && op.owner == owner && op.posting.origin_id == origin_id &&
        op.posting.id >= erased_below) {
      return std::optional<int64_t>(op.posting.id);
    }
  }
  if (auto t = tail_.find(owner); t != tail_.end()) {
    if (auto id = t->second.FindOrigin(hash, origin_id); id && *id >= erased_below) return id;
  }
  // The rows: the filter answers "not there" for almost every new message
  // without reading them. A hash it holds is checked against the rows
  // (they reflect this batch's erasures already).
  auto filter = OriginFilter(conn, owner);
  if (!filter.ok()) return filter.error();
  if (!std::binary_search((*filter)->begin(), (*filter)->end(), hash)) {
    return std::optional<int64_t>();
  }
  // The oldest copy in the window, as the tail and PostgreSQL answer.
  std::optional<int64_t> found;
  auto read = ForNewestRows(conn, owner, [&](const Posting& p) {
    if (p.outgoing && p.origin_id == origin_id) found = p.id;
    return true;
  });
  if (!read.ok()) return read.error();
  return found;
}

template <class Fn>
Result<void> ArchiveLog::ForNewestRows(Connection& conn, std::string_view owner, Fn&& fn) const {
  auto stmt = conn.Prepare(kNewestRowsSql);
  if (!stmt.ok()) return stmt.error();
  stmt->BindText(1, owner);
  size_t seen = 0;
  while (seen < kOriginWindow) {
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) break;
    auto entries = DecodeRow(stmt->ColumnBlobView(0));
    if (!entries.ok()) return entries.error();
    for (auto p = entries->rbegin(); p != entries->rend(); ++p) {
      if (!fn(*p)) {
        stmt->Reset();
        return {};
      }
    }
    seen += entries->size();
  }
  stmt->Reset();
  return {};
}

Result<const std::vector<uint64_t>*> ArchiveLog::OriginFilter(Connection& conn, std::string_view owner) {
  if (auto f = origin_filters_.find(owner); f != origin_filters_.end()) return &f->second;
  std::vector<uint64_t> hashes;
  auto read = ForNewestRows(conn, owner, [&](const Posting& p) {
    if (p.outgoing && !p.origin_id.empty()) hashes.push_back(OriginHash(p.origin_id));
    return true;
  });
  if (!read.ok()) return read.error();
  std::sort(hashes.begin(), hashes.end());
  hashes.erase(std::unique(hashes.begin(), hashes.end()), hashes.end());
  origin_filter_size_ += hashes.size();
  auto* filter = &origin_filters_.emplace(owner, std::move(hashes)).first->second;
  TrimOriginFilters(owner);
  return filter;
}

void ArchiveLog::AddToOriginFilter(const std::string& owner, const std::vector<Posting>& entries) {
  auto f = origin_filters_.find(owner);
  if (f == origin_filters_.end()) return;  // filled from the rows when it is needed
  std::vector<uint64_t>& hashes = f->second;
  const size_t before = hashes.size();
  for (const Posting& p : entries) {
    if (p.outgoing && !p.origin_id.empty()) hashes.push_back(OriginHash(p.origin_id));
  }
  if (hashes.size() == before) return;
  std::sort(hashes.begin() + static_cast<std::ptrdiff_t>(before), hashes.end());
  std::inplace_merge(hashes.begin(), hashes.begin() + static_cast<std::ptrdiff_t>(before), hashes.end());
  hashes.erase(std::unique(hashes.begin(), hashes.end()), hashes.end());
  origin_filter_size_ += hashes.size() - before;
  // Past twice the window an owner's filter mostly holds entries it no
  // longer covers: it is dropped, and read again from the rows.
  if (hashes.size() > 2 * kOriginWindow) {
    origin_filter_size_ -= hashes.size();
    origin_filters_.erase(f);
    return;
  }
  TrimOriginFilters(owner);
}

void ArchiveLog::TrimOriginFilters(std::string_view keep) {
  if (origin_filter_size_ + origin_filters_.size() <= kOriginFilterBudget) return;
  // Over the budget (a filter's node counts as one hash): other owners'
  // filters go, in the map's order, until half of it is left; they are read
  // again from the rows when their owners next send.
  for (auto f = origin_filters_.begin();
       f != origin_filters_.end() &&
       origin_filter_size_ + origin_filters_.size() > kOriginFilterBudget / 2;) {
    if (f->first == keep) {
      ++f;
      continue;
    }
    origin_filter_size_ -= f->second.size();
    f = origin_filters_.erase(f);
  }
}

Result<bool> ArchiveLog::IdTaken(Connection& conn, int64_t id) const {
  for (const Op& op : ops_) {
    if (!op.erase && op.posting.id == id) return true;
  }
  // Chunks whose range covers the id: with explicit ids that can be more
  // than one (a message's own chunk inside another's range).
  auto stmt = conn.Prepare(
      "SELECT l.first_id, d.data FROM archive_log AS l JOIN archive_log_data AS d ON d.first_id = l.first_id"
      " WHERE l.last_id >= ?1 AND l.first_id <= ?1");
  if (!stmt.ok()) return stmt.error();
  stmt->BindInt(1, id);
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) return false;
    const int64_t chunk_id = stmt->ColumnInt(0);
    if (chunk_id == id) {
      stmt->Reset();
      return true;
    }
    bool found = false;
    auto decoded = DecodeChunk(chunk_id, stmt->ColumnBlobView(1),
                               [&](std::string_view, const Posting& p) { found = found || p.id == id; });
    if (!decoded.ok()) return decoded.error();
    if (found) {
      stmt->Reset();
      return true;
    }
  }
}

Result<ArchiveOutcome> ArchiveLog::Archive(Connection& conn, const std::vector<ArchiveEntry>& entries) {
  if (entries.empty()) return MakeError(Errc::kInvalidArgument, "nothing to archive");
  const ArchivedMessage& first = entries.front().message;
  if (first.id < 0) return MakeError(Errc::kInvalidArgument, "archive ids must be positive");
  for (size_t i = 0; i < entries.size(); ++i) {
    const ArchivedMessage& m = entries[i].message;
    if (m.id != first.id || m.stamp_ms != first.stamp_ms || (!m.stanza.empty() && m.stanza != first.stanza)) {
      return MakeError(Errc::kInvalidArgument, "the entries of one Archive call must be one message");
    }
    for (size_t j = 0; j < i; ++j) {
      if (entries[j].username == entries[i].username) {
        return MakeError(Errc::kConflict, "archive id " + std::to_string(first.id) + " already used for '" +
                                              entries[i].username + "'");
      }
    }
  }
  return Archive(conn, first.id, first.stamp_ms, first.stanza, EntryViews(entries));
}

Result<ArchiveOutcome> ArchiveLog::Archive(Connection& conn, int64_t id, int64_t stamp_ms,
                                           std::string_view stanza,
                                           std::span<const ArchiveBatch::Entry> entries) {
  if (entries.empty()) return MakeError(Errc::kInvalidArgument, "nothing to archive");
  if (id < 0) return MakeError(Errc::kInvalidArgument, "archive ids must be positive");
  for (size_t i = 0; i < entries.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (entries[j].username == entries[i].username) {
        return MakeError(Errc::kConflict, "archive id " + std::to_string(id) + " already used for '" +
                                              std::string(entries[i].username) + "'");
      }
    }
  }
  // A retransmission is recognised by its sender's origin-id before
  // anything is written, so the batch stays all or none.
  for (const ArchiveBatch::Entry& entry : entries) {
    if (!entry.outgoing || entry.origin_id.empty()) continue;
    auto found = FindOrigin(conn, entry.username, entry.origin_id);
    if (!found.ok()) return found.error();
    if (*found) {
      ArchiveOutcome outcome;
      outcome.duplicate = true;
      outcome.existing_id = **found;
      return outcome;
    }
  }
  for (const ArchiveBatch::Entry& entry : entries) {
    auto exists = OwnerExists(conn, entry.username);
    if (!exists.ok()) return exists.error();
    if (!*exists) return MakeError(Errc::kNotFound, "no account '" + std::string(entry.username) + "'");
  }
  if (auto r = LoadLastId(conn); !r.ok()) return r.error();
  int64_t chunk_id = 0;
  size_t offset = 0;
  if (id == 0) {
    // A full chunk is written now and the message starts the next: a
    // message is read from its chunk by walking the chunk's overflow pages,
    // so chunks stay small. So is one the record would grow past its
    // capacity: the batch's postings point into it. Nothing after this can
    // fail, so a job that wrote a chunk never needs Rewind to bring it back.
    const size_t bound = RecordBound(stanza, entries);
    const size_t used = chunk_->bytes.size();  // WriteChunk may give chunk_ a new buffer
    if (used > 0 && (used >= kChunkBytes || used + bound > chunk_->bytes.capacity())) {
      if (auto r = WriteChunk(conn); !r.ok()) return r.error();
    }
    if (chunk_->bytes.empty() && chunk_->bytes.capacity() < bound) {
      chunk_->bytes.reserve(std::max(kChunkCapacity, bound));
    }
    // Ids assigned here, on the writer thread, follow commit order: a
    // client that has seen id N live finds every later message after N.
    id = std::max(NowUs(), last_id_ + 1);
    last_id_ = id;
    stamp_ms = id / 1000;
    if (chunk_->bytes.empty()) chunk_first_id_ = id;
    chunk_id = chunk_first_id_;
    chunk_last_id_ = id;
    field_offsets_.resize(entries.size());
    [[maybe_unused]] const char* data = chunk_->bytes.data();
    offset = AppendRecord(chunk_->bytes, id, stamp_ms, stanza, entries, field_offsets_.data());
    assert(chunk_->bytes.data() == data);  // not moved: the batch's postings point into it
    chunk_live_ += static_cast<int64_t>(entries.size());
  } else {
    // A given id (copies, tests): a chunk of its own, and its entries go
    // straight to rows (the tail holds only entries of chunks above the
    // indexed_through mark, which a given id may be anywhere below).
    auto taken = IdTaken(conn, id);
    if (!taken.ok()) return taken.error();
    if (*taken) return MakeError(Errc::kConflict, "archive id " + std::to_string(id) + " is already used");
    std::string data;
    offset = AppendRecord(data, id, stamp_ms, stanza, entries);
    if (auto done = InsertChunk(conn, id, id, static_cast<int64_t>(entries.size()), data); !done.ok()) {
      return done.error();
    }
    last_id_ = std::max(last_id_, id);
    for (const ArchiveBatch::Entry& entry : entries) {
      const std::vector<Posting> one{MakePosting(entry, id, stamp_ms, id, offset, stanza.size())};
      if (auto r = WriteRows(conn, std::string(entry.username), one); !r.ok()) return r.error();
    }
    ArchiveOutcome outcome;
    outcome.id = id;
    return outcome;
  }
  // The batch's postings point into the chunk's copy of their strings.
  const char* data = chunk_->bytes.data();
  for (size_t i = 0; i < entries.size(); ++i) {
    const ArchiveBatch::Entry& entry = entries[i];
    Op& op = ops_.emplace_back();
    op.owner = entry.username;
    Posting& p = op.posting;
    p = MakePosting(entry, id, stamp_ms, chunk_id, offset, stanza.size());
    const auto& [peer, resource, origin] = field_offsets_[i];
    p.peer = std::string_view(data + peer, p.peer.size());
    p.peer_resource = std::string_view(data + resource, p.peer_resource.size());
    p.origin_id = std::string_view(data + origin, p.origin_id.size());
    p.buffer = chunk_;
    if (p.outgoing && !p.origin_id.empty())
      batch_origins_[BatchOriginKey(op.owner, OriginHash(p.origin_id))] = ops_.size() - 1;
    archived_here_ = true;
  }
  ArchiveOutcome outcome;
  outcome.id = id;
  return outcome;
}

ArchiveLog::Posting ArchiveLog::MakePosting(const ArchiveBatch::Entry& entry, int64_t id, int64_t stamp_ms,
                                            int64_t chunk, size_t offset, size_t length) {
  Posting p;
  p.id = id;
  p.stamp_ms = stamp_ms;
  p.chunk = chunk;
  p.offset = static_cast<uint32_t>(offset);
  p.length = static_cast<uint32_t>(length);
  p.outgoing = entry.outgoing;
  p.peer = entry.peer;
  p.peer_resource = entry.peer_resource;
  if (p.outgoing) p.origin_id = entry.origin_id;
  return p;
}

std::vector<ArchiveLog::Posting> ArchiveLog::BatchTail(const std::string& owner) const {
  std::vector<Posting> out;
  if (auto t = tail_.find(owner); t != tail_.end()) out = t->second.entries;
  bool sorted = true;
  for (const Op& op : ops_) {
    if (op.owner != owner) continue;
    if (op.erase) {
      std::erase_if(out, [&](const Posting& p) { return p.id < op.below_id; });
    } else {
      if (!out.empty() && out.back().id > op.posting.id) sorted = false;
      out.push_back(op.posting);
    }
  }
  if (!sorted)
    std::sort(out.begin(), out.end(), [](const Posting& a, const Posting& b) { return a.id < b.id; });
  return out;
}

Result<void> ArchiveLog::Release(Connection& conn, const std::map<int64_t, int64_t>& per_chunk) {
  for (const auto& [chunk, n] : per_chunk) {
    if (!chunk_->bytes.empty() && chunk == chunk_first_id_) {
      chunk_live_ -= n;  // the batch's own chunk, not written yet
      continue;
    }
    auto update = conn.Prepare("UPDATE archive_log SET live = live - ?2 WHERE first_id = ?1");
    if (!update.ok()) return update.error();
    update->BindInt(1, chunk);
    update->BindInt(2, n);
    if (auto r = update->Run(); !r.ok()) return r;
    auto drop = conn.Prepare("DELETE FROM archive_log WHERE first_id = ?1 AND live <= 0");
    if (!drop.ok()) return drop.error();
    drop->BindInt(1, chunk);
    if (auto r = drop->Run(); !r.ok()) return r;
    if (conn.Changes() == 0) continue;
    auto bytes = conn.Prepare("DELETE FROM archive_log_data WHERE first_id = ?1");
    if (!bytes.ok()) return bytes.error();
    bytes->BindInt(1, chunk);
    if (auto r = bytes->Run(); !r.ok()) return r;
  }
  return {};
}

Result<int64_t> ArchiveLog::EraseBelow(Connection& conn, const std::string& owner, int64_t below) {
  if (tail_stale_) {
    if (auto r = Load(conn); !r.ok()) return r.error();
  }
  if (auto r = LoadLastId(conn); !r.ok()) return r.error();
  int64_t count = 0;
  std::map<int64_t, int64_t> per_chunk;
  // Rows.
  struct Row {
    int64_t last_id, first_id;
    std::string entries;
  };
  std::vector<Row> rows;
  {
    auto bound = RowsBelowBound(conn, owner, below);
    if (!bound.ok()) return bound.error();
    auto stmt = conn.Prepare(
        "SELECT last_id, first_id, entries FROM archive_index WHERE username = ?1 AND last_id <= ?3"
        " AND first_id < ?2");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, owner);
    stmt->BindInt(2, below);
    stmt->BindInt(3, *bound);
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      rows.push_back(Row{stmt->ColumnInt(0), stmt->ColumnInt(1), stmt->ColumnBlob(2)});
    }
  }
  for (const Row& row : rows) {
    auto entries = DecodeRow(row.entries);
    if (!entries.ok()) return entries.error();
    auto keep_from =
        std::find_if(entries->begin(), entries->end(), [&](const Posting& p) { return p.id >= below; });
    for (auto e = entries->begin(); e != keep_from; ++e) ++per_chunk[e->chunk];
    count += keep_from - entries->begin();
    if (auto r = DeleteRow(conn, owner, row.last_id); !r.ok()) return r.error();
    if (keep_from != entries->end()) {
      entries->erase(entries->begin(), keep_from);
      if (auto r = InsertRow(conn, owner, *entries, 0, entries->size()); !r.ok()) return r.error();
    }
  }
  // The tail, as this batch sees it.
  int64_t from_tail = 0;
  for (const Posting& p : BatchTail(owner)) {
    if (p.id >= below) break;
    ++per_chunk[p.chunk];
    ++from_tail;
  }
  if (from_tail > 0) {
    Op op;
    op.owner = owner;
    op.erase = true;
    op.below_id = below;
    int64_t& erased = batch_erased_[owner];
    erased = std::max(erased, below);
    ops_.push_back(std::move(op));
    count += from_tail;
  }
  if (count > 0) {
    // A restart (or a reload) reads the entries of chunks above the mark
    // back from the chunks: those in the tail, and those of an unfinished
    // index run or of given ids, which were rows. Remember what is gone,
    // without reaching ids not handed out yet.
    if (auto r = RecordErased(conn, owner, std::min(below, last_id_ + 1)); !r.ok()) return r.error();
  }
  if (auto r = Release(conn, per_chunk); !r.ok()) return r.error();
  if (count > 0) {
    if (auto r = BumpGeneration(conn); !r.ok()) return r.error();
  }
  return count;
}

Result<int64_t> ArchiveLog::Prune(Connection& conn, const std::string& username, int64_t before_id,
                                  int64_t keep) {
  if (tail_stale_) {
    if (auto r = Load(conn); !r.ok()) return r.error();
  }
  int64_t below = before_id;
  if (keep >= 0) {
    // The id of the newest entry past the `keep` newest: it and everything
    // older go. Rows are read newest first until the tail and the rows read
    // so far hold more than `keep` entries at or above the row's first id.
    std::vector<int64_t> tail_ids;
    for (const Posting& p : BatchTail(username)) tail_ids.push_back(p.id);
    std::vector<int64_t> row_ids;
    auto stmt =
        conn.Prepare("SELECT first_id, entries FROM archive_index WHERE username = ?1 ORDER BY last_id DESC");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    auto enough = [&](int64_t floor) {
      auto above = tail_ids.end() - std::lower_bound(tail_ids.begin(), tail_ids.end(), floor);
      return static_cast<int64_t>(row_ids.size()) + above > keep;
    };
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      const int64_t first_id = stmt->ColumnInt(0);
      auto entries = DecodeRow(stmt->ColumnBlobView(1));
      if (!entries.ok()) return entries.error();
      for (const Posting& p : *entries) row_ids.push_back(p.id);
      if (enough(first_id)) {
        stmt->Reset();
        break;
      }
    }
    std::vector<int64_t> all = std::move(row_ids);
    all.insert(all.end(), tail_ids.begin(), tail_ids.end());
    std::sort(all.begin(), all.end(), std::greater<>());
    if (static_cast<int64_t>(all.size()) > keep) below = std::max(below, all[static_cast<size_t>(keep)] + 1);
  }
  return EraseBelow(conn, username, below);
}

Result<void> ArchiveLog::DeleteOwner(Connection& conn, const std::string& username) {
  auto erased = EraseBelow(conn, username, kNoId);
  if (!erased.ok()) return erased.error();
  known_owners_.erase(username);
  // Even with nothing archived: a server that archives into this file
  // must forget that the account exists.
  if (*erased == 0) return BumpGeneration(conn);
  return {};
}

// ---- Indexing ----

Result<void> ArchiveLog::WriteRows(Connection& conn, const std::string& owner,
                                   const std::vector<Posting>& entries) {
  // The owner's newest row: entries that reach back into it (given ids)
  // are merged with every row they overlap; a small one is filled up.
  auto last = conn.Prepare(
      "SELECT last_id, count FROM archive_index WHERE username = ?1 ORDER BY last_id DESC LIMIT 1");
  if (!last.ok()) return last.error();
  last->BindText(1, owner);
  auto row = last->Step();
  if (!row.ok()) return row.error();
  int64_t reread_from = kNoId;
  if (*row) {
    const int64_t last_id = last->ColumnInt(0);
    const int64_t count = last->ColumnInt(1);
    if (last_id >= entries.front().id) {
      reread_from = entries.front().id;
    } else if (count < static_cast<int64_t>(kRowEntries / 4) &&
               count + static_cast<int64_t>(entries.size()) <= static_cast<int64_t>(kRowEntries)) {
      // Only small rows are filled up, and only while the result fits one
      // row: each entry is rewritten a few times at most.
      reread_from = last_id;
    }
  }
  last->Reset();
  if (reread_from == kNoId) {
    if (auto r = InsertRows(conn, owner, entries); !r.ok()) return r;
    AddToOriginFilter(owner, entries);
    return {};
  }
  std::vector<Posting> merged = entries;
  std::deque<std::string> rows;  // the replaced rows' bytes, which their postings point into
  {
    auto stmt =
        conn.Prepare("SELECT last_id, entries FROM archive_index WHERE username = ?1 AND last_id >= ?2");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, owner);
    stmt->BindInt(2, reread_from);
    std::vector<int64_t> replaced;
    while (true) {
      auto r = stmt->Step();
      if (!r.ok()) return r.error();
      if (!*r) break;
      replaced.push_back(stmt->ColumnInt(0));
      auto old = DecodeRow(rows.emplace_back(stmt->ColumnBlob(1)));
      if (!old.ok()) return old.error();
      merged.insert(merged.end(), old->begin(), old->end());
    }
    for (int64_t last_id : replaced) {
      if (auto r = DeleteRow(conn, owner, last_id); !r.ok()) return r;
    }
    std::stable_sort(merged.begin(), merged.end(),
                     [](const Posting& a, const Posting& b) { return a.id < b.id; });
    merged.erase(std::unique(merged.begin(), merged.end(),
                             [](const Posting& a, const Posting& b) { return a.id == b.id; }),
                 merged.end());
  }
  if (auto r = InsertRows(conn, owner, merged); !r.ok()) return r;
  AddToOriginFilter(owner, entries);
  return {};
}

Result<void> ArchiveLog::IndexSlice(Connection& conn) {
  if (!run_active_) {
    // A run covers the chunks committed so far: every one has a first id
    // at most last_id_. Entries of later chunks stay in the tail for the
    // next run.
    if (auto r = LoadLastId(conn); !r.ok()) return r;
    run_active_ = true;
    run_limit_ = last_id_;
    // Owners the last run emptied and that got nothing since go now; the
    // others kept their capacity (IndexSliceCommitted).
    {
      std::unique_lock lock(mu_);
      std::erase_if(tail_, [](const auto& item) { return item.second.entries.empty(); });
    }
    run_owners_.clear();
    run_owners_.reserve(tail_.size());
    for (const auto& [owner, t] : tail_) run_owners_.push_back(owner);
    // In name order, a slice's owners' index entries share pages.
    std::sort(run_owners_.begin(), run_owners_.end());
    run_next_ = 0;
  }
  slice_start_ = run_next_;
  size_t entries = 0;
  while (run_next_ < run_owners_.size() && run_next_ - slice_start_ < kSliceOwners &&
         entries < kSliceEntries) {
    const std::string& owner = run_owners_[run_next_++];
    auto t = tail_.find(owner);
    if (t == tail_.end()) continue;  // pruned or deleted since the run began
    // Usually every entry is in the run; otherwise the run's are copied.
    const std::vector<Posting>& all = t->second.entries;
    std::vector<Posting> some;
    const bool whole =
        std::all_of(all.begin(), all.end(), [&](const Posting& p) { return p.chunk <= run_limit_; });
    if (!whole) {
      for (const Posting& p : all) {
        if (p.chunk <= run_limit_) some.push_back(p);
      }
    }
    const std::vector<Posting>& in_run = whole ? all : some;
    if (in_run.empty()) continue;
    entries += in_run.size();
    auto exists = OwnerExists(conn, owner);
    if (!exists.ok()) return exists.error();
    if (!*exists) {
      // Deleted by another process while in this one's tail: released, and
      // recorded as erased, so that a reload does not read them back.
      std::map<int64_t, int64_t> per_chunk;
      for (const Posting& p : in_run) ++per_chunk[p.chunk];
      if (auto r = Release(conn, per_chunk); !r.ok()) return r;
      if (auto r = RecordErased(conn, owner, run_limit_ + 1); !r.ok()) return r;
      continue;
    }
    if (auto r = WriteRows(conn, owner, in_run); !r.ok()) return r;
  }
  if (auto r = BumpGeneration(conn); !r.ok()) return r;
  if (run_next_ < run_owners_.size()) return {};
  // The last slice: the run's chunks are indexed. Erasures stay recorded
  // while any chunk is not (they may cover entries of later chunks).
  auto mark = conn.Prepare("UPDATE archive_state SET value = max(value, ?1) WHERE key = 'indexed_through'");
  if (!mark.ok()) return mark.error();
  mark->BindInt(1, run_limit_);
  if (auto r = mark->Run(); !r.ok()) return r;
  auto clear = conn.Prepare(
      "DELETE FROM archive_erased WHERE NOT EXISTS (SELECT 1 FROM archive_log WHERE first_id > ?1)");
  if (!clear.ok()) return clear.error();
  clear->BindInt(1, run_limit_);
  return clear->Run();
}

void ArchiveLog::IndexSliceCommitted() {
  {
    std::unique_lock lock(mu_);
    for (size_t i = slice_start_; i < run_next_; ++i) {
      auto t = tail_.find(run_owners_[i]);
      if (t == tail_.end()) continue;
      OwnerTail& tail = t->second;
      const size_t before = tail.entries.size();
      // Usually the run took all of them: emptied as a whole, and kept,
      // with its capacity, for the owner's next entries (growing a list
      // from nothing moved every posting several times, mostly cache
      // misses); the next run drops it if it is still empty then.
      if (std::all_of(tail.entries.begin(), tail.entries.end(),
                      [&](const Posting& p) { return p.chunk <= run_limit_; })) {
        tail_size_ -= before;
        for (const Posting& p : tail.entries) Unref(p);
        tail.entries.clear();
        tail.origins.clear();
        continue;
      }
      std::erase_if(tail.entries, [&](const Posting& p) {
        if (p.chunk > run_limit_) return false;
        tail.ForgetOrigin(p);
        Unref(p);
        return true;
      });
      tail_size_ -= before - tail.entries.size();
      if (tail.entries.empty()) tail_.erase(t);
    }
  }
  FreeUnreferenced();  // chunks whose every posting is in rows now
  slice_start_ = run_next_;
  if (run_next_ >= run_owners_.size()) {
    run_active_ = false;
    run_owners_.clear();
  }
}

void ArchiveLog::IndexSliceAborted() {
  generation_ = -1;
  data_version_ = -1;
  run_next_ = slice_start_;
  known_owners_.clear();
  ClearOriginFilters();
}

// ---- Export ----

Result<void> ArchiveLog::ExportV9Tables(Connection& conn) {
  if (auto r = conn.Exec(
          "CREATE TEMP TABLE archive_messages (id INTEGER PRIMARY KEY, stamp_ms INTEGER NOT NULL,"
          " owners INTEGER NOT NULL, stanza TEXT NOT NULL);"
          "CREATE TEMP TABLE archive (username TEXT NOT NULL, id INTEGER NOT NULL, peer TEXT NOT NULL,"
          " peer_resource TEXT NOT NULL, outgoing INTEGER NOT NULL, origin_id TEXT NOT NULL);");
      !r.ok()) {
    return r;
  }
  std::unordered_map<int64_t, int64_t> owners;  // id -> entries that keep it
  auto add = [&](const std::string& owner, const Posting& p) -> Result<void> {
    auto stmt = conn.Prepare(
        "INSERT INTO temp.archive (username, id, peer, peer_resource, outgoing, origin_id)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, owner);
    stmt->BindInt(2, p.id);
    stmt->BindText(3, p.peer);
    stmt->BindText(4, p.peer_resource);
    stmt->BindInt(5, p.outgoing ? 1 : 0);
    stmt->BindText(6, p.origin_id);
    ++owners[p.id];
    return stmt->Run();
  };
  {
    auto stmt = conn.Prepare("SELECT username, entries FROM main.archive_index");
    if (!stmt.ok()) return stmt.error();
    while (true) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      const std::string owner = stmt->ColumnText(0);
      auto entries = DecodeRow(stmt->ColumnBlobView(1));
      if (!entries.ok()) return entries.error();
      for (const Posting& p : *entries) {
        if (auto r = add(owner, p); !r.ok()) return r;
      }
    }
  }
  OwnerMap<OwnerTail> tail;
  size_t size = 0;
  Buffers buffers;
  if (auto r = ReadUnindexed(conn, tail, size, buffers); !r.ok()) return r;
  for (const auto& [owner, t] : tail) {
    for (const Posting& p : t.entries) {
      if (auto r = add(owner, p); !r.ok()) return r;
    }
  }
  auto stmt = conn.Prepare("SELECT first_id, data FROM main.archive_log_data");
  if (!stmt.ok()) return stmt.error();
  while (true) {
    auto row = stmt->Step();
    if (!row.ok()) return row.error();
    if (!*row) break;
    const std::string data = stmt->ColumnBlob(1);
    int64_t last = 0;
    Result<void> inserted;
    auto decoded = DecodeChunk(stmt->ColumnInt(0), data, [&](std::string_view, const Posting& p) {
      if (p.id == last || !inserted.ok()) return;  // one row per message, not per owner
      last = p.id;
      auto kept = owners.find(p.id);
      if (kept == owners.end()) return;
      auto insert = conn.Prepare(
          "INSERT INTO temp.archive_messages (id, stamp_ms, owners, stanza) VALUES (?1, ?2, ?3, ?4)");
      if (!insert.ok()) {
        inserted = insert.error();
        return;
      }
      insert->BindInt(1, p.id);
      insert->BindInt(2, p.stamp_ms);
      insert->BindInt(3, kept->second);
      insert->BindText(4, std::string_view(data).substr(p.offset, p.length));
      inserted = insert->Run();
    });
    if (!decoded.ok()) return decoded;
    if (!inserted.ok()) return inserted;
  }
  return {};
}

// ---- Queries ----

Result<ArchivePage> ArchiveLog::Query(Connection& conn, const std::string& username,
                                      const ArchiveQuery& query) const {
  const int64_t max = std::max<int64_t>(query.max, 0);
  int64_t lo = query.after_id.value_or(std::numeric_limits<int64_t>::min());  // exclusive
  int64_t hi = query.before_id.value_or(kNoId);                               // exclusive
  std::vector<int64_t> ids = query.ids;
  std::sort(ids.begin(), ids.end());
  if (!ids.empty()) {
    lo = std::max(lo, ids.front() - 1);
    hi = std::min(hi, ids.back() + 1);
  }
  auto matches = [&](const Posting& p) {
    if (p.id <= lo || p.id >= hi) return false;
    if (!query.with.empty() && p.peer != query.with) return false;
    if (!query.with_resource.empty() && p.peer_resource != query.with_resource) return false;
    if (!ids.empty() && !std::binary_search(ids.begin(), ids.end(), p.id)) return false;
    return true;
  };
  // The tail first, then the rows (see the header: never miss an entry).
  // Copied out with their strings: a tail posting's chunk bytes may go once
  // the lock is released, a row's once the statement steps on.
  struct Found {
    int64_t id, stamp_ms, chunk;
    uint32_t offset, length;
    bool outgoing;
    std::string peer, peer_resource, origin_id;
    explicit Found(const Posting& p)
        : id(p.id),
          stamp_ms(p.stamp_ms),
          chunk(p.chunk),
          offset(p.offset),
          length(p.length),
          outgoing(p.outgoing),
          peer(p.peer),
          peer_resource(p.peer_resource),
          origin_id(p.origin_id) {}
  };
  std::vector<Found> found;
  {
    std::shared_lock lock(mu_);
    // Like the rows, only the tail's first max + 1 matches in paging order
    // can be on the page.
    if (auto t = tail_.find(username); t != tail_.end()) {
      const std::vector<Posting>& entries = t->second.entries;
      int64_t taken = 0;
      auto take = [&](const Posting& p) {
        if (!matches(p)) return true;
        found.emplace_back(p);
        return ++taken <= max;
      };
      auto by_id = [](const Posting& p, int64_t id) { return p.id < id; };
      if (query.from_end) {
        auto end = std::lower_bound(entries.begin(), entries.end(), hi, by_id);
        for (auto e = std::make_reverse_iterator(end); e != entries.rend() && take(*e);) ++e;
      } else {
        auto begin = lo == std::numeric_limits<int64_t>::max()
                         ? entries.end()
                         : std::lower_bound(entries.begin(), entries.end(), lo + 1, by_id);
        for (auto e = begin; e != entries.end() && take(*e);) ++e;
      }
    }
  }
  {
    auto bound = RowsBelowBound(conn, username, hi);
    if (!bound.ok()) return bound.error();
    auto stmt = conn.Prepare(
        query.from_end
            ? "SELECT entries FROM archive_index WHERE username = ?1 AND last_id > ?2 AND last_id <= ?3"
              " ORDER BY last_id DESC"
            : "SELECT entries FROM archive_index WHERE username = ?1 AND last_id > ?2 AND last_id <= ?3"
              " ORDER BY last_id ASC");
    if (!stmt.ok()) return stmt.error();
    stmt->BindText(1, username);
    stmt->BindInt(2, lo);
    stmt->BindInt(3, *bound);
    // Rows cover disjoint ranges, so the first max + 1 matches in paging
    // order are the rows' best; the tail's are merged in below.
    int64_t from_rows = 0;
    while (from_rows <= max) {
      auto row = stmt->Step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      auto entries = DecodeRow(stmt->ColumnBlobView(0));
      if (!entries.ok()) return entries.error();
      if (query.from_end) std::reverse(entries->begin(), entries->end());
      for (const Posting& p : *entries) {
        if (from_rows > max) break;
        if (!matches(p)) continue;
        found.emplace_back(p);
        ++from_rows;
      }
    }
    stmt->Reset();
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.id < b.id; });
  found.erase(
      std::unique(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.id == b.id; }),
      found.end());
  ArchivePage page;
  if (static_cast<int64_t>(found.size()) > max) {
    page.complete = false;
    if (query.from_end) {
      found.erase(found.begin(), found.end() - max);
    } else {
      found.erase(found.begin() + max, found.end());
    }
  }
  // One blob handle per chunk: it keeps the chunk's overflow-page list, so
  // each further read from it is a direct page access.
  std::vector<size_t> order(found.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return found[a].chunk != found[b].chunk ? found[a].chunk < found[b].chunk
                                            : found[a].offset < found[b].offset;
  });
  std::vector<std::optional<std::string>> stanzas(found.size());
  sqlite3_blob* blob = nullptr;
  int64_t open_chunk = 0;
  bool chunk_gone = false;
  Result<void> failed;
  for (size_t i : order) {
    const Found& p = found[i];
    if (blob == nullptr || p.chunk != open_chunk) {
      open_chunk = p.chunk;
      int rc = blob == nullptr
                   ? sqlite3_blob_open(conn.handle(), "main", "archive_log_data", "data", p.chunk, 0, &blob)
                   : sqlite3_blob_reopen(blob, p.chunk);
      chunk_gone = rc == SQLITE_ERROR;  // pruned since the tail was copied
      if (rc != SQLITE_OK) {
        sqlite3_blob_close(blob);
        blob = nullptr;
        if (chunk_gone) continue;
        failed = conn.MakeSqliteError(rc, "reading an archived message");
        break;
      }
    } else if (chunk_gone) {
      continue;
    }
    std::string stanza(p.length, '\0');
    int rc = sqlite3_blob_read(blob, stanza.data(), static_cast<int>(p.length), static_cast<int>(p.offset));
    if (rc != SQLITE_OK) {
      failed = conn.MakeSqliteError(rc, "reading an archived message");
      break;
    }
    stanzas[i] = std::move(stanza);
  }
  sqlite3_blob_close(blob);
  if (!failed.ok()) return failed.error();
  page.messages.reserve(found.size());
  for (size_t i = 0; i < found.size(); ++i) {
    if (!stanzas[i]) continue;
    Found& p = found[i];
    ArchivedMessage m;
    m.id = p.id;
    m.stamp_ms = p.stamp_ms;
    m.peer = std::move(p.peer);
    m.peer_resource = std::move(p.peer_resource);
    m.outgoing = p.outgoing;
    m.origin_id = std::move(p.origin_id);
    m.stanza = std::move(*stanzas[i]);
    page.messages.push_back(std::move(m));
  }
  return page;
}

}  // namespace nines::store::sqlite
