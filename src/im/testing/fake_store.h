// FakeStore: an in-memory store::Store for im unit tests.
//
// Every call does its work at once and posts its Reply to the caller's
// executor, like a real backend whose disk is infinitely fast. Tests can make
// the next call of a method fail (FailNext) or hold replies back and release
// them later (Hold/Release) to create races: a held call has not happened
// yet, so a later read does not see a held write (as with a real backend
// whose reader thread overtakes its writer).
//
// Thread safety: none; im tests drive all loops from the test thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "store/store.h"

namespace nines::im::testing {

class FakeStore final : public store::Store {
 public:
  void AddAccount(const std::string& username) { accounts_.insert(username); }

  // The next call to `method` (e.g. "PutRosterItem") fails with `code`.
  void FailNext(const std::string& method, Errc code) { fail_[method] = code; }
  // While held, calls (of `method`, or of every method if empty) queue up
  // undone; Release() does them in order and posts their replies.
  void Hold(const std::string& method = {}) {
    hold_ = true;
    hold_method_ = method;
  }
  void Release() {
    hold_ = false;
    auto pending = std::move(held_);
    held_.clear();
    for (auto& fn : pending) fn();
  }
  size_t held() const { return held_.size(); }

  // Direct access for assertions and setup.
  store::Roster& roster(const std::string& user) { return rosters_[user]; }
  std::vector<store::OfflineMessage>& offline(const std::string& user) { return offline_[user]; }
  std::map<std::string, std::string>& vcards() { return vcards_; }
  int calls(const std::string& method) const {
    auto it = calls_.find(method);
    return it == calls_.end() ? 0 : it->second;
  }
  void PutItemDirect(const std::string& user, store::RosterItem item) {
    auto& r = rosters_[user];
    std::erase_if(r.items, [&](const store::RosterItem& i) { return i.jid == item.jid; });
    r.items.push_back(std::move(item));
    ++r.version;
  }
  const store::RosterItem* Item(const std::string& user, const std::string& jid) {
    for (auto& i : rosters_[user].items) {
      if (i.jid == jid) return &i;
    }
    return nullptr;
  }

  void CreateAccount(store::Account account, store::Reply<void> reply) override {
    Finish("CreateAccount", std::move(reply), [=, this]() mutable -> Result<void> {
      if (!accounts_.insert(account.username).second) return MakeError(Errc::kConflict, "exists");
      return {};
    });
  }
  void CreateAccounts(std::vector<store::Account> accounts, store::Reply<void> reply) override {
    Finish("CreateAccounts", std::move(reply), [=, this]() mutable -> Result<void> {
      for (auto& a : accounts) accounts_.insert(a.username);
      return {};
    });
  }
  void GetAccount(std::string username, store::Reply<store::Account> reply) override {
    Finish("GetAccount", std::move(reply), [=, this]() mutable -> Result<store::Account> {
      if (!accounts_.count(username)) return MakeError(Errc::kNotFound, "no such account");
      store::Account a;
      a.username = username;
      return a;
    });
  }
  void SetCredentials(std::string, store::ScramKeys, store::ScramKeys, store::Reply<void> reply) override {
    Finish("SetCredentials", std::move(reply), []() -> Result<void> { return {}; });
  }
  void DeleteAccount(std::string username, store::Reply<void> reply) override {
    Finish("DeleteAccount", std::move(reply), [=, this]() mutable -> Result<void> {
      // What the real stores delete with the account (foreign keys).
      if (accounts_.erase(username) == 0) return MakeError(Errc::kNotFound, "no such account");
      rosters_.erase(username);
      offline_.erase(username);
      vcards_.erase(username);
      archive_.erase(username);
      std::erase_if(devices_, [&](const auto& kv) { return kv.second.username == username; });
      pushes_.erase(username);
      blocklists_.erase(username);
      prefs_.erase(username);
      std::erase_if(private_, [&](const auto& kv) { return kv.first.first == username; });
      std::erase_if(pep_, [&](const auto& kv) { return kv.first.first == username; });
      return {};
    });
  }
  void ListAccounts(store::Reply<std::vector<std::string>> reply) override {
    Finish("ListAccounts", std::move(reply), [=, this]() mutable -> Result<std::vector<std::string>> {
      return std::vector<std::string>(accounts_.begin(), accounts_.end());
    });
  }
  void GetRoster(std::string username, store::Reply<store::Roster> reply) override {
    Finish("GetRoster", std::move(reply),
           [=, this]() mutable -> Result<store::Roster> { return rosters_[username]; });
  }
  void PutRosterItem(std::string username, store::RosterItem item, store::Reply<int64_t> reply) override {
    Finish("PutRosterItem", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      if (item.subscription == store::Subscription::kRemove)
        return MakeError(Errc::kInvalidArgument, "remove");
      if (!accounts_.count(username)) return MakeError(Errc::kNotFound, "no such account");
      PutItemDirect(username, item);
      return rosters_[username].version;
    });
  }
  void RemoveRosterItem(std::string username, std::string jid, store::Reply<int64_t> reply) override {
    Finish("RemoveRosterItem", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      auto& r = rosters_[username];
      size_t n = std::erase_if(r.items, [&](const store::RosterItem& i) { return i.jid == jid; });
      if (n == 0) return MakeError(Errc::kNotFound, "no such item");
      return ++r.version;
    });
  }
  void StoreOffline(std::string username, store::OfflineMessage message,
                    store::Reply<int64_t> reply) override {
    Finish("StoreOffline", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      if (!accounts_.count(username)) return MakeError(Errc::kNotFound, "no such account");
      message.id = ++next_offline_id_;
      offline_[username].push_back(std::move(message));
      return next_offline_id_;
    });
  }
  void CountOffline(std::string username, store::Reply<int64_t> reply) override {
    Finish("CountOffline", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      return static_cast<int64_t>(offline_[username].size());
    });
  }
  void LoadOffline(std::string username, store::Reply<std::vector<store::OfflineMessage>> reply) override {
    Finish("LoadOffline", std::move(reply),
           [=, this]() mutable -> Result<std::vector<store::OfflineMessage>> { return offline_[username]; });
  }
  void DeleteOffline(std::string username, int64_t up_to_id, store::Reply<void> reply) override {
    Finish("DeleteOffline", std::move(reply), [=, this]() mutable -> Result<void> {
      std::erase_if(offline_[username], [&](const store::OfflineMessage& m) { return m.id <= up_to_id; });
      return {};
    });
  }
  void GetVCard(std::string username, store::Reply<std::string> reply) override {
    Finish("GetVCard", std::move(reply), [=, this]() mutable -> Result<std::string> {
      auto it = vcards_.find(username);
      if (it == vcards_.end()) return MakeError(Errc::kNotFound, "no vCard");
      return it->second;
    });
  }
  void SetVCard(std::string username, std::string vcard_xml, store::Reply<void> reply) override {
    Finish("SetVCard", std::move(reply), [=, this]() mutable -> Result<void> {
      vcards_[username] = std::move(vcard_xml);
      return {};
    });
  }
  void Archive(std::vector<store::ArchiveEntry> entries, store::Reply<store::ArchiveOutcome> reply) override {
    Finish("Archive", std::move(reply), [=, this]() mutable -> Result<store::ArchiveOutcome> {
      for (auto& e : entries) {
        if (!e.message.outgoing || e.message.origin_id.empty()) continue;
        for (auto& m : archive_[e.username]) {
          if (m.outgoing && m.origin_id == e.message.origin_id) return store::ArchiveOutcome{true, m.id};
        }
      }
      for (auto& e : entries) {
        if (!accounts_.count(e.username)) return MakeError(Errc::kNotFound, "no such account");
      }
      const bool assigned = entries.front().message.id == 0;
      int64_t id = entries.front().message.id;
      if (assigned) id = ++last_archive_id_;  // increasing, like the real stores
      for (auto& e : entries) {
        e.message.id = id;
        if (e.message.stanza.empty()) e.message.stanza = entries.front().message.stanza;  // store.h
        if (assigned) e.message.stamp_ms = id / 1000;
        archive_[e.username].push_back(e.message);
      }
      store::ArchiveOutcome outcome;
      outcome.id = id;
      return outcome;
    });
  }
  // Filters as the real backends do, by brute force.
  void QueryArchive(std::string username, store::ArchiveQuery q,
                    store::Reply<store::ArchivePage> reply) override {
    Finish("QueryArchive", std::move(reply), [=, this]() mutable -> Result<store::ArchivePage> {
      std::vector<store::ArchivedMessage> match;
      for (auto& m : archive_[username]) {
        if (!q.with.empty() && m.peer != q.with) continue;
        if (!q.with_resource.empty() && m.peer_resource != q.with_resource) continue;
        if (q.after_id && m.id <= *q.after_id) continue;
        if (q.before_id && m.id >= *q.before_id) continue;
        if (!q.ids.empty() && std::find(q.ids.begin(), q.ids.end(), m.id) == q.ids.end()) continue;
        match.push_back(m);
      }
      std::sort(match.begin(), match.end(), [](auto& a, auto& b) { return a.id < b.id; });
      store::ArchivePage page;
      size_t max = static_cast<size_t>(std::max<int64_t>(q.max, 0));
      page.complete = match.size() <= max;
      if (q.from_end) {
        page.messages.assign(match.end() - std::min(max, match.size()), match.end());
      } else {
        page.messages.assign(match.begin(), match.begin() + std::min(max, match.size()));
      }
      return page;
    });
  }
  void PruneArchive(std::string username, int64_t before_id, int64_t keep,
                    store::Reply<int64_t> reply) override {
    Finish("PruneArchive", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      auto& a = archive_[username];
      size_t before = a.size();
      std::erase_if(a, [&](const store::ArchivedMessage& m) { return m.id < before_id; });
      if (keep >= 0 && a.size() > static_cast<size_t>(keep)) a.erase(a.begin(), a.end() - keep);
      return static_cast<int64_t>(before - a.size());
    });
  }
  std::vector<store::ArchivedMessage>& archive(const std::string& user) { return archive_[user]; }
  void PutDeviceState(store::DeviceState state, store::Reply<void> reply) override {
    Finish("PutDeviceState", std::move(reply), [=, this]() mutable -> Result<void> {
      if (!accounts_.count(state.username)) return MakeError(Errc::kNotFound, "no account");
      devices_[state.key] = state;
      return {};
    });
  }
  void GetDeviceState(std::string key, store::Reply<store::DeviceState> reply) override {
    Finish("GetDeviceState", std::move(reply), [=, this]() mutable -> Result<store::DeviceState> {
      auto it = devices_.find(key);
      if (it == devices_.end()) return MakeError(Errc::kNotFound, "no such device state");
      return it->second;
    });
  }
  void DeleteDeviceState(std::string key, store::Reply<void> reply) override {
    Finish("DeleteDeviceState", std::move(reply), [=, this]() mutable -> Result<void> {
      devices_.erase(key);
      return {};
    });
  }
  void SweepDeviceStates(int64_t now_ms, store::Reply<int64_t> reply) override {
    Finish("SweepDeviceStates", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      for (auto& [key, d] : devices_) {
        if (d.detached_ms == 0) d.detached_ms = now_ms;
      }
      return static_cast<int64_t>(std::erase_if(devices_, [&](const auto& kv) {
        return kv.second.detached_ms + kv.second.resume_timeout_s * 1000 < now_ms;
      }));
    });
  }
  std::map<std::string, store::DeviceState>& devices() { return devices_; }
  void PutPushRegistration(store::PushRegistration reg, store::Reply<void> reply) override {
    Finish("PutPushRegistration", std::move(reply), [=, this]() mutable -> Result<void> {
      if (reg.jid.empty() || reg.node.empty()) return MakeError(Errc::kInvalidArgument, "jid and node");
      if (!accounts_.count(reg.username)) return MakeError(Errc::kNotFound, "no account");
      auto& list = pushes_[reg.username];
      std::erase_if(list, [&](const store::PushRegistration& p) { return p.jid == reg.jid && p.node == reg.node; });
      list.push_back(reg);
      std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.created_ms < b.created_ms; });
      return {};
    });
  }
  void DeletePushRegistrations(std::string username, std::string jid, std::string node,
                               store::Reply<int64_t> reply) override {
    Finish("DeletePushRegistrations", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      return static_cast<int64_t>(std::erase_if(pushes_[username], [&](const store::PushRegistration& p) {
        return p.jid == jid && (node.empty() || p.node == node);
      }));
    });
  }
  void ListPushRegistrations(std::string username, store::Reply<std::vector<store::PushRegistration>> reply) override {
    Finish("ListPushRegistrations", std::move(reply),
           [=, this]() mutable -> Result<std::vector<store::PushRegistration>> { return pushes_[username]; });
  }
  std::vector<store::PushRegistration>& pushes(const std::string& user) { return pushes_[user]; }
  void GetBlocklist(std::string username, store::Reply<std::vector<std::string>> reply) override {
    Finish("GetBlocklist", std::move(reply), [=, this]() mutable -> Result<std::vector<std::string>> {
      auto it = blocklists_.find(username);
      if (it == blocklists_.end()) return std::vector<std::string>{};
      return std::vector<std::string>(it->second.begin(), it->second.end());
    });
  }
  void Block(std::string username, std::vector<std::string> jids, store::Reply<void> reply) override {
    Finish("Block", std::move(reply), [=, this]() mutable -> Result<void> {
      if (!accounts_.count(username)) return MakeError(Errc::kNotFound, "no account");
      for (const auto& j : jids) {
        if (j.empty()) return MakeError(Errc::kInvalidArgument, "empty JID");
      }
      blocklists_[username].insert(jids.begin(), jids.end());
      return {};
    });
  }
  void Unblock(std::string username, std::vector<std::string> jids, store::Reply<int64_t> reply) override {
    Finish("Unblock", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      auto& set = blocklists_[username];
      if (jids.empty()) {
        int64_t n = static_cast<int64_t>(set.size());
        set.clear();
        return n;
      }
      int64_t n = 0;
      for (const auto& j : jids) n += static_cast<int64_t>(set.erase(j));
      return n;
    });
  }
  std::set<std::string>& blocklist(const std::string& user) { return blocklists_[user]; }
  void GetArchivePrefs(std::string username, store::Reply<store::ArchivePrefs> reply) override {
    Finish("GetArchivePrefs", std::move(reply), [=, this]() mutable -> Result<store::ArchivePrefs> {
      auto it = prefs_.find(username);
      return it == prefs_.end() ? store::ArchivePrefs{} : it->second;
    });
  }
  void SetArchivePrefs(std::string username, store::ArchivePrefs prefs, store::Reply<void> reply) override {
    Finish("SetArchivePrefs", std::move(reply), [=, this]() mutable -> Result<void> {
      if (!accounts_.count(username)) return MakeError(Errc::kNotFound, "no account");
      prefs_[username] = prefs;
      return {};
    });
  }
  void GetPrivate(std::string username, std::string key, store::Reply<std::string> reply) override {
    Finish("GetPrivate", std::move(reply), [=, this]() mutable -> Result<std::string> {
      auto it = private_.find({username, key});
      if (it == private_.end()) return MakeError(Errc::kNotFound, "none");
      return it->second;
    });
  }
  void SetPrivate(std::string username, std::string key, std::string xml, int64_t max_items,
                  store::Reply<void> reply) override {
    Finish("SetPrivate", std::move(reply), [=, this]() mutable -> Result<void> {
      if (!accounts_.count(username)) return MakeError(Errc::kNotFound, "no account");
      if (!private_.count({username, key})) {
        int64_t held = 0;
        for (const auto& [k, v] : private_) held += k.first == username ? 1 : 0;
        if (held >= max_items) return MakeError(Errc::kLimitExceeded, "full");
      }
      private_[{username, key}] = xml;
      return {};
    });
  }
  // Personal eventing, with the semantics of store.h: nodes by (owner, name),
  // items oldest first.
  void ListPepNodes(std::string username, store::Reply<std::vector<store::PepNode>> reply) override {
    Finish("ListPepNodes", std::move(reply), [=, this]() mutable -> Result<std::vector<store::PepNode>> {
      std::vector<store::PepNode> out;
      for (const auto& [key, data] : pep_) {
        if (key.first == username) out.push_back(data.node);  // the map keeps them sorted by name
      }
      return out;
    });
  }
  void PutPepNode(store::PepNode node, int64_t max_nodes, store::Reply<void> reply) override {
    Finish("PutPepNode", std::move(reply), [=, this]() mutable -> Result<void> {
      if (auto r = CheckPepNode(node); !r.ok()) return r;
      if (!accounts_.count(node.username)) return MakeError(Errc::kNotFound, "no account");
      auto it = pep_.find({node.username, node.node});
      if (it == pep_.end()) {
        if (PepNodeCount(node.username) >= max_nodes)
          return MakeError(Errc::kLimitExceeded, "too many nodes");
        node.created_ms = PepNowMs();
        it = pep_.emplace(std::make_pair(node.username, node.node), PepData{}).first;
      } else {
        node.created_ms = it->second.node.created_ms;
      }
      it->second.node = SortedGroups(std::move(node));
      PrunePep(it->second, it->second.node.max_items);
      return {};
    });
  }
  void DeletePepNode(std::string username, std::string node, store::Reply<void> reply) override {
    Finish("DeletePepNode", std::move(reply), [=, this]() mutable -> Result<void> {
      if (pep_.erase({username, node}) == 0) return MakeError(Errc::kNotFound, "no such node");
      return {};
    });
  }
  void PublishPepItem(store::PepNode node, store::PepItem item, int64_t max_nodes,
                      store::Reply<void> reply) override {
    Finish("PublishPepItem", std::move(reply), [=, this]() mutable -> Result<void> {
      if (auto r = CheckPepNode(node); !r.ok()) return r;
      if (item.id.empty()) return MakeError(Errc::kInvalidArgument, "empty item id");
      auto data = EnsurePepNode(std::move(node), max_nodes);
      if (!data.ok()) return data.error();
      PutPepItemDirect(**data, std::move(item), PepNowMs());
      PrunePep(**data, (*data)->node.max_items);
      return {};
    });
  }
  void SetPepItems(store::PepNode node, std::vector<store::PepItem> items, int64_t max_nodes,
                   store::Reply<void> reply) override {
    Finish("SetPepItems", std::move(reply), [=, this]() mutable -> Result<void> {
      if (auto r = CheckPepNode(node); !r.ok()) return r;
      for (const auto& item : items) {
        if (item.id.empty()) return MakeError(Errc::kInvalidArgument, "empty item id");
      }
      auto data = EnsurePepNode(std::move(node), max_nodes);
      if (!data.ok()) return data.error();
      (*data)->items.clear();
      const int64_t now_ms = PepNowMs();
      for (auto& item : items) PutPepItemDirect(**data, std::move(item), now_ms);
      PrunePep(**data, (*data)->node.max_items);
      return {};
    });
  }
  void GetPepItems(std::string username, std::string node, std::vector<std::string> ids, int64_t max,
                   store::Reply<std::vector<store::PepItem>> reply) override {
    Finish("GetPepItems", std::move(reply), [=, this]() mutable -> Result<std::vector<store::PepItem>> {
      auto it = pep_.find({username, node});
      if (it == pep_.end()) return MakeError(Errc::kNotFound, "no such node");
      std::vector<store::PepItem> out;
      const auto& items = it->second.items;
      for (auto item = items.rbegin(); item != items.rend(); ++item) {
        if (!ids.empty()) {
          if (std::find(ids.begin(), ids.end(), item->id) != ids.end()) out.push_back(*item);
        } else if (max < 0 || static_cast<int64_t>(out.size()) < max) {
          out.push_back(*item);
        }
      }
      return out;
    });
  }
  void RetractPepItems(std::string username, std::string node, std::vector<std::string> ids,
                       store::Reply<int64_t> reply) override {
    Finish("RetractPepItems", std::move(reply), [=, this]() mutable -> Result<int64_t> {
      auto it = pep_.find({username, node});
      if (it == pep_.end()) return MakeError(Errc::kNotFound, "no such node");
      return static_cast<int64_t>(std::erase_if(it->second.items, [&](const store::PepItem& item) {
        return std::find(ids.begin(), ids.end(), item.id) != ids.end();
      }));
    });
  }
  void PurgePepNode(std::string username, std::string node, store::Reply<void> reply) override {
    Finish("PurgePepNode", std::move(reply), [=, this]() mutable -> Result<void> {
      auto it = pep_.find({username, node});
      if (it == pep_.end()) return MakeError(Errc::kNotFound, "no such node");
      it->second.items.clear();
      return {};
    });
  }
  void LastPepItems(std::vector<std::string> owners, std::vector<std::string> nodes,
                    std::vector<std::string> unless_blocking,
                    store::Reply<std::vector<store::PepLastItem>> reply) override {
    Finish("LastPepItems", std::move(reply), [=, this]() mutable -> Result<std::vector<store::PepLastItem>> {
      std::set<std::string> owner_set(owners.begin(), owners.end());
      std::set<std::string> node_set(nodes.begin(), nodes.end());
      std::vector<store::PepLastItem> out;
      for (const auto& [key, data] : pep_) {
        if (!owner_set.count(key.first) || !node_set.count(key.second) || data.items.empty()) continue;
        auto blocks = blocklists_.find(key.first);
        if (blocks != blocklists_.end() &&
            std::any_of(unless_blocking.begin(), unless_blocking.end(),
                        [&](const std::string& j) { return blocks->second.count(j) != 0; }))
          continue;
        out.push_back(store::PepLastItem{data.node, data.items.back()});
      }
      return out;
    });
  }
  // A node and its items, oldest first.
  struct PepData {
    store::PepNode node;
    std::vector<store::PepItem> items;
  };
  std::map<std::pair<std::string, std::string>, PepData>& pep() { return pep_; }

  void Close() override {}

 private:
  static Result<void> CheckPepNode(const store::PepNode& node) {
    if (node.node.empty()) return MakeError(Errc::kInvalidArgument, "empty node name");
    const auto& a = node.access_model;
    if (a != "open" && a != "presence" && a != "roster" && a != "whitelist")
      return MakeError(Errc::kInvalidArgument, "access model");
    const auto& l = node.send_last;
    if (l != "never" && l != "on_sub" && l != "on_sub_and_presence")
      return MakeError(Errc::kInvalidArgument, "send_last");
    return {};
  }
  static int64_t PepNowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static store::PepNode SortedGroups(store::PepNode node) {
    std::set<std::string> groups(node.roster_groups.begin(), node.roster_groups.end());
    node.roster_groups.assign(groups.begin(), groups.end());
    return node;
  }
  int64_t PepNodeCount(const std::string& username) const {
    int64_t n = 0;
    for (const auto& [key, data] : pep_) n += key.first == username ? 1 : 0;
    return n;
  }
  // Creates the node (with the max_nodes rule) unless it exists; its data.
  Result<PepData*> EnsurePepNode(store::PepNode node, int64_t max_nodes) {
    if (!accounts_.count(node.username)) return MakeError(Errc::kNotFound, "no account");
    auto it = pep_.find({node.username, node.node});
    if (it != pep_.end()) return &it->second;
    if (PepNodeCount(node.username) >= max_nodes) return MakeError(Errc::kLimitExceeded, "too many nodes");
    node.created_ms = PepNowMs();
    auto key = std::make_pair(node.username, node.node);
    PepData& data = pep_[key];
    data.node = SortedGroups(std::move(node));
    return &data;
  }
  static void PutPepItemDirect(PepData& data, store::PepItem item, int64_t now_ms) {
    std::erase_if(data.items, [&](const store::PepItem& i) { return i.id == item.id; });
    item.updated_ms = now_ms;
    data.items.push_back(std::move(item));
  }
  static void PrunePep(PepData& data, int64_t keep) {
    const auto limit = static_cast<size_t>(std::max<int64_t>(keep, 0));
    if (data.items.size() > limit) data.items.erase(data.items.begin(), data.items.end() - limit);
  }

  // `work` owns copies of the call's arguments, so it can run later.
  template <class T, class Work>
  void Finish(const std::string& method, store::Reply<T> reply, Work work) {
    ++calls_[method];
    auto fail = fail_.find(method);
    if (fail != fail_.end()) {
      Errc code = fail->second;
      fail_.erase(fail);
      reply(Result<T>(MakeError(code, "injected")));
      return;
    }
    if (hold_ && (hold_method_.empty() || hold_method_ == method)) {
      held_.push_back([reply = std::move(reply), work = std::move(work)]() mutable { reply(work()); });
      return;
    }
    reply(work());
  }

  std::set<std::string> accounts_;
  std::map<std::string, store::Roster> rosters_;
  std::map<std::string, std::vector<store::OfflineMessage>> offline_;
  std::map<std::string, std::string> vcards_;
  std::map<std::string, std::vector<store::ArchivedMessage>> archive_;
  std::map<std::string, store::DeviceState> devices_;
  std::map<std::string, std::vector<store::PushRegistration>> pushes_;
  std::map<std::string, std::set<std::string>> blocklists_;
  std::map<std::pair<std::string, std::string>, std::string> private_;
  std::map<std::string, store::ArchivePrefs> prefs_;
  std::map<std::pair<std::string, std::string>, PepData> pep_;
  int64_t last_archive_id_ = 1'700'000'000'000'000;  // microseconds, as the real store assigns
  std::map<std::string, Errc> fail_;
  std::map<std::string, int> calls_;
  int64_t next_offline_id_ = 0;
  bool hold_ = false;
  std::string hold_method_;
  std::vector<std::function<void()>> held_;
};

}  // namespace nines::im::testing
