#include "qeval/perf/endpoint.h"

// Server-sent events framing (the WHATWG "event stream" format): lines end in LF, CRLF or
// CR; "data:" lines accumulate (joined by LF) until a blank line dispatches the event; lines
// starting with ':' are comments; a single space after the colon is dropped.
namespace qeval::perf {

void SseParser::feed(std::string_view bytes) {
  buf_.append(bytes);
  size_t start = 0;
  for (;;) {
    const size_t end = buf_.find_first_of("\r\n", start);
    if (end == std::string::npos) break;
    // A CR at the very end may be the first half of CRLF: wait for the next byte.
    if (buf_[end] == '\r' && end + 1 == buf_.size()) break;
    line(std::string_view(buf_).substr(start, end - start));
    start = end + ((buf_[end] == '\r' && buf_[end + 1] == '\n') ? 2 : 1);
  }
  buf_.erase(0, start);
}

void SseParser::finish() {
  if (!buf_.empty()) {
    std::string rest;
    rest.swap(buf_);
    if (rest.back() == '\r') rest.pop_back();
    line(rest);
  }
  line("");
}

void SseParser::line(std::string_view l) {
  if (l.empty()) {
    if (has_data_) {
      std::string d;
      d.swap(data_);
      has_data_ = false;
      on_event_(d);
    }
    return;
  }
  if (l.front() == ':') return;
  const size_t colon = l.find(':');
  std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;
  if (has_data_) data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

}  // namespace qeval::perf
