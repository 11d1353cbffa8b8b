#include "xml/element.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace nines::xml {
namespace {

// What to do with each byte when escaping. kCopy bytes are copied in runs.
enum Action : uint8_t { kCopy, kDrop, kAmp, kLt, kGt, kQuot, kApos, kTab, kLf, kCr };

constexpr std::array<uint8_t, 256> MakeTable(bool attribute) {
  std::array<uint8_t, 256> table{};
  for (int c = 0; c < 0x20; ++c) table[c] = kDrop;  // not representable in XML 1.0
  table['\t'] = attribute ? kTab : kCopy;
  table['\n'] = attribute ? kLf : kCopy;
  table['\r'] = kCr;
  table['&'] = kAmp;
  table['<'] = kLt;
  table['>'] = kGt;
  table['"'] = kQuot;
  table['\''] = kApos;
  return table;
}

constexpr std::array<uint8_t, 256> kAttributeTable = MakeTable(true);
constexpr std::array<uint8_t, 256> kTextTable = MakeTable(false);

void Escape(std::string& out, std::string_view text, const std::array<uint8_t, 256>& table) {
  const char* run = text.data();
  const char* const end = text.data() + text.size();
  for (const char* p = run; p != end; ++p) {
    const uint8_t action = table[static_cast<unsigned char>(*p)];
    if (action == kCopy) continue;
    out.append(run, p);
    run = p + 1;
    switch (action) {
      case kAmp: out.append("&amp;"); break;
      case kLt: out.append("&lt;"); break;
      case kGt: out.append("&gt;"); break;
      case kQuot: out.append("&quot;"); break;
      case kApos: out.append("&apos;"); break;
      case kTab: out.append("&#9;"); break;
      case kLf: out.append("&#10;"); break;
      case kCr: out.append("&#13;"); break;
      default: break;  // kDrop
    }
  }
  out.append(run, end);
}

bool IsNamespaceDeclaration(std::string_view name) {
  return name == "xmlns" || name.starts_with("xmlns:");
}

// Writes the attributes of one element, declaring generated prefixes for
// attributes in Clark notation ("{uri}local").
void SerializeAttributes(std::string& out, const std::vector<Attribute>& attrs) {
  // URIs given a prefix on this element, by index: a0, a1, ... Rare, so a
  // small linear list is enough.
  std::vector<std::string_view> declared;
  for (const Attribute& attr : attrs) {
    std::string_view name = attr.name;
    if (name.empty() || IsNamespaceDeclaration(name)) continue;
    if (name.front() == '{') {
      // The local name cannot contain '}', the URI may: split at the last one.
      const size_t close = name.rfind('}');
      if (close == std::string_view::npos || close + 1 == name.size()) continue;
      std::string_view uri = name.substr(1, close - 1);
      std::string_view local = name.substr(close + 1);
      size_t index = std::find(declared.begin(), declared.end(), uri) - declared.begin();
      const std::string prefix = "a" + std::to_string(index);
      if (index == declared.size()) {
        declared.push_back(uri);
        out.append(" xmlns:").append(prefix).append("='");
        AppendEscaped(out, uri);
        out.push_back('\'');
      }
      out.push_back(' ');
      out.append(prefix).push_back(':');
      out.append(local);
    } else {
      out.push_back(' ');
      out.append(name);
    }
    out.append("='");
    AppendEscaped(out, attr.value);
    out.push_back('\'');
  }
}

}  // namespace

void AppendEscaped(std::string& out, std::string_view text) { Escape(out, text, kAttributeTable); }

void AppendEscapedText(std::string& out, std::string_view text) { Escape(out, text, kTextTable); }

const std::string* Element::FindAttr(std::string_view name) const {
  for (const Attribute& attr : attrs_) {
    if (attr.name == name) return &attr.value;
  }
  return nullptr;
}

std::string_view Element::Attr(std::string_view name) const {
  const std::string* value = FindAttr(name);
  return value ? std::string_view(*value) : std::string_view();
}

Element& Element::SetAttr(std::string_view name, std::string value) {
  for (Attribute& attr : attrs_) {
    if (attr.name == name) {
      attr.value = std::move(value);
      return *this;
    }
  }
  attrs_.push_back(Attribute{std::string(name), std::move(value)});
  return *this;
}

void Element::RemoveAttr(std::string_view name) {
  std::erase_if(attrs_, [name](const Attribute& attr) { return attr.name == name; });
}

Element& Element::AddChild(std::string name, std::string ns) {
  nodes_.push_back(Node{std::make_unique<Element>(std::move(name), std::move(ns)), {}});
  return *nodes_.back().element;
}

Element& Element::AddChild(Element child) {
  nodes_.push_back(Node{std::make_unique<Element>(std::move(child)), {}});
  return *nodes_.back().element;
}

void Element::AddText(std::string_view text) {
  if (text.empty()) return;
  if (!nodes_.empty() && !nodes_.back().element) {
    nodes_.back().text.append(text);
  } else {
    nodes_.push_back(Node{nullptr, std::string(text)});
  }
}

void Element::RemoveChildren(std::string_view name, std::string_view ns) {
  std::erase_if(nodes_, [&](const Node& node) {
    return node.element && node.element->name_ == name && node.element->ns_ == ns;
  });
}

const Element* Element::Child(std::string_view name, std::string_view ns) const {
  for (const Node& node : nodes_) {
    if (node.element && node.element->name_ == name && (ns.empty() || node.element->ns_ == ns)) {
      return node.element.get();
    }
  }
  return nullptr;
}

Element* Element::Child(std::string_view name, std::string_view ns) {
  return const_cast<Element*>(static_cast<const Element*>(this)->Child(name, ns));
}

std::vector<const Element*> Element::Children() const {
  std::vector<const Element*> children;
  for (const Node& node : nodes_) {
    if (node.element) children.push_back(node.element.get());
  }
  return children;
}

std::string Element::Text() const {
  // Text is merged on insertion, so there is usually exactly one text node.
  std::string text;
  for (const Node& node : nodes_) {
    if (!node.element) text.append(node.text);
  }
  return text;
}

std::string Element::ChildText(std::string_view name, std::string_view ns) const {
  const Element* child = Child(name, ns);
  return child ? child->Text() : std::string();
}

std::string Element::Serialize(std::string_view parent_ns) const {
  std::string out;
  SerializeTo(out, parent_ns);
  return out;
}

void Element::SerializeTo(std::string& out, std::string_view parent_ns) const {
  // Streams-namespace elements use the stream header's "stream:" prefix and
  // leave the default namespace, which their children inherit, unchanged.
  // So do elements in the XML namespace (a client may write <xml:foo/>),
  // with the predeclared "xml:": that namespace may not be declared, nor
  // made the default (Namespaces in XML 1.0, §3), and a declaration would
  // make the recipient's parser refuse the stream.
  const std::string_view prefix = ns_ == kStreamsNs && parent_ns != kStreamsNs ? std::string_view("stream:")
                                  : ns_ == kXmlNs                              ? std::string_view("xml:")
                                                                               : std::string_view();
  const bool prefixed = !prefix.empty();
  const std::string_view child_ns = prefixed ? parent_ns : std::string_view(ns_);
  out.push_back('<');
  out.append(prefix);
  out.append(name_);
  if (!prefixed && ns_ != parent_ns) {
    out.append(" xmlns='");
    AppendEscaped(out, ns_);
    out.push_back('\'');
  }
  if (!attrs_.empty()) SerializeAttributes(out, attrs_);
  if (nodes_.empty()) {
    out.append("/>");
    return;
  }
  out.push_back('>');
  for (const Node& node : nodes_) {
    if (node.element) {
      node.element->SerializeTo(out, child_ns);
    } else {
      AppendEscapedText(out, node.text);
    }
  }
  out.append("</");
  out.append(prefix);
  out.append(name_);
  out.push_back('>');
}

void Element::RenameNamespace(std::string_view from, std::string_view to) {
  if (ns_ == from) ns_ = std::string(to);
  for (auto& node : nodes_) {
    if (node.element) node.element->RenameNamespace(from, to);
  }
}

Element Element::Clone() const {
  Element copy(name_, ns_);
  copy.attrs_ = attrs_;
  copy.nodes_.reserve(nodes_.size());
  for (const Node& node : nodes_) {
    if (node.element) {
      copy.nodes_.push_back(Node{std::make_unique<Element>(node.element->Clone()), {}});
    } else {
      copy.nodes_.push_back(Node{nullptr, node.text});
    }
  }
  return copy;
}

bool operator==(const Element& a, const Element& b) {
  if (a.name_ != b.name_ || a.ns_ != b.ns_ || a.nodes_.size() != b.nodes_.size() ||
      a.attrs_.size() != b.attrs_.size()) {
    return false;
  }
  for (size_t i = 0; i < a.attrs_.size(); ++i) {
    if (a.attrs_[i].name != b.attrs_[i].name || a.attrs_[i].value != b.attrs_[i].value) return false;
  }
  for (size_t i = 0; i < a.nodes_.size(); ++i) {
    const Element::Node& x = a.nodes_[i];
    const Element::Node& y = b.nodes_[i];
    if (static_cast<bool>(x.element) != static_cast<bool>(y.element)) return false;
    if (x.element ? !(*x.element == *y.element) : x.text != y.text) return false;
  }
  return true;
}

}  // namespace nines::xml
