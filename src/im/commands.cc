// XEP-0050 ad-hoc commands the server offers its own users.
//
// One command so far: "Delete my message archive" (node
// urn:nines:delete-archive). XEP-0313 has no way for a user to delete their
// archive, and clients that speak XEP-0050 (Gajim, Conversations, Dino...)
// show server commands. The flow is the usual two steps: execute returns a
// form with a required confirmation; completing it with confirm=true deletes
// every message of the account's archive (its copies only: the people they
// talked to keep theirs) and answers with a note of how many went. Cancel
// ends the session. Sessions are kept in the account's state while it has a
// bound resource (at most kMaxSessions; the oldest goes first).
//
// Discovery: the server's disco#info lists http://jabber.org/protocol/commands,
// its disco#items on that node lists the commands (services.cc asks
// CommandItems), and disco#info on a command node answers with the
// automation/command-node identity (XEP-0050 §2.3).

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>

#include "im/hub_impl.h"
#include "im/stanza_text.h"
#include "xmpp/namespaces.h"
#include "xmpp/stanza.h"

namespace nines::im {

namespace {

constexpr std::string_view kCommands = "http://jabber.org/protocol/commands";
constexpr std::string_view kDeleteArchive = "urn:nines:delete-archive";
constexpr size_t kMaxSessions = 4;

std::string CommandXml(std::string_view node, std::string_view session, std::string_view status,
                       std::string_view inner) {
  std::string out = "<command xmlns='http://jabber.org/protocol/commands'";
  AppendAttr(out, "node", node);
  AppendAttr(out, "sessionid", session);
  AppendAttr(out, "status", status);
  if (inner.empty()) {
    out.append("/>");
  } else {
    out.push_back('>');
    out.append(inner);
    out.append("</command>");
  }
  return out;
}

// The value of the submitted form's field `var`, or "".
std::string FieldValue(const xml::Element& command, std::string_view var) {
  const xml::Element* x = command.Child("x", "jabber:x:data");
  if (x == nullptr) return {};
  for (const xml::Element* f : x->Children()) {
    if (f->name() == "field" && f->Attr("var") == var) return f->ChildText("value", "jabber:x:data");
  }
  return {};
}

void ExecuteOn(HubImpl& hub, const IqCallPtr& call, AccountState* st) {
  const xml::Element& command = call->payload();
  if (command.name() != "command") {
    hub.ReplyError(*call, "bad-request");
    return;
  }
  if (command.Attr("node") != kDeleteArchive) {
    hub.ReplyError(*call, "item-not-found", "no such command");
    return;
  }
  std::string action(command.Attr("action"));
  std::string session(command.Attr("sessionid"));
  if (action.empty()) action = session.empty() ? "execute" : "complete";  // §3.4: the default action
  auto known = std::find(st->command_sessions.begin(), st->command_sessions.end(), session);
  if (session.empty()) {
    if (action != "execute") {
      hub.ReplyError(*call, "bad-request", "no session to act on");
      return;
    }
    std::string id = xmpp::RandomId(12);
    if (st->command_sessions.size() >= kMaxSessions) st->command_sessions.erase(st->command_sessions.begin());
    st->command_sessions.push_back(id);
    hub.ReplyResult(
        *call,
        CommandXml(kDeleteArchive, id, "executing",
                   "<actions execute='complete'><complete/></actions>"
                   "<x xmlns='jabber:x:data' type='form'><title>Delete my message archive</title>"
                   "<instructions>This deletes every message in your archive on this server, on all your "
                   "devices, and cannot be undone. The people you talked to keep their own copies."
                   "</instructions><field var='confirm' type='boolean' label='Delete everything'><required/>"
                   "<value>0</value></field></x>"));
    return;
  }
  if (known == st->command_sessions.end()) {
    xml::Element reply = xmpp::MakeErrorReply(call->iq, "modify", "bad-request", "unknown or finished session");
    if (xml::Element* error = reply.Child("error")) error->AddChild("bad-sessionid", std::string(kCommands));
    hub.SendToSession(call->origin, reply.Serialize(xmpp::ns::kClient));
    return;
  }
  st->command_sessions.erase(known);
  if (action == "cancel") {
    hub.ReplyResult(*call, CommandXml(kDeleteArchive, session, "canceled", {}));
    return;
  }
  if (action != "complete" && action != "execute") {
    hub.ReplyError(*call, "bad-request", "this command has one step: complete or cancel");
    return;
  }
  std::string confirm = FieldValue(command, "confirm");
  if (confirm != "1" && confirm != "true") {
    hub.ReplyResult(*call, CommandXml(kDeleteArchive, session, "completed",
                                      "<note type='info'>Nothing was deleted: not confirmed.</note>"));
    return;
  }
  ++st->busy;
  hub.store().PruneArchive(
      st->user, std::numeric_limits<int64_t>::max(), -1,
      store::Reply<int64_t>(hub.loop(st->home).executor(), [&hub, call, session, home = st->home,
                                                            bare = st->bare](const Result<int64_t>& deleted) {
        if (!deleted.ok()) {
          spdlog::warn("im: deleting the archive of {} failed: {}", bare, deleted.error().message);
          hub.ReplyError(*call, "internal-server-error", "the archive could not be deleted");
        } else {
          spdlog::info("im: {} deleted their archive ({} messages)", bare, *deleted);
          std::string note = "<note type='info'>";
          xml::AppendEscapedText(note, "Deleted " + std::to_string(*deleted) + " messages from your archive.");
          note.append("</note>");
          hub.ReplyResult(*call, CommandXml(kDeleteArchive, session, "completed", note));
        }
        if (AccountState* st = hub.FindAccount(home, bare)) {
          --st->busy;
          hub.MaybeEvict(*st);
        }
      }));
}

// Addressed to the server, run on the requester's own account (its home).
void Execute(HubImpl& hub, const IqCallPtr& call, AccountState*) {
  hub.PostToAccount(std::string(BareOf(call->from)), [&hub, call](AccountState& st) {
    if (!st.Ready()) {
      hub.ReplyError(*call, "internal-server-error");
      return;
    }
    ExecuteOn(hub, call, &st);
  });
}

}  // namespace

std::string HubImpl::CommandItems(std::string_view domain) const {
  std::string out = "<item";
  AppendAttr(out, "jid", domain);
  AppendAttr(out, "node", kDeleteArchive);
  AppendAttr(out, "name", "Delete my message archive");
  out.append("/>");
  return out;
}

bool HubImpl::IsCommandNode(std::string_view node) { return node == kDeleteArchive; }

void HubImpl::RegisterCommands() {
  registry_.Add(IqHandler{std::string(kCommands), true, kScopeServer, std::string(kCommands), {}, Execute});
}

}  // namespace nines::im
