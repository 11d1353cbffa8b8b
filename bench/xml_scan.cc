#include "bench/xml_scan.h"

#include <cstring>

namespace nines::bench {

StanzaScanner::Event StanzaScanner::Next(const char* buf, size_t len, std::string_view& element) {
  size_t pos = pos_;
  for (;;) {
    switch (mode_) {
      case kText: {
        if (pos >= len) {
          pos_ = static_cast<uint32_t>(len);
          return Event::kNeedMore;
        }
        const void* lt = std::memchr(buf + pos, '<', len - pos);
        if (lt == nullptr) {
          pos_ = static_cast<uint32_t>(len);
          return Event::kNeedMore;
        }
        pos = static_cast<size_t>(static_cast<const char*>(lt) - buf);
        if (depth_ <= 1) mark_ = static_cast<uint32_t>(pos);
        ++pos;
        mode_ = kTagOpen;
        break;
      }
      case kTagOpen: {
        if (pos >= len) {
          pos_ = static_cast<uint32_t>(pos);
          return Event::kNeedMore;
        }
        const char c = buf[pos];
        if (c == '/') {
          mode_ = kEndTag;
          ++pos;
        } else if (c == '?') {
          mode_ = kPi;
          aux_ = 0;
          ++pos;
        } else if (c == '!') {
          mode_ = kBang;
          ++pos;
        } else {
          mode_ = kStartTag;
          aux_ = 0;
        }
        break;
      }
      case kStartTag: {
        uint8_t quote = aux_;
        for (; pos < len; ++pos) {
          const char c = buf[pos];
          if (quote != 0) {
            if (c == static_cast<char>(quote)) quote = 0;
          } else if (c == '\'' || c == '"') {
            quote = static_cast<uint8_t>(c);
          } else if (c == '>') {
            break;
          }
        }
        aux_ = quote;
        if (pos >= len) {
          pos_ = static_cast<uint32_t>(pos);
          return Event::kNeedMore;
        }
        const bool empty = buf[pos - 1] == '/';
        ++pos;
        mode_ = kText;
        if (depth_ == 0) {
          if (empty) {  // <stream:stream/> is not a stream
            pos_ = static_cast<uint32_t>(pos);
            return Event::kError;
          }
          depth_ = 1;
          pos_ = static_cast<uint32_t>(pos);
          element = std::string_view(buf + mark_, pos - mark_);
          return Event::kStreamOpen;
        }
        if (empty) {
          if (depth_ == 1) {
            pos_ = static_cast<uint32_t>(pos);
            element = std::string_view(buf + mark_, pos - mark_);
            return Event::kStanza;
          }
        } else {
          ++depth_;
        }
        break;
      }
      case kEndTag: {
        const void* gt = pos < len ? std::memchr(buf + pos, '>', len - pos) : nullptr;
        if (gt == nullptr) {
          pos_ = static_cast<uint32_t>(len);
          return Event::kNeedMore;
        }
        pos = static_cast<size_t>(static_cast<const char*>(gt) - buf) + 1;
        mode_ = kText;
        if (depth_ == 0) {
          pos_ = static_cast<uint32_t>(pos);
          return Event::kError;
        }
        --depth_;
        pos_ = static_cast<uint32_t>(pos);
        if (depth_ == 1) {
          element = std::string_view(buf + mark_, pos - mark_);
          return Event::kStanza;
        }
        if (depth_ == 0) return Event::kStreamClose;
        break;
      }
      case kPi:
      case kCData:
      case kComment: {
        const char run_char = mode_ == kPi ? '?' : mode_ == kCData ? ']' : '-';
        const uint8_t need = mode_ == kPi ? 1 : 2;
        uint8_t run = aux_;
        for (; pos < len; ++pos) {
          const char c = buf[pos];
          if (c == '>' && run >= need) break;
          run = c == run_char ? static_cast<uint8_t>(run < 2 ? run + 1 : 2) : 0;
        }
        aux_ = run;
        if (pos >= len) {
          pos_ = static_cast<uint32_t>(pos);
          return Event::kNeedMore;
        }
        ++pos;
        mode_ = kText;
        break;
      }
      case kBang: {
        static constexpr std::string_view kCDataOpen = "[CDATA[";
        static constexpr std::string_view kCommentOpen = "--";
        const std::string_view avail(buf + pos, len - pos);
        const std::string_view want = (!avail.empty() && avail[0] == '-') ? kCommentOpen : kCDataOpen;
        const size_t n = avail.size() < want.size() ? avail.size() : want.size();
        if (avail.substr(0, n) != want.substr(0, n)) {
          pos_ = static_cast<uint32_t>(pos);
          return Event::kError;  // <!DOCTYPE ...> and friends
        }
        if (n < want.size()) {
          pos_ = static_cast<uint32_t>(pos);
          return Event::kNeedMore;
        }
        pos += want.size();
        mode_ = want == kCommentOpen ? kComment : kCData;
        aux_ = 0;
        break;
      }
    }
  }
}

size_t StanzaScanner::KeepFrom() const {
  if (depth_ >= 2 || mode_ != kText) return mark_;
  return pos_;
}

namespace {

// Index just past the '>' that ends the tag starting at element[start] ('<'),
// honouring quoted attribute values; npos if unterminated.
size_t TagEnd(std::string_view s, size_t start) {
  char quote = 0;
  for (size_t i = start + 1; i < s.size(); ++i) {
    const char c = s[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '>') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Skips a PI, comment or CDATA section starting at s[start] ('<');
// returns the index after it, or npos.
size_t SkipSpecial(std::string_view s, size_t start) {
  std::string_view terminator = s.compare(start, 2, "<?") == 0      ? "?>"
                                : s.compare(start, 4, "<!--") == 0 ? "-->"
                                                                   : "]]>";
  size_t end = s.find(terminator, start + 2);
  return end == std::string_view::npos ? end : end + terminator.size();
}

}  // namespace

std::string_view LocalName(std::string_view element) {
  if (element.size() < 2 || element[0] != '<') return {};
  size_t end = 1;
  size_t colon = 0;
  while (end < element.size() && !IsSpace(element[end]) && element[end] != '>' && element[end] != '/') {
    if (element[end] == ':') colon = end;
    ++end;
  }
  const size_t begin = colon != 0 ? colon + 1 : 1;
  return element.substr(begin, end - begin);
}

bool GetAttr(std::string_view element, std::string_view name, std::string_view& value) {
  const size_t tag_end = TagEnd(element, 0);
  if (tag_end == std::string_view::npos) return false;
  size_t i = 1;
  while (i < tag_end && !IsSpace(element[i]) && element[i] != '>' && element[i] != '/') ++i;  // element name
  for (;;) {
    while (i < tag_end && IsSpace(element[i])) ++i;
    if (i >= tag_end || element[i] == '>' || element[i] == '/') return false;
    const size_t name_begin = i;
    while (i < tag_end && element[i] != '=' && !IsSpace(element[i])) ++i;
    const std::string_view attr_name = element.substr(name_begin, i - name_begin);
    while (i < tag_end && (IsSpace(element[i]) || element[i] == '=')) ++i;
    if (i >= tag_end) return false;
    const char quote = element[i];
    if (quote != '\'' && quote != '"') return false;
    const size_t value_begin = i + 1;
    const size_t value_end = element.find(quote, value_begin);
    if (value_end == std::string_view::npos || value_end >= tag_end) return false;
    if (attr_name == name) {
      value = element.substr(value_begin, value_end - value_begin);
      return true;
    }
    i = value_end + 1;
  }
}

std::string_view Content(std::string_view element) {
  const size_t tag_end = TagEnd(element, 0);
  if (tag_end == std::string_view::npos || element[tag_end - 2] == '/') return {};
  const size_t close = element.rfind('<');
  if (close == std::string_view::npos || close < tag_end) return {};
  return element.substr(tag_end, close - tag_end);
}

bool NextChild(std::string_view content, size_t& pos, std::string_view& child) {
  for (;;) {
    const size_t start = content.find('<', pos);
    if (start == std::string_view::npos || start + 1 >= content.size()) {
      pos = content.size();
      return false;
    }
    const char c = content[start + 1];
    if (c == '?' || c == '!') {
      pos = SkipSpecial(content, start);
      if (pos == std::string_view::npos) {
        pos = content.size();
        return false;
      }
      continue;
    }
    if (c == '/') {  // malformed: an end tag with no start
      pos = content.size();
      return false;
    }
    // Walk tags until the depth returns to zero.
    size_t depth = 0;
    size_t i = start;
    for (;;) {
      if (content[i + 1] == '?' || content[i + 1] == '!') {
        i = SkipSpecial(content, i);
      } else {
        const bool end_tag = content[i + 1] == '/';
        const size_t tag_end = TagEnd(content, i);
        if (tag_end == std::string_view::npos) {
          pos = content.size();
          return false;
        }
        if (end_tag) {
          --depth;
        } else if (content[tag_end - 2] != '/') {
          ++depth;
        }
        i = tag_end;
        if (depth == 0) {
          child = content.substr(start, i - start);
          pos = i;
          return true;
        }
      }
      if (i == std::string_view::npos) {
        pos = content.size();
        return false;
      }
      i = content.find('<', i);
      if (i == std::string_view::npos || i + 1 >= content.size()) {
        pos = content.size();
        return false;
      }
    }
  }
}

bool FindChild(std::string_view element, std::string_view local_name, std::string_view& child) {
  const std::string_view content = Content(element);
  size_t pos = 0;
  std::string_view candidate;
  while (NextChild(content, pos, candidate)) {
    if (LocalName(candidate) == local_name) {
      child = candidate;
      return true;
    }
  }
  return false;
}

namespace {

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

std::string Unescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '<') {  // skip markup (child elements, CDATA keeps its text)
      if (text.compare(i, 9, "<![CDATA[") == 0) {
        const size_t end = text.find("]]>", i + 9);
        if (end == std::string_view::npos) break;
        out.append(text.substr(i + 9, end - i - 9));
        i = end + 3;
        continue;
      }
      const size_t end = TagEnd(text, i);
      if (end == std::string_view::npos) break;
      i = end;
      continue;
    }
    if (c != '&') {
      out += c;
      ++i;
      continue;
    }
    const size_t semi = text.find(';', i);
    if (semi == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    const std::string_view ref = text.substr(i + 1, semi - i - 1);
    if (ref == "lt") {
      out += '<';
    } else if (ref == "gt") {
      out += '>';
    } else if (ref == "amp") {
      out += '&';
    } else if (ref == "quot") {
      out += '"';
    } else if (ref == "apos") {
      out += '\'';
    } else if (ref.size() > 1 && ref[0] == '#') {
      uint32_t cp = 0;
      const bool hex = ref[1] == 'x';
      for (size_t k = hex ? 2 : 1; k < ref.size(); ++k) {
        const char d = ref[k];
        uint32_t v;
        if (d >= '0' && d <= '9') {
          v = static_cast<uint32_t>(d - '0');
        } else if (hex && d >= 'a' && d <= 'f') {
          v = static_cast<uint32_t>(d - 'a' + 10);
        } else if (hex && d >= 'A' && d <= 'F') {
          v = static_cast<uint32_t>(d - 'A' + 10);
        } else {
          break;
        }
        cp = cp * (hex ? 16 : 10) + v;
        if (cp > 0x10FFFF) break;
      }
      AppendUtf8(out, cp);
    } else {
      out.append(text.substr(i, semi - i + 1));
    }
    i = semi + 1;
  }
  return out;
}

}  // namespace nines::bench
