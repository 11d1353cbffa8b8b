// XEP-0163 personal eventing (PEP): every account is a publish-subscribe
// service at its bare JID, with the part of XEP-0060 that PEP clients use,
// XEP-0223 private nodes, and XEP-0115 filtered notifications.
//
//   publish (with publish-options), retract, create (with configure), items
//   retrieval                               pubsub, the owner; items also others
//   configure get/set, default, delete, purge  pubsub#owner, the owner only
//
// Who hears of a publish (§4.3): the owner's available resources, and the
// available resources of every contact with a 'from' or 'both' subscription
// whom the node's access model lets read, in both cases only resources whose
// XEP-0115 capabilities list NODE+notify. A resource that becomes available
// (or whose capabilities grow) gets the newest item of every node it now
// notifies of, from its own account and from every contact it is subscribed
// to (§4.3.4, send_last_published_item on_sub_and_presence).
//
// Access models: open (any local account), presence (subscription 'from' or
// 'both'), roster (in one of pubsub#roster_groups_allowed), whitelist (the
// owner alone: XEP-0223 private data). Explicit subscriptions, affiliations
// and item-less (transient) publishing are not implemented and say so with
// <feature-not-implemented/> and the XEP-0060 <unsupported/> condition.
//
// Writes are applied to AccountState::pep_nodes first, then stored; the IQ
// result and the notifications go out from the store's Reply, so nobody
// hears of an item before it is durable (G1).

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <memory>

#include "im/caps.h"
#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::im {

namespace {

constexpr std::string_view kPubsub = "http://jabber.org/protocol/pubsub";
constexpr std::string_view kOwner = "http://jabber.org/protocol/pubsub#owner";
constexpr std::string_view kErrors = "http://jabber.org/protocol/pubsub#errors";
constexpr std::string_view kData = "jabber:x:data";
constexpr std::string_view kDiscoInfo = "http://jabber.org/protocol/disco#info";
constexpr std::string_view kNodeConfig = "http://jabber.org/protocol/pubsub#node_config";
constexpr size_t kMaxNodeName = 1024;
constexpr size_t kMaxItemId = 1024;
constexpr size_t kMaxPepWaiting = 256;  // requests waiting for the node list to load

using Fields = std::map<std::string, std::vector<std::string>, std::less<>>;

// A stanza error with an XEP-0060 condition in pubsub#errors (`app`, with
// `feature` for <unsupported/>).
struct PepError {
  std::string_view condition;
  std::string_view app;
  std::string_view feature;
  std::string_view text;
};

void Fail(HubImpl& hub, const IqCall& call, const PepError& e) {
  xml::Element reply = xmpp::MakeErrorReply(call.iq, xmpp::DefaultErrorType(e.condition), e.condition, e.text);
  if (!e.app.empty()) {
    if (xml::Element* error = reply.Child("error")) {
      xml::Element& app = error->AddChild(std::string(e.app), std::string(kErrors));
      if (!e.feature.empty()) app.SetAttr("feature", std::string(e.feature));
    }
  }
  hub.ReplyStanza(call, reply);
}

void Unsupported(HubImpl& hub, const IqCall& call, std::string_view feature) {
  Fail(hub, call, {"feature-not-implemented", "unsupported", feature, "not offered by this PEP service"});
}

Fields FormFields(const xml::Element& form) {
  Fields fields;
  for (const xml::Element* field : form.Children()) {
    if (field->name() != "field" || field->ns() != kData) continue;
    std::vector<std::string>& values = fields[std::string(field->Attr("var"))];
    for (const xml::Element* v : field->Children()) {
      if (v->name() == "value") values.push_back(v->Text());
    }
  }
  return fields;
}

// The fields of the data form inside `parent` (a <configure/> or
// <publish-options/>), or none.
Fields FieldsIn(const xml::Element* parent) {
  if (parent == nullptr) return {};
  const xml::Element* x = parent->Child("x", kData);
  if (x == nullptr || x->Attr("type") == "cancel") return {};
  return FormFields(*x);
}

bool ParseBool(std::string_view v, bool& out) {
  if (v == "1" || v == "true") {
    out = true;
    return true;
  }
  if (v == "0" || v == "false") {
    out = false;
    return true;
  }
  return false;
}

std::string_view Single(const std::vector<std::string>& values) {
  return values.size() == 1 ? std::string_view(values.front()) : std::string_view();
}

// Node options nines does not keep because it has only one behaviour: the
// value that behaviour has. A form may name them with that value.
constexpr std::pair<std::string_view, std::string_view> kFixedOptions[] = {
    {"pubsub#publish_model", "publishers"},  {"pubsub#notification_type", "headline"},
    {"pubsub#notify_config", "0"},           {"pubsub#presence_based_delivery", "1"},
    {"pubsub#purge_offline", "0"},           {"pubsub#subscribe", "1"},
};

bool SameBoolOrText(std::string_view a, std::string_view b) {
  bool x = false;
  bool y = false;
  if (ParseBool(a, x) && ParseBool(b, y)) return x == y;
  return a == b;
}

// Applies the fields of a node_config or publish-options form to `node`.
// Returns "" or what is wrong (for a <not-acceptable/> or a failed
// precondition). `strict` (publish-options, XEP-0060 §7.1.5): a field nines
// does not know fails; otherwise (a configuration form) it is ignored.
std::string ApplyFields(store::PepNode& node, const Fields& fields, const Config& config, bool strict = false) {
  for (const auto& [var, values] : fields) {
    std::string_view v = Single(values);
    if (var == "FORM_TYPE" || var == "pubsub#description" || var == "pubsub#type") continue;
    if (var == "pubsub#access_model") {
      if (v != "open" && v != "presence" && v != "roster" && v != "whitelist")
        return "access models offered: open, presence, roster, whitelist";  // XEP-0060 <unsupported-access-model/>
      node.access_model = std::string(v);
    } else if (var == "pubsub#max_items") {
      if (v == "max") {
        node.max_items = config.limits.pep_items;
        continue;
      }
      int64_t n = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size() || n < 1) return "pubsub#max_items must be 'max' or a positive number";
      if (n > config.limits.pep_items) return "pubsub#max_items is larger than this server keeps";
      node.max_items = n;
    } else if (var == "pubsub#persist_items") {
      if (!ParseBool(v, node.persist_items)) return "pubsub#persist_items must be a boolean";
      if (!node.persist_items) return "items are always persisted here";
    } else if (var == "pubsub#send_last_published_item") {
      if (v != "never" && v != "on_sub" && v != "on_sub_and_presence")
        return "pubsub#send_last_published_item must be never, on_sub or on_sub_and_presence";
      node.send_last = std::string(v);
    } else if (var == "pubsub#notify_retract") {
      if (!ParseBool(v, node.notify_retract)) return "pubsub#notify_retract must be a boolean";
    } else if (var == "pubsub#notify_delete") {
      if (!ParseBool(v, node.notify_delete)) return "pubsub#notify_delete must be a boolean";
    } else if (var == "pubsub#deliver_payloads" || var == "pubsub#deliver_notifications") {
      bool on = true;
      if (!ParseBool(v, on) || !on) return std::string(var) + " is always on here";
    } else if (var == "pubsub#roster_groups_allowed") {
      node.roster_groups = values;
      std::sort(node.roster_groups.begin(), node.roster_groups.end());
      node.roster_groups.erase(std::unique(node.roster_groups.begin(), node.roster_groups.end()),
                               node.roster_groups.end());
    } else if (var == "pubsub#title") {
      node.title = std::string(v);
    } else {
      const std::string_view name = var;  // a structured binding cannot be captured (clang)
      const auto* fixed = std::find_if(std::begin(kFixedOptions), std::end(kFixedOptions),
                                       [name](const auto& f) { return f.first == name; });
      if (fixed != std::end(kFixedOptions)) {
        if (!SameBoolOrText(v, fixed->second)) return std::string(var) + " can only be " + std::string(fixed->second);
      } else if (strict) {
        return "unknown option " + var;
      }
    }
  }
  return {};
}

bool SameConfig(const store::PepNode& a, const store::PepNode& b) {
  return a.access_model == b.access_model && a.roster_groups == b.roster_groups && a.max_items == b.max_items &&
         a.persist_items == b.persist_items && a.send_last == b.send_last && a.notify_retract == b.notify_retract &&
         a.notify_delete == b.notify_delete && a.title == b.title;
}

// XEP-0060 §7.1.5: publish-options are preconditions on an existing node.
bool Satisfies(const store::PepNode& node, const Fields& fields, const Config& config) {
  store::PepNode wanted = node;
  return ApplyFields(wanted, fields, config, /*strict=*/true).empty() && SameConfig(wanted, node);
}

store::PepNode DefaultNode(std::string user, std::string name) {
  store::PepNode node;
  node.username = std::move(user);
  node.node = std::move(name);
  return node;  // store::PepNode's defaults are PEP's (XEP-0163 §5: presence access, one item)
}

void AppendField(std::string& out, std::string_view var, std::string_view type, const std::vector<std::string>& values,
                 std::initializer_list<std::string_view> options = {}) {
  out.append("<field");
  AppendAttr(out, "var", var);
  AppendAttr(out, "type", type);
  out.append(">");
  for (const auto& v : values) {
    out.append("<value>");
    xml::AppendEscapedText(out, v);
    out.append("</value>");
  }
  for (std::string_view o : options) {
    out.append("<option><value>");
    xml::AppendEscapedText(out, o);
    out.append("</value></option>");
  }
  out.append("</field>");
}

// The node_config form (XEP-0060 §8.2) describing `node`.
std::string ConfigForm(const store::PepNode& node) {
  auto b = [](bool v) { return std::vector<std::string>{v ? "1" : "0"}; };
  std::string out = "<x xmlns='jabber:x:data' type='form'>";
  AppendField(out, "FORM_TYPE", "hidden", {std::string(kNodeConfig)});
  AppendField(out, "pubsub#title", "text-single", {node.title});
  AppendField(out, "pubsub#access_model", "list-single", {node.access_model},
              {"open", "presence", "roster", "whitelist"});
  AppendField(out, "pubsub#roster_groups_allowed", "list-multi", node.roster_groups);
  AppendField(out, "pubsub#max_items", "text-single", {std::to_string(node.max_items)});
  AppendField(out, "pubsub#persist_items", "boolean", b(node.persist_items));
  AppendField(out, "pubsub#send_last_published_item", "list-single", {node.send_last},
              {"never", "on_sub", "on_sub_and_presence"});
  AppendField(out, "pubsub#notify_retract", "boolean", b(node.notify_retract));
  AppendField(out, "pubsub#notify_delete", "boolean", b(node.notify_delete));
  AppendField(out, "pubsub#deliver_payloads", "boolean", b(true));
  AppendField(out, "pubsub#deliver_notifications", "boolean", b(true));
  out.append("</x>");
  return out;
}

std::string ItemXml(const store::PepItem& item) {
  std::string out = "<item";
  AppendAttr(out, "id", item.id);
  if (item.xml.empty()) {
    out.append("/>");
  } else {
    out.append(">").append(item.xml).append("</item>");
  }
  return out;
}

// <event/> with an <items/> of one node holding `inner`.
std::string ItemsEvent(std::string_view node, std::string_view inner) {
  std::string out = "<event xmlns='http://jabber.org/protocol/pubsub#event'><items";
  AppendAttr(out, "node", node);
  out.append(">").append(inner).append("</items></event>");
  return out;
}

std::string EventMessage(std::string_view owner, std::string_view to, std::string_view event, int64_t delay_ms = 0,
                         std::string_view domain = {}) {
  std::string out = "<message type='headline'";
  AppendAttr(out, "from", owner);
  AppendAttr(out, "to", to);
  out.append(">").append(event);
  if (delay_ms != 0) out.append(DelayXml(domain, delay_ms));
  out.append("</message>");
  return out;
}

bool Notifies(const Resource& res, std::string_view node) {
  return res.available && res.caps != nullptr && res.caps->Notifies(node);
}

// The condition for a reader the access model keeps out (XEP-0060 §6.5.9).
PepError AccessError(const store::PepNode& node) {
  if (node.access_model == "presence")
    return {"not-authorized", "presence-subscription-required", {}, "only contacts subscribed to the owner's presence"};
  if (node.access_model == "roster")
    return {"not-authorized", "not-in-roster-group", {}, "only contacts in the allowed roster groups"};
  return {"not-allowed", "closed-node", {}, "only the owner may read this node"};
}

// The node name of a request element, checked; "" with the error sent.
std::string NodeOf(HubImpl& hub, const IqCall& call, const xml::Element& e) {
  std::string node(e.Attr("node"));
  if (node.empty()) {
    Fail(hub, call, {"bad-request", "nodeid-required", {}, "a node name is needed"});
    return {};
  }
  if (node.size() > kMaxNodeName) {
    Fail(hub, call, {"not-acceptable", {}, {}, "the node name is too long"});
    return {};
  }
  return node;
}

// Runs `op` with the account's nodes loaded, or answers the call with an
// error if they cannot be.
template <class F>
void WithNodes(HubImpl& hub, const IqCallPtr& call, AccountState& st, F&& op) {
  if (st.pep_load != AccountState::PepLoad::kLoaded && st.pep_waiting.size() >= kMaxPepWaiting) {
    hub.ReplyError(*call, "resource-constraint", "too many PEP requests at once");
    return;
  }
  hub.WithPep(st, [&hub, call, op = std::forward<F>(op)](AccountState& st, bool ok) mutable {
    if (!ok) {
      hub.ReplyError(*call, "internal-server-error");
      return;
    }
    op(st);
  });
}

// ---------------------------------------------------------------------------
// Requests

void Publish(HubImpl& hub, const IqCallPtr& call, AccountState& st, const xml::Element& publish,
             const xml::Element* options) {
  std::string node = NodeOf(hub, *call, publish);
  if (node.empty()) return;
  std::vector<const xml::Element*> items;
  for (const xml::Element* child : publish.Children()) {
    if (child->name() == "item" && child->ns() == kPubsub) items.push_back(child);
  }
  if (items.empty()) {
    Fail(hub, *call, {"bad-request", "item-required", {}, "PEP nodes keep items: publish one"});
    return;
  }
  if (items.size() > 1) {
    Fail(hub, *call, {"bad-request", "invalid-payload", {}, "publish one item at a time"});
    return;
  }
  std::vector<const xml::Element*> payload = items.front()->Children();
  if (payload.empty()) {
    Fail(hub, *call, {"bad-request", "payload-required", {}, "the item has no payload"});
    return;
  }
  if (payload.size() > 1) {
    Fail(hub, *call, {"bad-request", "invalid-payload", {}, "an item holds one payload element"});
    return;
  }
  store::PepItem item;
  item.id = std::string(items.front()->Attr("id"));
  if (item.id.empty()) item.id = xmpp::RandomId(16);
  if (item.id.size() > kMaxItemId) {
    Fail(hub, *call, {"not-acceptable", {}, {}, "the item id is too long"});
    return;
  }
  item.xml = payload.front()->Serialize();
  item.publisher = std::string(BareOf(call->from));
  const Config& config = hub.ConfigOn(st.home);
  if (static_cast<int64_t>(item.xml.size()) > config.limits.pep_item_size) {
    Fail(hub, *call, {"not-acceptable", "payload-too-big", {}, "the item is larger than this server keeps"});
    return;
  }
  Fields fields = FieldsIn(options);
  WithNodes(hub, call, st, [&hub, call, node = std::move(node), item = std::move(item), fields = std::move(fields)](
                               AccountState& st) mutable {
    const Config& config = hub.ConfigOn(st.home);
    store::PepNode target;
    if (const auto it = st.pep_nodes.find(node); it != st.pep_nodes.end()) {
      if (!Satisfies(it->second, fields, config)) {
        Fail(hub, *call, {"conflict", "precondition-not-met", {}, "the node is configured otherwise"});
        return;
      }
      target = it->second;
    } else {
      target = DefaultNode(st.user, node);
      if (!ApplyFields(target, fields, config, /*strict=*/true).empty()) {
        Fail(hub, *call, {"conflict", "precondition-not-met", {}, "those publish-options cannot be met"});
        return;
      }
    }
    std::string id = item.id;
    hub.BeforeFirstBookmark(st, node, [&hub, call, node, fields = std::move(fields), target = std::move(target),
                                       item = std::move(item), id = std::move(id)](AccountState& st) mutable {
    // The node may exist now (legacy bookmarks moved into it): its
    // configuration stands, and the options are preconditions on it.
    if (const auto it = st.pep_nodes.find(node); it != st.pep_nodes.end() && !SameConfig(it->second, target)) {
      if (!Satisfies(it->second, fields, hub.ConfigOn(st.home))) {
        Fail(hub, *call, {"conflict", "precondition-not-met", {}, "the node is configured otherwise"});
        return;
      }
      target = it->second;
    }
    hub.PepPublish(st, std::move(target), std::move(item),
                   [&hub, call, node = std::move(node), id = std::move(id)](AccountState&, const Result<void>& r) {
                     if (r.ok()) {
                       std::string inner = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish";
                       AppendAttr(inner, "node", node);
                       inner.append("><item");
                       AppendAttr(inner, "id", id);
                       inner.append("/></publish></pubsub>");
                       hub.ReplyResult(*call, inner);
                     } else if (r.error().code == Errc::kLimitExceeded) {
                       Fail(hub, *call, {"not-acceptable", "max-nodes-exceeded", {}, "this account has as many nodes as allowed"});
                     } else {
                       hub.ReplyError(*call, "internal-server-error");
                     }
                   });
    });
  });
}

void Create(HubImpl& hub, const IqCallPtr& call, AccountState& st, const xml::Element& create,
            const xml::Element* configure) {
  if (create.Attr("node").empty()) {
    Fail(hub, *call, {"not-acceptable", "nodeid-required", {}, "instant nodes are not offered: name the node"});
    return;
  }
  std::string node = NodeOf(hub, *call, create);
  if (node.empty()) return;
  Fields fields = FieldsIn(configure);
  WithNodes(hub, call, st, [&hub, call, node = std::move(node), fields = std::move(fields)](AccountState& st) mutable {
    if (st.pep_nodes.count(node) != 0) {
      hub.ReplyError(*call, "conflict", "the node exists");
      return;
    }
    const Config& config = hub.ConfigOn(st.home);
    store::PepNode target = DefaultNode(st.user, node);
    if (std::string why = ApplyFields(target, fields, config); !why.empty()) {
      hub.ReplyError(*call, "not-acceptable", why);
      return;
    }
    hub.PepConfigure(st, std::move(target), [&hub, call](AccountState&, const Result<void>& r) {
      if (r.ok()) {
        hub.ReplyResult(*call);
      } else if (r.error().code == Errc::kLimitExceeded) {
        Fail(hub, *call, {"not-acceptable", "max-nodes-exceeded", {}, "this account has as many nodes as allowed"});
      } else {
        hub.ReplyError(*call, "internal-server-error");
      }
    });
  });
}

void Retract(HubImpl& hub, const IqCallPtr& call, AccountState& st, const xml::Element& retract) {
  std::string node = NodeOf(hub, *call, retract);
  if (node.empty()) return;
  std::vector<std::string> ids;
  for (const xml::Element* child : retract.Children()) {
    if (child->name() == "item" && child->ns() == kPubsub && !child->Attr("id").empty())
      ids.emplace_back(child->Attr("id"));
  }
  if (ids.empty()) {
    Fail(hub, *call, {"bad-request", "item-required", {}, "name the items to retract"});
    return;
  }
  bool notify_given = false;
  bool notify = false;
  if (const std::string* attr = retract.FindAttr("notify")) notify_given = ParseBool(*attr, notify);
  WithNodes(hub, call, st, [&hub, call, node = std::move(node), ids = std::move(ids), notify_given, notify](
                               AccountState& st) mutable {
    auto it = st.pep_nodes.find(node);
    if (it == st.pep_nodes.end()) {
      hub.ReplyError(*call, "item-not-found", "no such node");
      return;
    }
    const bool tell = notify_given ? notify : it->second.notify_retract;
    hub.PepRetract(st, node, std::move(ids), tell, [&hub, call](AccountState&, Result<int64_t> r) {
      if (!r.ok()) {
        hub.ReplyError(*call, r.error().code == Errc::kNotFound ? "item-not-found" : "internal-server-error");
      } else if (*r == 0) {
        hub.ReplyError(*call, "item-not-found", "no such item");
      } else {
        hub.ReplyResult(*call);
      }
    });
  });
}

void Items(HubImpl& hub, const IqCallPtr& call, AccountState& st, const xml::Element& request) {
  std::string node = NodeOf(hub, *call, request);
  if (node.empty()) return;
  std::vector<std::string> ids;
  for (const xml::Element* child : request.Children()) {
    if (child->name() == "item" && child->ns() == kPubsub && !child->Attr("id").empty())
      ids.emplace_back(child->Attr("id"));
  }
  int64_t max = -1;
  if (const std::string* attr = request.FindAttr("max_items")) {
    auto [end, ec] = std::from_chars(attr->data(), attr->data() + attr->size(), max);
    if (ec != std::errc() || end != attr->data() + attr->size() || max < 0) {
      hub.ReplyError(*call, "bad-request", "max_items must be a number");
      return;
    }
  }
  WithNodes(hub, call, st, [&hub, call, node = std::move(node), ids = std::move(ids), max](AccountState& st) mutable {
    auto it = st.pep_nodes.find(node);
    if (it == st.pep_nodes.end()) {
      hub.ReplyError(*call, "item-not-found", "no such node");
      return;
    }
    if (!hub.PepMayRead(st, it->second, BareOf(call->from))) {
      Fail(hub, *call, AccessError(it->second));
      return;
    }
    ++st.busy;
    hub.store().GetPepItems(
        st.user, node, std::move(ids), max,
        store::Reply<std::vector<store::PepItem>>(
            hub.loop(st.home).executor(),
            [&hub, call, node, home = st.home, bare = st.bare](Result<std::vector<store::PepItem>> items) {
              if (!items.ok()) {
                hub.ReplyError(*call, items.error().code == Errc::kNotFound ? "item-not-found" : "internal-server-error");
              } else {
                std::string inner = "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items";
                AppendAttr(inner, "node", node);
                inner.append(">");
                // Oldest first: the store gives the newest first.
                for (auto i = items->rbegin(); i != items->rend(); ++i) inner.append(ItemXml(*i));
                inner.append("</items></pubsub>");
                hub.ReplyResult(*call, inner);
              }
              hub.Release(home, bare);
            }));
  });
}

void PubsubGet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& pubsub = call->payload();
  if (pubsub.name() != "pubsub") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  if (const xml::Element* items = pubsub.Child("items", kPubsub)) {
    Items(hub, call, *st, *items);
  } else if (pubsub.Child("subscriptions", kPubsub) != nullptr) {
    Unsupported(hub, *call, "retrieve-subscriptions");
  } else if (pubsub.Child("affiliations", kPubsub) != nullptr) {
    Unsupported(hub, *call, "retrieve-affiliations");
  } else if (pubsub.Child("options", kPubsub) != nullptr) {
    Unsupported(hub, *call, "subscription-options");
  } else {
    hub.ReplyError(*call, "bad-request", "nothing this PEP service answers");
  }
}

void PubsubSet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& pubsub = call->payload();
  if (pubsub.name() != "pubsub") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  if (pubsub.Child("subscribe", kPubsub) != nullptr || pubsub.Child("unsubscribe", kPubsub) != nullptr) {
    Unsupported(hub, *call, "subscribe");
    return;
  }
  if (pubsub.Child("options", kPubsub) != nullptr) {
    Unsupported(hub, *call, "subscription-options");
    return;
  }
  if (call->scope != kScopeSelf) {
    hub.ReplyError(*call, "forbidden", "only the owner publishes to a PEP service");
    return;
  }
  if (const xml::Element* publish = pubsub.Child("publish", kPubsub)) {
    Publish(hub, call, *st, *publish, pubsub.Child("publish-options", kPubsub));
  } else if (const xml::Element* create = pubsub.Child("create", kPubsub)) {
    Create(hub, call, *st, *create, pubsub.Child("configure", kPubsub));
  } else if (const xml::Element* retract = pubsub.Child("retract", kPubsub)) {
    Retract(hub, call, *st, *retract);
  } else {
    hub.ReplyError(*call, "bad-request", "nothing this PEP service answers");
  }
}

// The answer to a pubsub#owner request nines does not serve.
void NotAnOwnerRequest(HubImpl& hub, const IqCall& call, const xml::Element& pubsub) {
  if (pubsub.Child("subscriptions", kOwner) != nullptr) {
    Unsupported(hub, call, "manage-subscriptions");
  } else if (pubsub.Child("affiliations", kOwner) != nullptr) {
    Unsupported(hub, call, "modify-affiliations");
  } else {
    hub.ReplyError(call, "bad-request", "nothing this PEP service answers");
  }
}

void OwnerGet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& pubsub = call->payload();
  if (pubsub.name() != "pubsub") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  if (pubsub.Child("default", kOwner) != nullptr) {
    hub.ReplyResult(*call, "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><default>" +
                               ConfigForm(DefaultNode(st->user, {})) + "</default></pubsub>");
    return;
  }
  const xml::Element* configure = pubsub.Child("configure", kOwner);
  if (configure == nullptr) {
    NotAnOwnerRequest(hub, *call, pubsub);
    return;
  }
  std::string node = NodeOf(hub, *call, *configure);
  if (node.empty()) return;
  WithNodes(hub, call, *st, [&hub, call, node = std::move(node)](AccountState& st) {
    auto it = st.pep_nodes.find(node);
    if (it == st.pep_nodes.end()) {
      hub.ReplyError(*call, "item-not-found", "no such node");
      return;
    }
    std::string inner = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure";
    AppendAttr(inner, "node", node);
    inner.append(">").append(ConfigForm(it->second)).append("</configure></pubsub>");
    hub.ReplyResult(*call, inner);
  });
}

void OwnerSet(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& pubsub = call->payload();
  if (pubsub.name() != "pubsub") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  if (const xml::Element* configure = pubsub.Child("configure", kOwner)) {
    std::string node = NodeOf(hub, *call, *configure);
    if (node.empty()) return;
    const xml::Element* x = configure->Child("x", kData);
    if (x == nullptr) {
      hub.ReplyError(*call, "bad-request", "a configuration form is needed");
      return;
    }
    const bool cancel = x->Attr("type") == "cancel";
    Fields fields = FormFields(*x);
    WithNodes(hub, call, *st, [&hub, call, node = std::move(node), fields = std::move(fields), cancel](AccountState& st) {
      auto it = st.pep_nodes.find(node);
      if (it == st.pep_nodes.end()) {
        hub.ReplyError(*call, "item-not-found", "no such node");
        return;
      }
      if (cancel) {
        hub.ReplyResult(*call);
        return;
      }
      store::PepNode target = it->second;
      if (std::string why = ApplyFields(target, fields, hub.ConfigOn(st.home)); !why.empty()) {
        hub.ReplyError(*call, "not-acceptable", why);
        return;
      }
      hub.PepConfigure(st, std::move(target), [&hub, call](AccountState&, const Result<void>& r) {
        if (r.ok()) {
          hub.ReplyResult(*call);
        } else {
          hub.ReplyError(*call, "internal-server-error");
        }
      });
    });
    return;
  }
  const xml::Element* del = pubsub.Child("delete", kOwner);
  const xml::Element* purge = pubsub.Child("purge", kOwner);
  if (del == nullptr && purge == nullptr) {
    NotAnOwnerRequest(hub, *call, pubsub);
    return;
  }
  std::string node = NodeOf(hub, *call, del != nullptr ? *del : *purge);
  if (node.empty()) return;
  const bool deleting = del != nullptr;
  WithNodes(hub, call, *st, [&hub, call, node = std::move(node), deleting](AccountState& st) {
    if (st.pep_nodes.count(node) == 0) {
      hub.ReplyError(*call, "item-not-found", "no such node");
      return;
    }
    auto done = [&hub, call](AccountState&, const Result<void>& r) {
      if (r.ok()) {
        hub.ReplyResult(*call);
      } else {
        hub.ReplyError(*call, r.error().code == Errc::kNotFound ? "item-not-found" : "internal-server-error");
      }
    };
    if (deleting) {
      hub.PepDelete(st, node, done);
    } else {
      hub.PepPurge(st, node, done);
    }
  });
}

void OwnerForbidden(HubImpl& hub, const IqCallPtr& call, AccountState*) {
  hub.ReplyError(*call, "forbidden", "only the owner manages a PEP service");
}

}  // namespace

// ---------------------------------------------------------------------------
// Node state

void HubImpl::WithPep(AccountState& st, PepOp op) {
  if (st.pep_load == AccountState::PepLoad::kLoaded) {
    op(st, true);
    return;
  }
  st.pep_waiting.push_back(std::move(op));
  if (st.pep_load == AccountState::PepLoad::kLoading) return;
  if (st.pep_writes > 0) return;  // the last write's reply loads (see pep_writes)
  StartPepLoad(st);
}

void HubImpl::StartPepLoad(AccountState& st) {
  st.pep_load = AccountState::PepLoad::kLoading;
  ++st.busy;
  store_->ListPepNodes(
      st.user, store::Reply<std::vector<store::PepNode>>(
                   loop(st.home).executor(),
                   [this, home = st.home, bare = st.bare](Result<std::vector<store::PepNode>> nodes) {
                     AccountState* st = FindAccount(home, bare);
                     if (st == nullptr) return;
                     --st->busy;
                     ++st->running;
                     const bool ok = nodes.ok();
                     st->pep_nodes.clear();
                     if (ok) {
                       for (auto& n : *nodes) {
                         std::string name = n.node;
                         st->pep_nodes.emplace(std::move(name), std::move(n));
                       }
                       st->pep_load = AccountState::PepLoad::kLoaded;
                     } else {
                       spdlog::warn("im: loading the PEP nodes of {} failed: {}", bare, nodes.error().message);
                       st->pep_load = AccountState::PepLoad::kNone;  // the next need retries
                     }
                     auto waiting = std::move(st->pep_waiting);
                     st->pep_waiting.clear();
                     for (auto& op : waiting) op(*st, ok);
                     --st->running;
                     MaybeEvict(*st);
                   }));
}

void HubImpl::Release(size_t home, const std::string& bare) {
  if (AccountState* st = FindAccount(home, bare)) {
    --st->busy;
    MaybeEvict(*st);
  }
}

bool HubImpl::PepMayRead(const AccountState& owner, const store::PepNode& node, std::string_view viewer) const {
  if (viewer == owner.bare) return true;
  if (node.access_model == "open") return true;
  if (node.access_model == "whitelist") return false;
  const store::RosterItem* item = owner.FindItem(viewer);
  if (item == nullptr) return false;
  if (node.access_model == "presence") return HasFrom(item->subscription);
  if (node.access_model == "roster") {
    for (const auto& g : item->groups) {
      if (std::binary_search(node.roster_groups.begin(), node.roster_groups.end(), g)) return true;
    }
  }
  return false;
}

// Runs `done` on home after a PEP write: the account's state if it is still
// there (it is: the write holds it busy), and drops the node cache if the
// write failed, so that the next request reloads what the store has, once
// no other write is in flight (pep_writes).
template <class T, class Done>
store::Reply<T> HubImpl::PepWriteReply(AccountState& st, Done done) {
  ++st.busy;
  ++st.pep_writes;
  auto fn = std::make_shared<Done>(std::move(done));  // a Reply must be copyable; `done` need not be
  return store::Reply<T>(loop(st.home).executor(),
                         [this, home = st.home, bare = st.bare, fn](Result<T> r) mutable {
                           AccountState* st = FindAccount(home, bare);
                           if (st == nullptr) return;
                           --st->busy;
                           --st->pep_writes;
                           ++st->running;
                           if (!r.ok()) {
                             if (r.error().code != Errc::kLimitExceeded && r.error().code != Errc::kNotFound)
                               spdlog::warn("im: a PEP write for {} failed: {}", bare, r.error().message);
                             st->pep_nodes.clear();
                             st->pep_load = AccountState::PepLoad::kNone;
                           }
                           (*fn)(*st, std::move(r));
                           if (st->pep_writes == 0 && st->pep_load == AccountState::PepLoad::kNone &&
                               !st->pep_waiting.empty()) {
                             StartPepLoad(*st);
                           }
                           --st->running;
                           MaybeEvict(*st);
                         });
}

void HubImpl::PepPublish(AccountState& st, store::PepNode node, store::PepItem item, PepDone done) {
  st.pep_nodes.insert_or_assign(node.node, node);
  const int64_t max_nodes = ConfigOn(st.home).limits.pep_nodes;
  std::string event = ItemsEvent(node.node, ItemXml(item));
  std::optional<store::PepItem> avatar;  // XEP-0398 needs it after the write
  if (node.node == kAvatarMetadata) avatar = item;
  store::PepNode copy = node;
  store_->PublishPepItem(
      std::move(copy), std::move(item), max_nodes,
      PepWriteReply<void>(st, [this, node = std::move(node), event = std::move(event), avatar = std::move(avatar),
                               done = std::move(done)](AccountState& st, Result<void> r) mutable {
        if (r.ok()) {
          // The stored configuration wins over ours if another write created the node first.
          if (auto it = st.pep_nodes.find(node.node); it != st.pep_nodes.end()) node = it->second;
          done(st, r);
          PepNotify(st, node, std::move(event));
          if (avatar) AfterPepPublish(st, node.node, *avatar);
        } else {
          done(st, r);
        }
      }));
}

void HubImpl::PepReplaceItems(AccountState& st, store::PepNode node, std::vector<store::PepItem> items, PepDone done,
                              PepMerge merge) {
  // What the node holds now, to notify only what changes (XEP-0402 §5.3.2).
  ++st.busy;
  auto fn = std::make_shared<PepDone>(std::move(done));
  std::string name = node.node;  // not node.node below: `node` is moved into the Reply, built first or not
  store_->GetPepItems(
      st.user, std::move(name), {}, -1,
      store::Reply<std::vector<store::PepItem>>(
          loop(st.home).executor(), [this, home = st.home, bare = st.bare, node = std::move(node),
                                     items = std::move(items), fn, merge = std::move(merge)](
                                        Result<std::vector<store::PepItem>> before) mutable {
            AccountState* st = FindAccount(home, bare);
            if (st == nullptr) return;
            --st->busy;
            ++st->running;
            if (!before.ok() && before.error().code != Errc::kNotFound) {
              (*fn)(*st, Result<void>(before.error()));
            } else {
              std::map<std::string, std::string> old;  // id -> payload
              if (before.ok()) {
                for (auto& i : *before) old.emplace(std::move(i.id), std::move(i.xml));
              }
              std::vector<std::string> events;
              for (auto& item : items) {
                auto it = old.find(item.id);
                if (it != old.end() && merge) item.xml = merge(it->second, item.xml);
                if (it == old.end() || it->second != item.xml) events.push_back(ItemsEvent(node.node, ItemXml(item)));
                if (it != old.end()) old.erase(it);
              }
              std::string retracts;
              for (const auto& [id, xml] : old) {
                retracts.append("<retract");
                AppendAttr(retracts, "id", id);
                retracts.append("/>");
              }
              if (!retracts.empty() && node.notify_retract) events.push_back(ItemsEvent(node.node, retracts));
              st->pep_nodes.insert_or_assign(node.node, node);
              const int64_t max_nodes = ConfigOn(home).limits.pep_nodes;
              store::PepNode copy = node;
              store_->SetPepItems(
                  std::move(copy), std::move(items), max_nodes,
                  PepWriteReply<void>(*st, [this, name = node.node, events = std::move(events),
                                            fn](AccountState& st, Result<void> r) mutable {
                    (*fn)(st, r);
                    auto it = st.pep_nodes.find(name);
                    if (!r.ok() || it == st.pep_nodes.end()) return;
                    for (auto& e : events) PepNotify(st, it->second, std::move(e));
                  }));
            }
            --st->running;
            MaybeEvict(*st);
          }));
}

void HubImpl::PepConfigure(AccountState& st, store::PepNode node, PepDone done) {
  st.pep_nodes.insert_or_assign(node.node, node);
  const int64_t max_nodes = ConfigOn(st.home).limits.pep_nodes;
  store_->PutPepNode(std::move(node), max_nodes,
                     PepWriteReply<void>(st, [done = std::move(done)](AccountState& st, Result<void> r) mutable {
                       done(st, r);
                     }));
}

void HubImpl::PepRetract(AccountState& st, const std::string& node, std::vector<std::string> ids, bool notify,
                         UniqueFunction<void(AccountState&, Result<int64_t>)> done) {
  std::string inner;
  for (const auto& id : ids) {
    inner.append("<retract");
    AppendAttr(inner, "id", id);
    inner.append("/>");
  }
  store_->RetractPepItems(
      st.user, node, std::move(ids),
      PepWriteReply<int64_t>(st, [this, node, notify, event = ItemsEvent(node, inner), done = std::move(done)](
                                     AccountState& st, Result<int64_t> r) mutable {
        const bool retracted = r.ok() && *r > 0;
        done(st, std::move(r));
        auto it = st.pep_nodes.find(node);
        if (retracted && notify && it != st.pep_nodes.end()) PepNotify(st, it->second, std::move(event));
      }));
}

void HubImpl::PepDelete(AccountState& st, const std::string& node, PepDone done) {
  auto it = st.pep_nodes.find(node);
  if (it == st.pep_nodes.end()) {
    done(st, Result<void>(MakeError(Errc::kNotFound, "no such node")));
    return;
  }
  store::PepNode gone = std::move(it->second);
  st.pep_nodes.erase(it);
  store_->DeletePepNode(st.user, node,
                        PepWriteReply<void>(st, [this, gone = std::move(gone), done = std::move(done)](
                                                    AccountState& st, Result<void> r) mutable {
                          done(st, r);
                          if (r.ok() && gone.notify_delete) {
                            std::string event = "<event xmlns='http://jabber.org/protocol/pubsub#event'><delete";
                            AppendAttr(event, "node", gone.node);
                            event.append("/></event>");
                            PepNotify(st, gone, std::move(event));
                          }
                        }));
}

void HubImpl::PepPurge(AccountState& st, const std::string& node, PepDone done) {
  store_->PurgePepNode(st.user, node,
                       PepWriteReply<void>(st, [this, node, done = std::move(done)](AccountState& st,
                                                                                    Result<void> r) mutable {
                         done(st, r);
                         auto it = st.pep_nodes.find(node);
                         if (r.ok() && it != st.pep_nodes.end()) {
                           std::string event = "<event xmlns='http://jabber.org/protocol/pubsub#event'><purge";
                           AppendAttr(event, "node", node);
                           event.append("/></event>");
                           PepNotify(st, it->second, std::move(event));
                         }
                       }));
}

// ---------------------------------------------------------------------------
// Notifications

void HubImpl::PepNotify(AccountState& st, const store::PepNode& node, std::string event) {
  auto shared = std::make_shared<const std::string>(std::move(event));
  for (const auto& res : st.resources) {
    if (Notifies(res, node.node))
      DeliverTo(res, std::make_shared<const std::string>(EventMessage(st.bare, res.full, *shared)));
  }
  if (node.access_model == "whitelist" || !st.Ready()) return;
  const Config& config = ConfigOn(st.home);
  // One post per loop that holds contacts, not one per contact.
  std::vector<std::vector<std::string>> by_home(shards_.size());
  for (const auto& [jid, item] : st.roster) {
    if (!HasFrom(item.subscription) || !IsLocal(jid, config) || st.Blocks(jid)) continue;
    if (!PepMayRead(st, node, jid)) continue;
    by_home[HomeOf(jid)].push_back(jid);
  }
  for (size_t home = 0; home < by_home.size(); ++home) {
    if (by_home[home].empty()) continue;
    loop(home).Post([this, home, owner = st.bare, name = node.node, shared, contacts = std::move(by_home[home])] {
      for (const auto& jid : contacts) {
        AccountState* contact = FindAccount(home, jid);
        if (contact == nullptr || contact->Blocks(owner)) continue;  // nobody online; or XEP-0191
        for (const auto& res : contact->resources) {
          if (Notifies(res, name))
            DeliverTo(res, std::make_shared<const std::string>(EventMessage(owner, res.full, *shared)));
        }
      }
    });
  }
}

// ---------------------------------------------------------------------------
// Capabilities and last items

void HubImpl::NoteCaps(AccountState& st, Resource& res, const xml::Element& presence, CapsPtr before) {
  std::optional<CapsClaim> claim = ParseCapsClaim(presence);
  // §8.4: a presence without <c/> changes nothing (clients and servers may
  // leave it out of updates); the claim lasts as long as the resource.
  if (!claim) return;
  std::string key = claim->Key();
  if (key != res.caps_key) {
    res.caps_key = key;
    res.caps = caps_.Find(key);
    if (res.caps == nullptr) {
      std::string id;
      if (caps_.StartQuery(*claim, res.full, NowUnixMs(), id)) AskCaps(res.full, *claim, id);
    }
  }
  if (res.caps == nullptr) return;
  std::vector<std::string> fresh;
  for (const auto& node : res.caps->notify) {
    if (before == nullptr || !before->Notifies(node)) fresh.push_back(node);
  }
  SendLastItems(st, res, std::move(fresh));
}

void HubImpl::AskCaps(const std::string& full, const CapsClaim& claim, const std::string& id) {
  // XEP-0115 §6.3: ask the client what the hash stands for. It answers to
  // the server, and HandleCapsReply checks the answer.
  JidView view = SplitJid(full);
  std::string bare(view.Bare());
  size_t home = HomeOf(bare);
  loop(home).Post([this, home, bare = std::move(bare), name = std::string(view.resource), full, claim, id] {
    AccountState* st = FindAccount(home, bare);
    Resource* res = st != nullptr ? st->FindByName(name) : nullptr;
    if (res == nullptr) return;  // gone: the question waits for its retry time
    std::string iq = "<iq type='get'";
    AppendAttr(iq, "from", ConfigOn(home).domain);
    AppendAttr(iq, "to", full);
    AppendAttr(iq, "id", id);
    iq.append("><query xmlns='http://jabber.org/protocol/disco#info'");
    AppendAttr(iq, "node", claim.node + "#" + claim.ver);
    iq.append("/></iq>");
    DeliverTo(*res, std::make_shared<const std::string>(std::move(iq)));
  });
}

bool HubImpl::HandleCapsReply(const xml::Element& iq, const xmpp::Jid& from, const Config& config) {
  const std::string full = from.Full();
  std::optional<CapsClaim> claim = caps_.ClaimOf(iq.Attr("id"), full);
  if (!claim) return false;
  const xml::Element* query = iq.Attr("type") == "result" ? iq.Child("query", kDiscoInfo) : nullptr;
  if (query == nullptr || !VerifyCaps(*claim, *query)) {
    // §5.4: not kept; ask another client that claims the same hash.
    spdlog::info("im: {} answered the question about capabilities {} with {}; not kept", full, claim->Key(),
                 query == nullptr ? "an error" : "features that do not hash to it");
    std::string waiter, id;
    if (caps_.Reask(iq.Attr("id"), NowUnixMs(), waiter, id)) AskCaps(waiter, *claim, id);
    return true;
  }
  std::string key = claim->Key();
  auto features = std::make_shared<const CapsFeatures>(FeaturesOf(*query));
  std::vector<std::string> waiters =
      caps_.Insert(key, features, static_cast<size_t>(config.limits.caps_cache));
  for (auto& full : waiters) {
    JidView view = SplitJid(full);
    std::string bare(view.Bare());
    std::string name(view.resource);
    size_t home = HomeOf(bare);
    loop(home).Post([this, home, bare = std::move(bare), name = std::move(name), key, features] {
      AccountState* st = FindAccount(home, bare);
      Resource* res = st != nullptr ? st->FindByName(name) : nullptr;
      if (res == nullptr || res->caps_key != key || res->caps != nullptr) return;
      res->caps = features;
      if (res->available) SendLastItems(*st, *res, features->notify);
    });
  }
  return true;
}

void HubImpl::SendLastItems(AccountState& st, Resource& res, std::vector<std::string> nodes,
                            std::string_view only_owner) {
  if (nodes.empty() || !st.Ready()) return;
  const Config& config = ConfigOn(st.home);
  std::vector<std::string> owners;
  auto add = [&](std::string_view jid) {
    JidView v = SplitJid(jid);
    if (v.domain == config.domain && !v.local.empty() && v.IsBare()) owners.emplace_back(v.local);
  };
  if (!only_owner.empty()) {
    add(only_owner);
  } else {
    owners.push_back(st.user);
    for (const auto& [jid, item] : st.roster) {
      if (HasTo(item.subscription) && !st.Blocks(jid)) add(jid);
    }
  }
  if (owners.empty()) return;
  ++st.busy;
  // Owners who block this resource are left out by the store (XEP-0191:
  // they are not there for it); their state need not be loaded to know.
  store_->LastPepItems(
      std::move(owners), std::move(nodes), BlockKeysFor(res.full),
      store::Reply<std::vector<store::PepLastItem>>(
          loop(st.home).executor(),
          [this, home = st.home, bare = st.bare, ref = res.ref](Result<std::vector<store::PepLastItem>> items) {
            AccountState* st = FindAccount(home, bare);
            if (st == nullptr) return;
            Resource* res = st->FindByRef(ref);
            if (!items.ok()) {
              spdlog::warn("im: reading the last PEP items for {} failed: {}", bare, items.error().message);
            } else if (res != nullptr) {
              const std::string& domain = ConfigOn(home).domain;
              for (const auto& last : *items) {
                if (last.node.send_last != "on_sub_and_presence" || !Notifies(*res, last.node.node)) continue;
                std::string owner = last.node.username + "@" + domain;
                std::string event = ItemsEvent(last.node.node, ItemXml(last.item));
                if (owner != bare) {
                  if (last.node.access_model == "whitelist") continue;
                  if (last.node.access_model == "roster") {
                    // Only the owner's roster knows the groups: ask its home.
                    SendLastItemIfAllowed(owner, last, res->full, std::move(event));
                    continue;
                  }
                  // open, presence: we are subscribed to the owner, so the owner's
                  // roster has us as 'from' or 'both'.
                }
                DeliverTo(*res, std::make_shared<const std::string>(
                                    EventMessage(owner, res->full, event, last.item.updated_ms, domain)));
              }
            }
            --st->busy;
            MaybeEvict(*st);
          }));
}

void HubImpl::LastItemsForNewSubscription(AccountState& st, const std::string& owner) {
  for (auto& res : st.resources) {
    if (res.available && res.caps != nullptr) SendLastItems(st, res, res.caps->notify, owner);
  }
}

void HubImpl::SendLastItemIfAllowed(const std::string& owner, const store::PepLastItem& last, std::string to,
                                    std::string event) {
  PostToAccount(owner, [this, node = last.node, stamp = last.item.updated_ms, to = std::move(to),
                        event = std::move(event)](AccountState& owner) {
    if (!owner.Ready() || owner.Blocks(to) || !PepMayRead(owner, node, BareOf(to))) return;
    std::string bare(BareOf(to));
    std::string name(SplitJid(to).resource);
    size_t home = HomeOf(bare);
    loop(home).Post([this, home, bare = std::move(bare), name = std::move(name), owner = owner.bare,
                     node = node.node, stamp, to, event] {
      AccountState* st = FindAccount(home, bare);
      Resource* res = st != nullptr ? st->FindByName(name) : nullptr;
      if (res == nullptr || !Notifies(*res, node)) return;
      DeliverTo(*res, std::make_shared<const std::string>(EventMessage(owner, to, event, stamp, ConfigOn(home).domain)));
    });
  });
}

// ---------------------------------------------------------------------------
// Discovery

void HubImpl::PepDiscoItems(const IqCallPtr& call, AccountState& st) {
  WithNodes(*this, call, st, [this, call](AccountState& st) {
    std::string viewer(BareOf(call->from));
    std::string inner = "<query xmlns='http://jabber.org/protocol/disco#items'>";
    for (const auto& [name, node] : st.pep_nodes) {
      if (!PepMayRead(st, node, viewer)) continue;
      inner.append("<item");
      AppendAttr(inner, "jid", st.bare);
      AppendAttr(inner, "node", name);
      if (!node.title.empty()) AppendAttr(inner, "name", node.title);
      inner.append("/>");
    }
    inner.append("</query>");
    ReplyResult(*call, inner);
  });
}

void HubImpl::PepDiscoNode(const IqCallPtr& call, AccountState& st) {
  WithNodes(*this, call, st, [this, call](AccountState& st) {
    std::string name(call->payload().Attr("node"));
    auto it = st.pep_nodes.find(name);
    if (it == st.pep_nodes.end() || !PepMayRead(st, it->second, BareOf(call->from))) {
      ReplyError(*call, "item-not-found", "no such node");
      return;
    }
    std::string inner = "<query xmlns='http://jabber.org/protocol/disco#info'";
    AppendAttr(inner, "node", name);
    inner.append("><identity category='pubsub' type='leaf'/><feature var='http://jabber.org/protocol/pubsub'/></query>");
    ReplyResult(*call, inner);
  });
}

void HubImpl::RegisterPep() {
  constexpr unsigned kAccounts = kScopeSelf | kScopeAccount;
  const std::string pubsub(kPubsub);
  const std::string owner(kOwner);
  registry_.Add(IqHandler{pubsub, false, kAccounts, pubsub, {}, PubsubGet});
  registry_.Add(IqHandler{pubsub, true, kAccounts, "", {}, PubsubSet});
  registry_.Add(IqHandler{owner, false, kScopeSelf, "", {}, OwnerGet});
  registry_.Add(IqHandler{owner, true, kScopeSelf, "", {}, OwnerSet});
  registry_.Add(IqHandler{owner, false, kScopeAccount, "", {}, OwnerForbidden});
  registry_.Add(IqHandler{owner, true, kScopeAccount, "", {}, OwnerForbidden});
  // XEP-0060 §10 features this service has.
  for (std::string_view f :
       {"access-open", "access-presence", "access-roster", "access-whitelist", "auto-create", "auto-subscribe",
        "config-node", "config-node-max", "create-and-configure", "create-nodes", "delete-items", "delete-nodes", "filtered-notifications",
        "item-ids", "last-published", "persistent-items", "presence-notifications", "publish",
        "publish-options", "pubsub-on-a-jid", "purge-nodes", "retract-items", "retrieve-default",
        "retrieve-items"}) {
    registry_.AddFeature(kAccounts, pubsub + "#" + std::string(f));
  }
}

}  // namespace nines::im
