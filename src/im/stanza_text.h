// Helpers that edit serialised stanzas as text, and XEP-0082 timestamps.
//
// The hub serialises a stanza once and then needs small variations of it: a
// presence with a different 'to' for each contact, an offline message with a
// <delay/> added, a stored vCard inside an IQ result. Rebuilding an Element
// tree for each would cost far more than the edit, so these work on the text.
// They are only applied to XML that xml::Element::Serialize produced (the
// hub's own output, or stored copies of it): a root element whose name
// follows '<' directly, attributes quoted, and either "/>" or "</name>" at
// the end.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "xml/element.h"

namespace nines::im {

// Returns `stanza` with  to='<to>'  added right after the root element's
// name. The caller guarantees the root has no 'to' yet.
std::string WithTo(std::string_view stanza, std::string_view to);

// The value of the root element's attribute `name` as serialised (still
// escaped: compare it with a value passed through AppendAttr), or nullopt.
std::optional<std::string_view> RootAttr(std::string_view stanza, std::string_view name);
// The same attribute's value as text: the escapes this server's serialiser
// writes (the five entities and decimal or hex character references) undone.
// nullopt if there is no such attribute or an escape is not one of those.
std::optional<std::string> RootAttrText(std::string_view stanza, std::string_view name);

// Appends `child_xml` as the last child of the root element of `stanza`
// (turning <x .../> into <x ...>child</x>). Returns false, leaving `stanza`
// unchanged, if the text does not end like a serialised element.
bool AppendChildXml(std::string& stanza, std::string_view child_xml);

// `stanza` with <stanza-id xmlns='urn:xmpp:sid:0' by='<by>' id='<id>'/>
// (XEP-0359) as the root's last child (AppendChildXml), built in one
// allocation: once for every archived message.
std::string WithStanzaId(std::string_view stanza, std::string_view by, int64_t id);
// The same, in place: `stanza` becomes what WithStanzaId would return.
void InsertStanzaId(std::string& stanza, std::string_view by, int64_t id);

// XEP-0082 DateTime in UTC with milliseconds: 2024-05-01T12:34:56.789Z.
std::string FormatTimestamp(int64_t unix_ms);

// Parses an XEP-0082 DateTime (CCYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm|-hh:mm))
// into unix milliseconds. Fractions beyond milliseconds are cut off. Returns
// false for anything else.
bool ParseTimestamp(std::string_view text, int64_t& unix_ms);

// Returns `stanza` with  xmlns='<ns>'  added right after the root element's
// name, for embedding a jabber:client stanza under another namespace
// (XEP-0297 <forwarded/>). The root must not declare a namespace yet (the
// serializer never writes one on a jabber:client root).
std::string WithNamespace(std::string_view stanza, std::string_view ns);

// <delay xmlns='urn:xmpp:delay' from='<domain>' stamp='...'/> (XEP-0203).
std::string DelayXml(std::string_view domain, int64_t unix_ms);

// Wall-clock milliseconds since the Unix epoch.
int64_t NowUnixMs();

// Parses one serialised element (a stored stanza or payload, which this
// server wrote) back into a tree, with jabber:client as the enclosing
// namespace; nullopt if it is not exactly one well-formed element.
std::optional<xml::Element> ParseElement(std::string_view xml);

// Appends  name='escaped value'  (with a leading space).
void AppendAttr(std::string& out, std::string_view name, std::string_view value);

}  // namespace nines::im
