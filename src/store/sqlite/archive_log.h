// ArchiveLog: how the SQLite store keeps the message archive (XEP-0313).
//
// The format (schema versions 10 to 12; docs/architecture.md, "The
// archive on SQLite"):
//  * archive_log and archive_log_data: the durable log. Each group commit
//    that archives messages appends a chunk (or a few: at most kChunkBytes
//    each) holding every message of the batch, each with its owners' fields
//    and its stanza. A chunk is keyed by its first message's id; its bytes
//    are in archive_log_data, written once, and archive_log counts the owner
//    entries that still point into it (`live`); both rows go at 0.
//  * archive_index: each owner's posting lists. A row holds up to
//    kRowEntries of one owner's entries (id, stamp, where the stanza is in
//    the log, peer, resource, direction, origin-id), in id order; an owner's
//    rows cover disjoint id ranges, keyed by (owner, last id). Since schema
//    11 a row lists its peers and resources once (EncodeRow, format 2);
//    since 12 the rows are a rowid table appended in write order, the key
//    an index (a keyed row spilled to an overflow page of its own).
//  * The tail: entries of chunks above archive_state's `indexed_through`
//    live in memory only (durable in their chunk), and queries merge them
//    with the rows. When the tail holds SqliteOptions::archive_index_every
//    entries (131,072), an index run writes them as rows (one or a few per
//    owner, not one per message), a slice of owners per transaction, and
//    then moves the mark. At open, the chunks above the mark are read back
//    into the tail, so a crash loses nothing that was committed.
//  * Retransmissions (XEP-0359 origin-ids) are looked for among the
//    owner's newest kOriginWindow entries: in the batch, in the tail's
//    per-owner maps, then in the owner's newest rows, which an in-memory
//    filter of origin-id hashes per owner (filled from those rows on first
//    use) rules out without reading them for almost every new message.
//    Until schema 11 a table held every origin-id ever archived; inserting
//    into it at random places cost more than the rest of an index run.
//  * archive_erased: entries pruned or deleted while still in the tail, so a
//    restart does not read them back from their chunks. Cleared once no
//    chunk is above the mark.
//  * archive_state: the mark, and a generation number that every erasure
//    and index run moves on, so a process that keeps a tail knows when
//    another process (the CLI deleting an account) changed the archive
//    under it.
//
// Why: one b-tree entry per owner per message cost the writer ~18 µs per
// archived message (docs/benchmarks.md, "Archiving: where the writer's time
// goes"); a chunk per commit and a posting row per owner per index run
// cost a fraction of that (docs/benchmarks.md, "The archive as a log").
//
// Threads: every method but Query runs on the store's writer thread, inside
// its write transaction. Changes made by a batch's jobs are kept aside
// (Mark/Rewind per job) and reach the tail that Query reads only at
// Committed(), after COMMIT. Query runs on the reader thread: it copies the
// tail's matching entries under a shared lock before its first statement,
// so that an index run committing in between shows an entry twice (merged
// away by id), never not at all.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/result.h"
#include "base/string_hash.h"
#include "store/sqlite/sqlite_connection.h"
#include "store/store.h"

namespace nines::store::sqlite {

class ArchiveLog {
 public:
  // Entries per posting row.
  static constexpr size_t kRowEntries = 128;
  // Bounds of one index slice (a few milliseconds of the writer).
  static constexpr size_t kSliceOwners = 64;
  static constexpr size_t kSliceEntries = 16384;
  // A chunk is closed once it holds this many bytes (a batch may write
  // several): reading a message walks its chunk's overflow pages.
  static constexpr size_t kChunkBytes = 32 << 10;
  // How far back a retransmission is recognised: the owner's newest rows
  // up to this many entries (besides its whole tail).
  static constexpr size_t kOriginWindow = 2048;
  // Origin-id hashes the filters hold over all owners before they are
  // dropped (and filled again from the rows as owners send): 8 bytes each.
  static constexpr size_t kOriginFilterBudget = size_t{1} << 21;

  // An index run starts once the tail holds `index_every` entries.
  explicit ArchiveLog(size_t index_every) : index_every_(index_every) { chunk_ = NewBuffer(buffers_); }

  // Converts a version-9 archive (archive/archive_messages) into this format
  // and drops the old tables; part of migration 10's transaction.
  static Result<void> ConvertV9(Connection& conn);

  // Fills TEMP tables archive_messages and archive in the version-9 layout
  // from the archive (for `nines store migrate` to PostgreSQL, whose schema
  // keeps that layout). Needs a transaction for a consistent snapshot.
  static Result<void> ExportV9Tables(Connection& conn);

  // Writer thread: reads the tail back from the chunks above the mark (less
  // what rows already hold and what was erased), in one snapshot (its own
  // read transaction if the caller has none). At open, and when another
  // process changed the archive.
  Result<void> Load(Connection& conn);

  // Writer thread, after BEGIN IMMEDIATE: if another connection (another
  // process) has changed the archive since (its generation, in
  // archive_state, moved: an account deleted from the CLI), reads the tail
  // back again.
  Result<void> BeginTransaction(Connection& conn);
  // The position of the batch's pending changes, and undoing what a failed
  // job added after it.
  struct Mark {
    size_t ops = 0;
    size_t chunk_bytes = 0;
    int64_t chunk_live = 0;
    int64_t chunk_last_id = 0;
    size_t chunks_written = 0;  // in this transaction, before the mark
  };
  Mark mark() const;
  void Rewind(const Mark& mark);
  // Before COMMIT: writes the batch's chunk. Fails if a Rewind went back
  // past a chunk written in this transaction (a job of many Archive calls
  // whose later call failed after an earlier one wrote the chunk): the
  // chunk's bytes are no longer in memory, so the transaction must go.
  Result<void> EndTransaction(Connection& conn);
  // After COMMIT: the batch's changes become visible to Query.
  void Committed();
  // After a rollback: the batch's changes are dropped.
  void Aborted();

  // Index runs, in slices: each slice writes up to kSliceOwners owners'
  // tail entries (of the chunks committed when the run began) as rows, in a
  // transaction of its own between group commits, so that no run stalls the
  // writer for long; the last slice marks the run's chunks indexed. A crash
  // between slices leaves some entries both in rows and in unindexed chunks;
  // Load keeps those only in the rows. Due while a run is under way, or
  // once the tail holds `index_every` entries.
  // Only a process that archives indexes: the CLI (which opens the same
  // file while the server runs) leaves the server's tail alone.
  bool IndexDue() const { return archived_here_ && (run_active_ || tail_size_ >= index_every_); }
  bool ArchivedHere() const { return archived_here_; }
  bool TailEmpty() const { return tail_size_ == 0; }
  size_t TailSize() const { return tail_size_; }
  bool RunActive() const { return run_active_; }  // an index run is between slices
  // Bytes the chunk buffers hold (capacity), the one being filled included:
  // about the tail's share of the log (tests, diagnostics).
  size_t BufferBytes() const {
    size_t n = 0;
    for (const ChunkBuffer& b : buffers_) n += b.bytes.capacity();
    return n;
  }
  Result<void> IndexSlice(Connection& conn);
  void IndexSliceCommitted();  // after its COMMIT
  void IndexSliceAborted();    // after its ROLLBACK

  // The store's operations (store.h has their contracts).
  Result<ArchiveOutcome> Archive(Connection& conn, const std::vector<ArchiveEntry>& entries);
  // Archive of one message: `stanza` under `id` (0: assigned here, with
  // its stamp) for each of `entries`, which point into the caller's memory
  // (an ArchiveBatch, or the ArchiveEntry vector above).
  Result<ArchiveOutcome> Archive(Connection& conn, int64_t id, int64_t stamp_ms, std::string_view stanza,
                                 std::span<const ArchiveBatch::Entry> entries);
  Result<int64_t> Prune(Connection& conn, const std::string& username, int64_t before_id, int64_t keep);
  // Deletes all of the owner's entries (account deletion).
  Result<void> DeleteOwner(Connection& conn, const std::string& username);

  // Reader thread.
  Result<ArchivePage> Query(Connection& conn, const std::string& username, const ArchiveQuery& query) const;

  // A chunk's bytes, kept in memory while postings point into them.
  struct ChunkBuffer;
  // One owner's entry: the message's owner-side fields and where its stanza
  // is in the log. Trivially copyable: the strings are views. A posting of
  // the tail or of a batch points into the bytes of its chunk (`buffer`),
  // which the log keeps while the batch or the tail holds such a posting
  // (ChunkBuffer::refs); any other posting (a decoded row, an Archive call's
  // entries) points into memory its maker keeps alive while it is used.
  // Copying three strings per entry, on every step from the batch to the
  // tail to the rows, was about a seventh of the writer thread
  // (docs/benchmarks.md, fourteenth session).
  struct Posting {
    int64_t id = 0;
    int64_t stamp_ms = 0;
    int64_t chunk = 0;    // archive_log.first_id
    uint32_t offset = 0;  // of the stanza in the chunk's data
    uint32_t length = 0;  // of the stanza
    bool outgoing = false;
    std::string_view peer;
    std::string_view peer_resource;
    std::string_view origin_id;           // outgoing only
    ChunkBuffer* buffer = nullptr;        // the chunk bytes the views point into, if the log's
  };
  struct ChunkBuffer {
    std::string bytes;
    size_t refs = 0;  // postings of the tail that point into it
    std::list<ChunkBuffer>::iterator self;
  };

 private:
  // Origin-ids are looked up by this hash (the tail's maps, the batch's map
  // and the filters alike, so a message hashes its origin-id once). A hit is
  // checked against the entry's own origin-id, so a collision can never
  // take a new message for a retransmission; at worst (two origin-ids of
  // one owner with the same 64-bit hash) the older one is no longer found.
  static uint64_t OriginHash(std::string_view origin_id) { return std::hash<std::string_view>{}(origin_id); }
  // Owner-keyed maps are looked up by string_view (an ArchiveBatch's
  // names) without making a string.
  template <class V>
  using OwnerMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;
  struct OwnerTail {
    std::vector<Posting> entries;                   // sorted by id
    std::unordered_map<uint64_t, int64_t> origins;  // OriginHash -> id, outgoing entries with one
    void AddOrigin(const Posting& p) {
      if (p.outgoing && !p.origin_id.empty()) origins[OriginHash(p.origin_id)] = p.id;
    }
    // Drops `p`'s origin-id from `origins` if it maps to `p`.
    void ForgetOrigin(const Posting& p) {
      if (p.origin_id.empty()) return;
      if (auto o = origins.find(OriginHash(p.origin_id)); o != origins.end() && o->second == p.id)
        origins.erase(o);
    }
    // The id of the entry with this origin-id (hashed to `hash`), if any.
    std::optional<int64_t> FindOrigin(uint64_t hash, std::string_view origin_id) const {
      auto o = origins.find(hash);
      if (o == origins.end()) return std::nullopt;
      auto e = std::lower_bound(entries.begin(), entries.end(), o->second,
                                [](const Posting& p, int64_t id) { return p.id < id; });
      if (e == entries.end() || e->id != o->second || e->origin_id != origin_id) return std::nullopt;
      return o->second;
    }
  };
  // A batch's pending change: an entry for an owner, or every entry of an
  // owner below an id erased.
  struct Op {
    std::string owner;
    bool erase = false;
    int64_t below_id = 0;  // erase
    Posting posting;       // append
  };

  using Buffers = std::list<ChunkBuffer>;  // addresses stay put
  static ChunkBuffer* NewBuffer(Buffers& buffers);
  // The entries of chunks above the mark that are neither erased nor in
  // rows already (an index run that did not finish, given ids). Their
  // postings point into the chunks' bytes, which are added to `buffers`
  // with their counts.
  static Result<void> ReadUnindexed(Connection& conn, OwnerMap<OwnerTail>& tail, size_t& size,
                                    Buffers& buffers);
  // A posting leaves the tail: its chunk's count goes down, and a chunk
  // no posting points into any more is freed by FreeUnreferenced.
  void Unref(const Posting& p) {
    if (p.buffer != nullptr && --p.buffer->refs == 0) unreferenced_.push_back(p.buffer);
  }
  // Frees the chunks closed in the transaction (Committed, Aborted) and
  // those Unref left without postings, if nothing points into them now.
  void FreeUnreferenced();
  // A new chunk buffer's capacity: a chunk closes at kChunkBytes, or
  // earlier if the next record would not fit (a buffer never grows, so that
  // the batch's postings can point into it). A chunk closed well short of
  // its capacity (a small group commit) is kept as a copy of its size.
  static constexpr size_t kChunkCapacity = kChunkBytes + (8 << 10);
  // Writes the batch's current chunk (if it has live entries) and starts
  // an empty one.
  Result<void> WriteChunk(Connection& conn);
  // Moves archive_state's generation on, in the caller's transaction: every
  // change other processes must see (erasures, index runs) does.
  Result<void> BumpGeneration(Connection& conn);
  // The entry's posting for a message stored under `id` at `offset` of
  // chunk `chunk`, `length` bytes long; its strings are the entry's views.
  static Posting MakePosting(const ArchiveBatch::Entry& entry, int64_t id, int64_t stamp_ms, int64_t chunk,
                             size_t offset, size_t length);
  // batch_origins_'s key for an owner's origin-id hash.
  static uint64_t BatchOriginKey(std::string_view owner, uint64_t origin_hash) {
    return origin_hash ^ (std::hash<std::string_view>{}(owner)*0x9E3779B97F4A7C15ULL);
  }
  Result<void> LoadInSnapshot(Connection& conn);
  // Reads max(id) once per process (and after another process wrote).
  Result<void> LoadLastId(Connection& conn);
  Result<std::optional<int64_t>> FindOrigin(Connection& conn, std::string_view owner,
                                            std::string_view origin_id);
  // Calls fn(posting) for the owner's newest rows' entries, newest row
  // first, until kOriginWindow entries or fn returns false.
  template <class Fn>
  Result<void> ForNewestRows(Connection& conn, std::string_view owner, Fn&& fn) const;
  // The owner's origin-id filter: the sorted hashes of the origin-ids of
  // outgoing entries in its newest rows (a superset: entries erased or
  // fallen out of the window since stay in it until it is dropped).
  Result<const std::vector<uint64_t>*> OriginFilter(Connection& conn, std::string_view owner);
  // After `entries` were written as the owner's rows: their origin-ids join
  // its filter, if it has one.
  void AddToOriginFilter(const std::string& owner, const std::vector<Posting>& entries);
  // Drops other owners' filters while the filters are over
  // kOriginFilterBudget.
  void TrimOriginFilters(std::string_view keep);
  void ClearOriginFilters() {
    origin_filters_.clear();
    origin_filter_size_ = 0;
  }
  Result<bool> IdTaken(Connection& conn, int64_t id) const;
  Result<bool> OwnerExists(Connection& conn, std::string_view owner);
  // The owner's ids in the tail as the batch sees it (committed + ops).
  std::vector<Posting> BatchTail(const std::string& owner) const;
  // Erases the owner's entries below `below` from rows, tail and origins;
  // returns how many.
  Result<int64_t> EraseBelow(Connection& conn, const std::string& owner, int64_t below);
  // Takes `n` entries off chunk `chunk`'s live count (the batch's own chunk
  // in memory), deleting the chunk at 0.
  Result<void> Release(Connection& conn, const std::map<int64_t, int64_t>& per_chunk);
  // Writes `entries` (sorted, one owner, ids above every row the owner has
  // unless `merge`) as posting rows.
  Result<void> WriteRows(Connection& conn, const std::string& owner, const std::vector<Posting>& entries);
  void ApplyOps(std::vector<Op>& ops);

  // Committed tail: written by the writer under mu_ (exclusive), read by
  // Query under mu_ (shared) and by the writer without the lock.
  mutable std::shared_mutex mu_;
  OwnerMap<OwnerTail> tail_;
  size_t tail_size_ = 0;

  const size_t index_every_;
  // Writer thread only.
  int64_t data_version_ = -1;
  int64_t generation_ = -1;
  bool archived_here_ = false;
  // A process that does not archive saw another commit: its tail may be
  // behind the server's, so it reads it again before erasing.
  bool tail_stale_ = false;
  int64_t last_id_ = -1;
  std::vector<Op> ops_;
  // What ops_ holds, for lookups per message: (owner, origin-id) of its
  // entries, and each owner's highest erasure.
  std::unordered_map<uint64_t, size_t> batch_origins_;  // BatchOriginKey -> index in ops_
  OwnerMap<int64_t> batch_erased_;
  // Every chunk buffer: the one being filled, and closed ones the batch's
  // or the tail's postings point into.
  Buffers buffers_;
  // The batch's chunk data (server-assigned ids), in buffers_: never null,
  // and never grown past its capacity while the batch's postings point
  // into it.
  ChunkBuffer* chunk_ = nullptr;
  std::vector<ChunkBuffer*> closed_;        // in this transaction: freed unless the tail took postings
  std::vector<ChunkBuffer*> unreferenced_;  // by Unref
  // Where AppendRecord put each entry's strings (reused).
  std::vector<std::array<size_t, 3>> field_offsets_;
  size_t chunks_written_ = 0;  // by this transaction
  bool unrewindable_ = false;  // a Rewind crossed a chunk write: EndTransaction fails
  int64_t chunk_first_id_ = 0;
  int64_t chunk_last_id_ = 0;
  int64_t chunk_live_ = 0;
  std::unordered_set<std::string, StringHash, std::equal_to<>> known_owners_;
  OwnerMap<std::vector<uint64_t>> origin_filters_;
  size_t origin_filter_size_ = 0;  // hashes over all filters
  // The index run under way: the chunks it covers (first_id <= run_limit_),
  // the owners it found in the tail, the next to write, and where the
  // current slice began.
  bool run_active_ = false;
  int64_t run_limit_ = 0;
  std::vector<std::string> run_owners_;
  size_t run_next_ = 0;
  size_t slice_start_ = 0;
};

}  // namespace nines::store::sqlite
