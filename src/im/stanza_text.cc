#include "im/stanza_text.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>

#include <fmt/format.h>
#include <unicode/utf8.h>

#include "xml/element.h"
#include "xml/stream_parser.h"

namespace nines::im {

std::optional<xml::Element> ParseElement(std::string_view xml) {
  xml::ParserLimits limits;
  limits.max_stanza_bytes = xml.size() + 1;
  xml::StreamParser parser(limits);
  std::vector<xml::ParseEvent> events;
  parser.Feed("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", events);
  parser.Feed(xml, events);
  std::optional<xml::Element> out;
  for (auto& e : events) {
    if (e.kind == xml::ParseEvent::Kind::kStanza) {
      if (out) return std::nullopt;
      out = std::move(e.element);
    } else if (e.kind != xml::ParseEvent::Kind::kStreamOpen) {
      return std::nullopt;
    }
  }
  if (!out || parser.InStanza()) return std::nullopt;
  return out;
}

std::string WithTo(std::string_view stanza, std::string_view to) {
  // The root name ends at the first space, '/' or '>'.
  size_t name_end = stanza.find_first_of(" />", 1);
  if (name_end == std::string_view::npos) name_end = stanza.size();
  std::string out;
  out.reserve(stanza.size() + to.size() + 8);
  out.append(stanza.substr(0, name_end));
  AppendAttr(out, "to", to);
  out.append(stanza.substr(name_end));
  return out;
}

std::optional<std::string_view> RootAttr(std::string_view stanza, std::string_view name) {
  size_t at = stanza.find_first_of(" />", 1);
  // Attributes are  name='value'  with no raw quote inside a value.
  while (at < stanza.size() && stanza[at] == ' ') {
    size_t eq = stanza.find("='", at + 1);
    if (eq == std::string_view::npos) return std::nullopt;
    size_t close = stanza.find('\'', eq + 2);
    if (close == std::string_view::npos) return std::nullopt;
    if (stanza.substr(at + 1, eq - at - 1) == name) return stanza.substr(eq + 2, close - eq - 2);
    at = close + 1;
  }
  return std::nullopt;
}

std::optional<std::string> RootAttrText(std::string_view stanza, std::string_view name) {
  auto raw = RootAttr(stanza, name);
  if (!raw) return std::nullopt;
  std::string out;
  out.reserve(raw->size());
  size_t at = 0;
  while (at < raw->size()) {
    size_t amp = raw->find('&', at);
    out.append(raw->substr(at, amp - at));
    if (amp == std::string_view::npos) break;
    size_t semi = raw->find(';', amp);
    if (semi == std::string_view::npos) return std::nullopt;
    std::string_view entity = raw->substr(amp + 1, semi - amp - 1);
    if (entity == "amp") {
      out.push_back('&');
    } else if (entity == "lt") {
      out.push_back('<');
    } else if (entity == "gt") {
      out.push_back('>');
    } else if (entity == "quot") {
      out.push_back('"');
    } else if (entity == "apos") {
      out.push_back('\'');
    } else if (entity.size() >= 2 && entity[0] == '#') {
      const bool hex = entity[1] == 'x';
      std::string_view digits = entity.substr(hex ? 2 : 1);
      uint32_t code = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), code, hex ? 16 : 10);
      if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || code > 0x10FFFF ||
          (code >= 0xD800 && code <= 0xDFFF)) {
        return std::nullopt;
      }
      uint8_t utf8[U8_MAX_LENGTH];
      int32_t length = 0;
      U8_APPEND_UNSAFE(utf8, length, static_cast<UChar32>(code));  // a scalar value: checked above
      out.append(reinterpret_cast<const char*>(utf8), static_cast<size_t>(length));
    } else {
      return std::nullopt;
    }
    at = semi + 1;
  }
  return out;
}

bool AppendChildXml(std::string& stanza, std::string_view child_xml) {
  if (stanza.size() < 4 || stanza.front() != '<') return false;
  if (stanza.ends_with("/>")) {
    size_t name_end = stanza.find_first_of(" />", 1);
    std::string name = stanza.substr(1, name_end - 1);
    stanza.resize(stanza.size() - 2);
    stanza.push_back('>');
    stanza.append(child_xml);
    stanza.append("</");
    stanza.append(name);
    stanza.push_back('>');
    return true;
  }
  size_t close = stanza.rfind("</");
  if (close == std::string::npos || stanza.back() != '>') return false;
  stanza.insert(close, child_xml);
  return true;
}

namespace {

// <stanza-id xmlns='urn:xmpp:sid:0' by='<by>' id='<id>'/>: one for every
// archived message, so it is built from a few large pieces in one
// allocation.
constexpr std::string_view kStanzaIdOpen = "<stanza-id xmlns='urn:xmpp:sid:0' by='";
constexpr std::string_view kStanzaIdMiddle = "' id='";
constexpr std::string_view kStanzaIdClose = "'/>";
constexpr size_t kStanzaIdFixed = kStanzaIdOpen.size() + kStanzaIdMiddle.size() + kStanzaIdClose.size();

std::string StanzaIdXml(std::string_view by, int64_t id) {
  std::string out;
  out.reserve(kStanzaIdFixed + by.size() + 24);
  out.append(kStanzaIdOpen);
  xml::AppendEscaped(out, by);
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, id);
  out.append(kStanzaIdMiddle).append(digits, end).append(kStanzaIdClose);
  return out;
}

// Where <stanza-id/> goes in `stanza`: before the root's end tag. npos if
// the text does not end like a serialised element with children or text
// (AppendChildXml's general case handles the rest).
size_t StanzaIdPosition(std::string_view stanza) {
  if (!stanza.starts_with('<') || !stanza.ends_with('>') || stanza.ends_with("/>"))
    return std::string_view::npos;
  return stanza.rfind("</");
}

}  // namespace

std::string WithStanzaId(std::string_view stanza, std::string_view by, int64_t id) {
  const std::string sid = StanzaIdXml(by, id);
  const size_t close = StanzaIdPosition(stanza);
  if (close == std::string_view::npos) {
    std::string out(stanza);
    AppendChildXml(out, sid);
    return out;
  }
  std::string out;
  out.reserve(stanza.size() + sid.size());
  out.append(stanza.substr(0, close)).append(sid).append(stanza.substr(close));
  return out;
}

void InsertStanzaId(std::string& stanza, std::string_view by, int64_t id) {
  const size_t close = StanzaIdPosition(stanza);
  const bool plain = std::none_of(by.begin(), by.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == '&' || c == '<' || c == '>' || c == '"' || c == '\'';
  });
  if (close == std::string::npos || !plain) {
    std::string with = WithStanzaId(stanza, by, id);
    stanza.swap(with);
    return;
  }
  // The usual case, without a temporary: the end tag moves up and the
  // element's pieces are copied into the gap.
  char digits[24];
  const auto [digits_end, ec] = std::to_chars(digits, digits + sizeof digits, id);
  const std::string_view id_text(digits, static_cast<size_t>(digits_end - digits));
  const size_t added = kStanzaIdFixed + by.size() + id_text.size();
  const size_t tail = stanza.size() - close;
  stanza.resize(stanza.size() + added);
  char* at = stanza.data() + close;
  std::memmove(at + added, at, tail);
  for (std::string_view piece : {kStanzaIdOpen, by, kStanzaIdMiddle, id_text, kStanzaIdClose}) {
    std::memcpy(at, piece.data(), piece.size());
    at += piece.size();
  }
}

std::string FormatTimestamp(int64_t unix_ms) {
  std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  int millis = static_cast<int>(unix_ms % 1000);
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

namespace {

// Reads exactly `digits` decimal digits at `at`, advancing it.
bool ReadDigits(std::string_view text, size_t& at, int digits, int& value) {
  if (at + digits > text.size()) return false;
  value = 0;
  for (int i = 0; i < digits; ++i) {
    char c = text[at + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  at += digits;
  return true;
}

bool Expect(std::string_view text, size_t& at, char c) {
  if (at >= text.size() || text[at] != c) return false;
  ++at;
  return true;
}

}  // namespace

bool ParseTimestamp(std::string_view text, int64_t& unix_ms) {
  size_t at = 0;
  int year, month, day, hour, minute, second;
  if (!ReadDigits(text, at, 4, year) || !Expect(text, at, '-') || !ReadDigits(text, at, 2, month) ||
      !Expect(text, at, '-') || !ReadDigits(text, at, 2, day) || !Expect(text, at, 'T') ||
      !ReadDigits(text, at, 2, hour) || !Expect(text, at, ':') || !ReadDigits(text, at, 2, minute) ||
      !Expect(text, at, ':') || !ReadDigits(text, at, 2, second)) {
    return false;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return false;
  int millis = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    int scale = 100;
    size_t first = at;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      millis += (text[at] - '0') * scale;
      scale /= 10;
      ++at;
    }
    if (at == first) return false;
  }
  int offset_minutes = 0;
  if (Expect(text, at, 'Z')) {
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    int sign = text[at] == '-' ? -1 : 1;
    ++at;
    int oh, om;
    if (!ReadDigits(text, at, 2, oh) || !Expect(text, at, ':') || !ReadDigits(text, at, 2, om)) return false;
    if (oh > 23 || om > 59) return false;
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return false;
  }
  if (at != text.size()) return false;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  int64_t seconds = timegm(&tm);
  unix_ms = (seconds - int64_t{offset_minutes} * 60) * 1000 + millis;
  return true;
}

std::string WithNamespace(std::string_view stanza, std::string_view ns) {
  size_t name_end = 1;
  while (name_end < stanza.size() && stanza[name_end] != ' ' && stanza[name_end] != '>' &&
         stanza[name_end] != '/') {
    ++name_end;
  }
  std::string out;
  out.reserve(stanza.size() + ns.size() + 10);
  out.append(stanza.substr(0, name_end));
  AppendAttr(out, "xmlns", ns);
  out.append(stanza.substr(name_end));
  return out;
}

std::string DelayXml(std::string_view domain, int64_t unix_ms) {
  std::string out = "<delay xmlns='urn:xmpp:delay'";
  AppendAttr(out, "from", domain);
  AppendAttr(out, "stamp", FormatTimestamp(unix_ms));
  out.append("/>");
  return out;
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void AppendAttr(std::string& out, std::string_view name, std::string_view value) {
  out.push_back(' ');
  out.append(name);
  out.append("='");
  xml::AppendEscaped(out, value);
  out.push_back('\'');
}

}  // namespace nines::im
