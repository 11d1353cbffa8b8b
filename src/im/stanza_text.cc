#include "im/stanza_text.h"

#include <chrono>
#include <ctime>

#include <fmt/format.h>

#include "xml/element.h"

namespace nines::im {

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
