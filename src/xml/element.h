// Element: an XML element tree for one stanza.
//
// Names are stored as local name plus namespace URI (expat's namespace
// processing resolves prefixes), so code compares `ns` and `name` and never a
// prefix. Serialize() writes xmlns declarations only where the namespace
// differs from the parent's, with text and attribute values escaped.
//
// Attribute names:
//   - unprefixed attributes by their local name ("to", "type");
//   - attributes in the XML namespace as "xml:<local>" ("xml:lang"), written
//     as is because the xml prefix is always bound;
//   - any other namespaced attribute in Clark notation, "{uri}local". The
//     serialiser declares a generated prefix (a0, a1, ...) for it on the
//     element that carries it. '{' cannot start an XML name, so this never
//     collides with a real attribute name.
// Attributes named "xmlns" or "xmlns:*" are never written: namespaces are
// expressed only through ns().
//
// Serialisation of the streams namespace: an element whose ns() is
// kStreamsNs is written with the conventional "stream:" prefix
// (<stream:features/>, <stream:error/>) and no declaration, because every
// XMPP peer has that prefix bound by the stream header and several clients
// match on the prefixed name. Such output is meant for insertion inside an
// XMPP stream.
//
// Text and attribute values must be valid UTF-8 (parsed input always is).
// The serialiser drops C0 control characters other than tab, LF and CR,
// which XML 1.0 cannot represent, so its output is always well-formed.
//
// Memory: an Element is two strings and two vectors (112 bytes with
// libstdc++ on LP64; names and namespaces up to 15 bytes, like
// "jabber:client", need no further allocation). A child costs a Node (40
// bytes) plus its Element. Adjacent text is merged into one node.
//
// Thread safety: a plain value; not shared between threads while mutated.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nines::xml {

constexpr std::string_view kXmlNs = "http://www.w3.org/XML/1998/namespace";
constexpr std::string_view kStreamsNs = "http://etherx.jabber.org/streams";

struct Attribute {
  std::string name;  // local name; "xml:lang" for the xml namespace's lang
  std::string value;
};

class Element {
 public:
  Element() = default;
  Element(std::string name, std::string ns) : name_(std::move(name)), ns_(std::move(ns)) {}

  const std::string& name() const { return name_; }
  const std::string& ns() const { return ns_; }
  void set_name(std::string name) { name_ = std::move(name); }
  void set_ns(std::string ns) { ns_ = std::move(ns); }

  // Attributes (unprefixed, or xml:lang). Returns "" if absent.
  std::string_view Attr(std::string_view name) const;
  const std::string* FindAttr(std::string_view name) const;
  bool HasAttr(std::string_view name) const { return FindAttr(name) != nullptr; }
  Element& SetAttr(std::string_view name, std::string value);
  void RemoveAttr(std::string_view name);
  // Appends an attribute without looking for an existing one of that name.
  // The caller guarantees the name is not present yet (the parser uses this:
  // expat has already rejected duplicates).
  void AppendAttr(std::string name, std::string value) {
    attrs_.push_back(Attribute{std::move(name), std::move(value)});
  }
  void ReserveAttrs(size_t count) { attrs_.reserve(count); }
  const std::vector<Attribute>& attrs() const { return attrs_; }

  // Children: elements and text nodes in document order.
  struct Node {
    std::unique_ptr<Element> element;  // null for a text node
    std::string text;
  };
  const std::vector<Node>& nodes() const { return nodes_; }

  // Appends a child element and returns it. The reference stays valid until
  // the child is removed (children are held by pointer).
  Element& AddChild(std::string name, std::string ns);
  Element& AddChild(Element child);
  // Appends text; merged into the last node if that is text. Empty text is
  // ignored.
  void AddText(std::string_view text);
  void ClearChildren() { nodes_.clear(); }
  // Removes every child element with this name and namespace.
  void RemoveChildren(std::string_view name, std::string_view ns);

  // First child element with this name (and namespace, if not empty). Null if none.
  const Element* Child(std::string_view name, std::string_view ns = {}) const;
  Element* Child(std::string_view name, std::string_view ns = {});
  // Child elements in order.
  std::vector<const Element*> Children() const;
  // Concatenated direct text children.
  std::string Text() const;
  // Text of the first matching child, "" if absent.
  std::string ChildText(std::string_view name, std::string_view ns = {}) const;

  // Serialises this element. `parent_ns` is the namespace in scope at the
  // insertion point: the element writes xmlns='...' only if its own differs.
  std::string Serialize(std::string_view parent_ns = {}) const;
  void SerializeTo(std::string& out, std::string_view parent_ns = {}) const;

  Element Clone() const;

  // Moves this element and every descendant in namespace `from` to `to`
  // (a stanza read on a jabber:component:accept stream, re-homed into
  // jabber:client before it is routed).
  void RenameNamespace(std::string_view from, std::string_view to);

  // Structural equality: name, ns, attributes in order, and nodes in order.
  friend bool operator==(const Element& a, const Element& b);

 private:
  std::string name_;
  std::string ns_;
  std::vector<Attribute> attrs_;
  std::vector<Node> nodes_;
};

// Escapes text for element content or an attribute value (both quote kinds):
// & < > " ' become entity references, and tab, LF and CR become character
// references so attribute-value normalisation cannot change them.
void AppendEscaped(std::string& out, std::string_view text);
// Escapes element content: like AppendEscaped, but keeps tab and LF literal
// (CR is still written as &#13; since parsers turn a literal CR into LF).
void AppendEscapedText(std::string& out, std::string_view text);

}  // namespace nines::xml
