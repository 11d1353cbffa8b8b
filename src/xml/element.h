// Element: an XML element tree for one stanza.
//
// Names are stored as local name plus namespace URI (expat's namespace
// processing resolves prefixes), so code compares `ns` and `name` and never a
// prefix. Serialize() writes xmlns declarations only where the namespace
// differs from the parent's, with text and attribute values escaped.
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
  const std::vector<Attribute>& attrs() const { return attrs_; }

  // Children: elements and text nodes in document order.
  struct Node {
    std::unique_ptr<Element> element;  // null for a text node
    std::string text;
  };
  const std::vector<Node>& nodes() const { return nodes_; }

  // Appends a child element and returns it.
  Element& AddChild(std::string name, std::string ns);
  Element& AddChild(Element child);
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

 private:
  std::string name_;
  std::string ns_;
  std::vector<Attribute> attrs_;
  std::vector<Node> nodes_;
};

// Escapes text for element content or an attribute value (both quote kinds).
void AppendEscaped(std::string& out, std::string_view text);

}  // namespace nines::xml
