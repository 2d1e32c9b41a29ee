#include "qeval/eval/task/template.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <regex>

#include "qeval/eval/metrics/text.h"

namespace qeval::eval::task {

namespace {

using Kind = TemplateError::Kind;

// Internal failure, turned into a TemplateError (or qeval::Error at parse time) with the location.
struct Failure {
  size_t pos = 0;
  Kind kind = Kind::other;
  std::string problem;
  std::string field;
};

[[noreturn]] void fail_at(size_t pos, std::string problem) { throw Failure{pos, Kind::other, std::move(problem), {}}; }

std::string type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "none";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "a list";
    case Json::value_t::object: return "an object";
    default: return "a value";
  }
}

std::string quote(std::string_view s, size_t max = 40) {
  std::string out = "'";
  if (s.size() > max) {
    out.append(s.substr(0, max)).append("...");
  } else {
    out.append(s);
  }
  return out + "'";
}

bool is_int(const Json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (true) {
    size_t j = s.find(from, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i).append(to);
    i = j + from.size();
  }
  out.append(s, i, std::string::npos);
  s.swap(out);
}

// ---------------------------------------------------------------------------------------------
// Lexer for the inside of {{ }} and {% %}.

enum class Tok { name, integer, number, string, op, close, eof };

struct Token {
  Tok kind = Tok::eof;
  std::string text;  // name / operator / string contents
  Json value;        // literals
  size_t pos = 0;
  bool trim = false;  // close: '-' before the delimiter
};

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

class Lexer {
 public:
  // close = "}}" or "%}"
  Lexer(std::string_view src, size_t pos, std::string_view close) : src_(src), pos_(pos), close_(close) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    while (true) {
      skip_space();
      if (pos_ >= src_.size()) fail_at(pos_, fmt::format("missing '{}'", close_));
      Token t;
      t.pos = pos_;
      char c = src_[pos_];
      if (c == '-' && src_.substr(pos_ + 1, 2) == close_) {
        t.kind = Tok::close;
        t.trim = true;
        pos_ += 3;
        out.push_back(std::move(t));
        return out;
      }
      if (src_.substr(pos_, 2) == close_) {
        t.kind = Tok::close;
        pos_ += 2;
        out.push_back(std::move(t));
        return out;
      }
      if (is_name_start(c)) {
        size_t s = pos_;
        while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
        t.kind = Tok::name;
        t.text = std::string(src_.substr(s, pos_ - s));
      } else if (c >= '0' && c <= '9') {
        lex_number(t);
      } else if (c == '"' || c == '\'') {
        lex_string(t);
      } else {
        static const char* const kOps[] = {"==", "!=", "<=", ">=", "|", ".", ",", ":", "(", ")", "[",
                                           "]",  "~",  "+",  "-",  "*", "/", "<", ">", "%"};
        bool found = false;
        for (const char* op : kOps) {
          std::string_view o(op);
          if (src_.substr(pos_, o.size()) == o) {
            t.kind = Tok::op;
            t.text = std::string(o);
            pos_ += o.size();
            found = true;
            break;
          }
        }
        if (!found) fail_at(pos_, fmt::format("unexpected character '{}'", c));
      }
      out.push_back(std::move(t));
    }
  }

  size_t end() const { return pos_; }

 private:
  void skip_space() {
    while (pos_ < src_.size() && (src_[pos_] == ' ' || src_[pos_] == '\t' || src_[pos_] == '\n' || src_[pos_] == '\r'))
      ++pos_;
  }

  void lex_number(Token& t) {
    size_t s = pos_;
    while (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9') ++pos_;
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && src_[pos_ + 1] >= '0' && src_[pos_ + 1] <= '9') {
      is_float = true;
      ++pos_;
      while (pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '9') ++pos_;
    }
    std::string digits(src_.substr(s, pos_ - s));
    if (is_float) {
      t.kind = Tok::number;
      t.value = std::stod(digits);
    } else {
      t.kind = Tok::integer;
      try {
        t.value = static_cast<int64_t>(std::stoll(digits));
      } catch (const std::exception&) {
        fail_at(s, "integer literal out of range");
      }
    }
  }

  void lex_string(Token& t) {
    char q = src_[pos_];
    size_t start = pos_++;
    std::string out;
    while (true) {
      if (pos_ >= src_.size()) fail_at(start, "unterminated string literal");
      char c = src_[pos_++];
      if (c == q) break;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= src_.size()) fail_at(start, "unterminated string literal");
      char e = src_[pos_++];
      switch (e) {
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        default:
          // Unknown escapes stay as written (so regex patterns like '\[' need no doubling).
          out.push_back('\\');
          out.push_back(e);
      }
    }
    t.kind = Tok::string;
    t.text = out;
    t.value = out;
  }

  std::string_view src_;
  size_t pos_;
  std::string_view close_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// AST

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class EK { literal, name, attr, index, slice, list, filter, neg, not_, binary, and_, or_ };

struct Expr {
  EK k = EK::literal;
  size_t pos = 0;
  Json value;                  // literal
  std::string name;            // name, attr key, filter name, binary operator
  std::vector<ExprPtr> kids;   // attr/index/slice/filter: kids[0] is the operand; slice: start, stop may be null
  TemplatePtr custom;          // user-defined filter
  std::shared_ptr<const std::regex> regex;  // regex_replace with a literal pattern, compiled once
};

enum class NK { text, output, for_, if_ };

struct Node {
  NK k = NK::text;
  size_t pos = 0;
  std::string text;
  ExprPtr expr;                                                // output / for iterable
  std::string var;                                             // for
  std::vector<Node> body;                                      // for body
  std::vector<std::pair<ExprPtr, std::vector<Node>>> branches;  // if / elif
  std::vector<Node> else_body;
  bool has_else = false;
};

struct Template::Impl {
  std::vector<Node> nodes;
  const Expr* single = nullptr;  // the expression when the template is one {{ expr }}
};

namespace {

// ---------------------------------------------------------------------------------------------
// Filters

struct FilterInfo {
  const char* name;
  int min_args;
  int max_args;
};

const FilterInfo kFilters[] = {
    {"trim", 0, 0},       {"strip", 0, 0},        {"upper", 0, 0},      {"lower", 0, 0},
    {"capitalize", 0, 0}, {"length", 0, 0},       {"first", 0, 0},      {"last", 0, 0},
    {"join", 0, 1},       {"split", 0, 1},        {"replace", 2, 2},    {"regex_replace", 2, 2},
    {"letter", 0, 0},     {"int", 0, 0},          {"float", 0, 0},      {"string", 0, 0},
    {"map", 1, 1},        {"index_of", 1, 1},     {"keys", 0, 0},       {"values", 0, 0},
    {"default", 1, 1},    {"startswith", 1, 1},   {"endswith", 1, 1},   {"wikitext_detokenize", 0, 0},
};

const FilterInfo* find_filter(std::string_view name) {
  for (const auto& f : kFilters)
    if (name == f.name) return &f;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Parser

class Parser {
 public:
  Parser(std::string_view src, const CustomFilters& custom) : src_(src), custom_(custom) {}

  std::vector<Node> parse_all() {
    segment();
    size_t i = 0;
    auto nodes = parse_block(i, {});
    if (i != segs_.size()) fail_at(segs_[i].pos, fmt::format("unexpected '{{% {} %}}'", segs_[i].tag));
    return nodes;
  }

 private:
  struct Seg {
    enum class S { text, output, tag } s = S::text;
    size_t pos = 0;
    std::string text;          // text
    std::string tag;           // tag keyword
    std::vector<Token> toks;   // output / tag tokens (after the keyword), ending with close
  };

  // Splits the source into text, {{ }} and {% %} segments, applying '-' whitespace trimming.
  void segment() {
    size_t i = 0;
    bool trim_next = false;
    while (true) {
      size_t found = std::string::npos;
      for (size_t k = i; k + 1 < src_.size(); ++k) {
        if (src_[k] == '{' && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) {
          found = k;
          break;
        }
      }
      std::string text(src_.substr(i, (found == std::string::npos ? src_.size() : found) - i));
      if (trim_next) {
        size_t k = 0;
        while (k < text.size() && std::isspace(static_cast<unsigned char>(text[k]))) ++k;
        text.erase(0, k);
        trim_next = false;
      }
      bool trim_prev = found != std::string::npos && found + 2 < src_.size() && src_[found + 2] == '-';
      if (trim_prev) {
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      }
      if (!text.empty()) {
        Seg s;
        s.s = Seg::S::text;
        s.pos = i;
        s.text = std::move(text);
        segs_.push_back(std::move(s));
      }
      if (found == std::string::npos) break;
      char kind = src_[found + 1];
      size_t body = found + 2 + (trim_prev ? 1 : 0);
      if (kind == '#') {
        size_t end = src_.find("#}", body);
        if (end == std::string::npos) fail_at(found, "missing '#}'");
        trim_next = end > body && src_[end - 1] == '-';
        i = end + 2;
        continue;
      }
      Lexer lex(src_, body, kind == '{' ? "}}" : "%}");
      std::vector<Token> toks = lex.run();
      trim_next = toks.back().trim;
      i = lex.end();
      Seg s;
      s.pos = found;
      if (kind == '{') {
        s.s = Seg::S::output;
        if (toks.size() == 1) fail_at(found, "empty '{{ }}'");
      } else {
        s.s = Seg::S::tag;
        if (toks.front().kind != Tok::name) fail_at(found, "expected a statement after '{%'");
        s.tag = toks.front().text;
        toks.erase(toks.begin());
      }
      s.toks = std::move(toks);
      segs_.push_back(std::move(s));
    }
  }

  std::vector<Node> parse_block(size_t& i, const std::vector<std::string>& stops) {
    std::vector<Node> out;
    while (i < segs_.size()) {
      Seg& s = segs_[i];
      if (s.s == Seg::S::text) {
        Node n;
        n.k = NK::text;
        n.pos = s.pos;
        n.text = s.text;
        out.push_back(std::move(n));
        ++i;
        continue;
      }
      if (s.s == Seg::S::output) {
        Node n;
        n.k = NK::output;
        n.pos = s.pos;
        n.expr = parse_tokens(s.toks, 0, s.toks.size());
        out.push_back(std::move(n));
        ++i;
        continue;
      }
      if (std::find(stops.begin(), stops.end(), s.tag) != stops.end()) return out;
      if (s.tag == "for") {
        out.push_back(parse_for(i));
      } else if (s.tag == "if") {
        out.push_back(parse_if(i));
      } else if (s.tag == "endfor" || s.tag == "endif" || s.tag == "else" || s.tag == "elif") {
        fail_at(s.pos, fmt::format("'{{% {} %}}' without a matching opening statement", s.tag));
      } else {
        fail_at(s.pos, fmt::format("unknown statement '{}'", s.tag));
      }
    }
    return out;
  }

  Node parse_for(size_t& i) {
    Seg& s = segs_[i];
    Node n;
    n.k = NK::for_;
    n.pos = s.pos;
    const auto& t = s.toks;
    if (t.size() < 4 || t[0].kind != Tok::name || t[1].kind != Tok::name || t[1].text != "in")
      fail_at(s.pos, "expected '{% for NAME in EXPRESSION %}'");
    n.var = t[0].text;
    if (n.var == "loop") fail_at(t[0].pos, "'loop' is reserved");
    n.expr = parse_tokens(t, 2, t.size());
    ++i;
    n.body = parse_block(i, {"endfor"});
    if (i >= segs_.size()) fail_at(s.pos, "'{% for %}' without '{% endfor %}'");
    expect_bare(segs_[i]);
    ++i;
    return n;
  }

  Node parse_if(size_t& i) {
    Seg& s = segs_[i];
    Node n;
    n.k = NK::if_;
    n.pos = s.pos;
    if (s.toks.size() < 2) fail_at(s.pos, "expected '{% if EXPRESSION %}'");
    ExprPtr cond = parse_tokens(s.toks, 0, s.toks.size());
    ++i;
    std::vector<Node> body = parse_block(i, {"elif", "else", "endif"});
    n.branches.emplace_back(std::move(cond), std::move(body));
    while (true) {
      if (i >= segs_.size()) fail_at(s.pos, "'{% if %}' without '{% endif %}'");
      Seg& t = segs_[i];
      if (t.tag == "endif") {
        expect_bare(t);
        ++i;
        return n;
      }
      if (t.tag == "elif") {
        if (n.has_else) fail_at(t.pos, "'{% elif %}' after '{% else %}'");
        if (t.toks.size() < 2) fail_at(t.pos, "expected '{% elif EXPRESSION %}'");
        ExprPtr c = parse_tokens(t.toks, 0, t.toks.size());
        ++i;
        std::vector<Node> b = parse_block(i, {"elif", "else", "endif"});
        n.branches.emplace_back(std::move(c), std::move(b));
        continue;
      }
      // else
      if (n.has_else) fail_at(t.pos, "second '{% else %}'");
      expect_bare(t);
      n.has_else = true;
      ++i;
      n.else_body = parse_block(i, {"elif", "else", "endif"});
    }
  }

  void expect_bare(const Seg& s) {
    if (s.toks.size() != 1) fail_at(s.toks.front().pos, fmt::format("unexpected text after '{}'", s.tag));
  }

  // ---- expressions (recursive descent over toks[b, e), e points at the close token) ----
  ExprPtr parse_tokens(const std::vector<Token>& toks, size_t b, size_t e) {
    toks_ = &toks;
    at_ = b;
    end_ = e - 1;  // the close token
    if (at_ >= end_) fail_at(toks[at_].pos, "expected an expression");
    ExprPtr x = parse_or();
    if (at_ != end_) fail_at(peek().pos, fmt::format("unexpected '{}'", token_text(peek())));
    return x;
  }

  const Token& peek() const { return (*toks_)[at_]; }
  bool at_op(std::string_view op) const { return peek().kind == Tok::op && peek().text == op; }
  bool at_name(std::string_view n) const { return peek().kind == Tok::name && peek().text == n; }
  static std::string token_text(const Token& t) {
    switch (t.kind) {
      case Tok::close: return "end of expression";
      case Tok::string: return "'" + t.text + "'";
      case Tok::integer:
      case Tok::number: return t.value.dump();
      default: return t.text;
    }
  }
  void expect_op(std::string_view op) {
    if (!at_op(op)) fail_at(peek().pos, fmt::format("expected '{}' but found {}", op, token_text(peek())));
    ++at_;
  }

  static ExprPtr make(EK k, size_t pos) {
    auto x = std::make_unique<Expr>();
    x->k = k;
    x->pos = pos;
    return x;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (at_name("or")) {
      size_t p = peek().pos;
      ++at_;
      ExprPtr x = make(EK::or_, p);
      x->kids.push_back(std::move(l));
      x->kids.push_back(parse_and());
      l = std::move(x);
    }
    return l;
  }
  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (at_name("and")) {
      size_t p = peek().pos;
      ++at_;
      ExprPtr x = make(EK::and_, p);
      x->kids.push_back(std::move(l));
      x->kids.push_back(parse_not());
      l = std::move(x);
    }
    return l;
  }
  ExprPtr parse_not() {
    if (at_name("not")) {
      size_t p = peek().pos;
      ++at_;
      ExprPtr x = make(EK::not_, p);
      x->kids.push_back(parse_not());
      return x;
    }
    return parse_cmp();
  }
  ExprPtr parse_cmp() {
    ExprPtr l = parse_concat();
    static const char* const kCmp[] = {"==", "!=", "<=", ">=", "<", ">"};
    for (const char* op : kCmp) {
      if (at_op(op)) {
        size_t p = peek().pos;
        ++at_;
        ExprPtr x = make(EK::binary, p);
        x->name = op;
        x->kids.push_back(std::move(l));
        x->kids.push_back(parse_concat());
        return x;
      }
    }
    if (at_name("in") || (at_name("not") && at_ + 1 < end_ && (*toks_)[at_ + 1].kind == Tok::name &&
                          (*toks_)[at_ + 1].text == "in")) {
      size_t p = peek().pos;
      bool negate = at_name("not");
      at_ += negate ? 2 : 1;
      ExprPtr x = make(EK::binary, p);
      x->name = "in";
      x->kids.push_back(std::move(l));
      x->kids.push_back(parse_concat());
      if (!negate) return x;
      ExprPtr n = make(EK::not_, p);
      n->kids.push_back(std::move(x));
      return n;
    }
    return l;
  }
  ExprPtr parse_concat() {
    ExprPtr l = parse_add();
    while (at_op("~")) {
      size_t p = peek().pos;
      ++at_;
      ExprPtr x = make(EK::binary, p);
      x->name = "~";
      x->kids.push_back(std::move(l));
      x->kids.push_back(parse_add());
      l = std::move(x);
    }
    return l;
  }
  ExprPtr parse_add() {
    ExprPtr l = parse_mul();
    while (at_op("+") || at_op("-")) {
      size_t p = peek().pos;
      std::string op = peek().text;
      ++at_;
      ExprPtr x = make(EK::binary, p);
      x->name = op;
      x->kids.push_back(std::move(l));
      x->kids.push_back(parse_mul());
      l = std::move(x);
    }
    return l;
  }
  ExprPtr parse_mul() {
    ExprPtr l = parse_unary();
    while (at_op("*") || at_op("/") || at_op("%")) {
      size_t p = peek().pos;
      std::string op = peek().text;
      ++at_;
      ExprPtr x = make(EK::binary, p);
      x->name = op;
      x->kids.push_back(std::move(l));
      x->kids.push_back(parse_unary());
      l = std::move(x);
    }
    return l;
  }
  ExprPtr parse_unary() {
    if (at_op("-")) {
      size_t p = peek().pos;
      ++at_;
      ExprPtr x = make(EK::neg, p);
      x->kids.push_back(parse_unary());
      return x;
    }
    return parse_filtered();
  }
  ExprPtr parse_filtered() {
    ExprPtr l = parse_postfix();
    while (at_op("|")) {
      ++at_;
      if (peek().kind != Tok::name) fail_at(peek().pos, "expected a filter name after '|'");
      size_t p = peek().pos;
      std::string name = peek().text;
      ++at_;
      ExprPtr x = make(EK::filter, p);
      x->name = name;
      x->kids.push_back(std::move(l));
      if (at_op("(")) {
        ++at_;
        if (!at_op(")")) {
          while (true) {
            x->kids.push_back(parse_or());
            if (at_op(",")) {
              ++at_;
              continue;
            }
            break;
          }
        }
        expect_op(")");
      }
      int nargs = static_cast<int>(x->kids.size()) - 1;
      if (auto it = custom_.find(name); it != custom_.end()) {
        if (nargs != 0) fail_at(p, fmt::format("filter '{}' takes no arguments", name));
        x->custom = it->second;
      } else if (const FilterInfo* f = find_filter(name)) {
        if (nargs < f->min_args || nargs > f->max_args) {
          if (f->min_args == f->max_args)
            fail_at(p, fmt::format("filter '{}' takes {} argument{}", name, f->min_args, f->min_args == 1 ? "" : "s"));
          fail_at(p, fmt::format("filter '{}' takes {} to {} arguments", name, f->min_args, f->max_args));
        }
        if (name == "regex_replace" && x->kids[1]->k == EK::literal && x->kids[1]->value.is_string()) {
          try {
            x->regex = std::make_shared<const std::regex>(x->kids[1]->value.get<std::string>(), std::regex::ECMAScript);
          } catch (const std::regex_error& err) {
            fail_at(x->kids[1]->pos, fmt::format("invalid regular expression: {}", err.what()));
          }
        }
      } else {
        fail_at(p, fmt::format("unknown filter '{}'", name));
      }
      l = std::move(x);
    }
    return l;
  }
  ExprPtr parse_postfix() {
    ExprPtr l = parse_primary();
    while (true) {
      if (at_op(".")) {
        ++at_;
        const Token& t = peek();
        ExprPtr x = make(EK::attr, t.pos);
        if (t.kind == Tok::name) {
          x->name = t.text;
        } else if (t.kind == Tok::integer) {  // list.0 as in Jinja
          x->k = EK::index;
          ExprPtr lit = make(EK::literal, t.pos);
          lit->value = t.value;
          x->kids.push_back(std::move(l));
          x->kids.push_back(std::move(lit));
          ++at_;
          l = std::move(x);
          continue;
        } else {
          fail_at(t.pos, "expected a field name after '.'");
        }
        ++at_;
        x->kids.push_back(std::move(l));
        l = std::move(x);
        continue;
      }
      if (at_op("[")) {
        size_t p = peek().pos;
        ++at_;
        ExprPtr start, stop;
        if (!at_op(":")) start = parse_or();
        if (at_op(":")) {
          ++at_;
          if (!at_op("]")) stop = parse_or();
          expect_op("]");
          ExprPtr x = make(EK::slice, p);
          x->kids.push_back(std::move(l));
          x->kids.push_back(std::move(start));
          x->kids.push_back(std::move(stop));
          l = std::move(x);
          continue;
        }
        expect_op("]");
        ExprPtr x = make(EK::index, p);
        x->kids.push_back(std::move(l));
        x->kids.push_back(std::move(start));
        l = std::move(x);
        continue;
      }
      return l;
    }
  }
  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.kind) {
      case Tok::integer:
      case Tok::number:
      case Tok::string: {
        ExprPtr x = make(EK::literal, t.pos);
        x->value = t.value;
        ++at_;
        return x;
      }
      case Tok::name: {
        ExprPtr x = make(EK::literal, t.pos);
        if (t.text == "true" || t.text == "True") {
          x->value = true;
        } else if (t.text == "false" || t.text == "False") {
          x->value = false;
        } else if (t.text == "none" || t.text == "None" || t.text == "null") {
          x->value = nullptr;
        } else if (t.text == "and" || t.text == "or" || t.text == "not" || t.text == "in") {
          fail_at(t.pos, fmt::format("unexpected '{}'", t.text));
        } else {
          x->k = EK::name;
          x->name = t.text;
        }
        ++at_;
        return x;
      }
      case Tok::op:
        if (t.text == "(") {
          ++at_;
          ExprPtr x = parse_or();
          expect_op(")");
          return x;
        }
        if (t.text == "[") {
          ExprPtr x = make(EK::list, t.pos);
          ++at_;
          if (!at_op("]")) {
            while (true) {
              x->kids.push_back(parse_or());
              if (at_op(",")) {
                ++at_;
                if (at_op("]")) break;
                continue;
              }
              break;
            }
          }
          expect_op("]");
          return x;
        }
        fail_at(t.pos, fmt::format("unexpected '{}'", t.text));
      default: fail_at(t.pos, "expected an expression");
    }
  }

  std::string_view src_;
  const CustomFilters& custom_;
  std::vector<Seg> segs_;
  const std::vector<Token>* toks_ = nullptr;
  size_t at_ = 0, end_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Evaluation

// A value met while evaluating: a reference into the doc (no copy) or an owned value, or
// "undefined" (a name or key that does not exist) carrying its path until something uses it.
struct Val {
  const Json* ref = nullptr;
  Json own;
  bool undef = false;
  std::string path;
  const Json& get() const { return ref != nullptr ? *ref : own; }
};

Val owned(Json j, std::string path = {}) {
  Val v;
  v.own = std::move(j);
  v.path = std::move(path);
  return v;
}

struct Scope {
  const Json* doc = nullptr;
  const Json* vars = nullptr;
  std::vector<std::pair<std::string, Json>> locals;  // innermost last
};

std::u32string cps(const Json& s) { return text::decode_utf8(s.get_ref<const std::string&>()); }

int64_t to_index(const Json& v, size_t pos) {
  if (is_int(v)) return v.get<int64_t>();
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  fail_at(pos, fmt::format("index must be an integer, not {}", type_name(v)));
}

double to_double(const Json& v, size_t pos, std::string_view what) {
  if (v.is_number()) return v.get<double>();
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  fail_at(pos, fmt::format("{} needs numbers, not {}", what, type_name(v)));
}

std::string py_strip(std::string_view s) {
  std::u32string u = text::decode_utf8(s);
  size_t b = 0, e = u.size();
  while (b < e && text::is_space(u[b])) ++b;
  while (e > b && text::is_space(u[e - 1])) --e;
  // Keep the original bytes (decode/encode round-trips valid UTF-8 exactly).
  return text::encode_utf8(std::u32string_view(u).substr(b, e - b));
}

std::string ascii_upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

std::string py_lower(std::string_view s) { return text::encode_utf8(text::lower(text::decode_utf8(s))); }

Json py_split(const std::string& s, const std::optional<std::string>& sep, size_t pos) {
  Json out = Json::array();
  if (!sep) {
    std::u32string u = text::decode_utf8(s);
    for (auto piece : text::split_whitespace(u)) out.push_back(text::encode_utf8(piece));
    return out;
  }
  if (sep->empty()) fail_at(pos, "split: empty separator");
  size_t i = 0;
  while (true) {
    size_t j = s.find(*sep, i);
    if (j == std::string::npos) {
      out.push_back(s.substr(i));
      break;
    }
    out.push_back(s.substr(i, j - i));
    i = j + sep->size();
  }
  return out;
}

class Evaluator {
 public:
  Evaluator(const Json& doc, const Json& vars) {
    scope_.doc = &doc;
    scope_.vars = vars.is_object() ? &vars : nullptr;
  }

  void render(const std::vector<Node>& nodes, std::string& out) {
    for (const Node& n : nodes) {
      switch (n.k) {
        case NK::text: out += n.text; break;
        case NK::output: {
          Val v = eval(*n.expr);
          require(v, n.expr->pos);
          out += to_text(v.get());
          break;
        }
        case NK::if_: {
          bool done = false;
          for (const auto& [cond, body] : n.branches) {
            Val c = eval(*cond);
            require(c, cond->pos);
            if (truthy(c.get())) {
              render(body, out);
              done = true;
              break;
            }
          }
          if (!done && n.has_else) render(n.else_body, out);
          break;
        }
        case NK::for_: {
          Val seq = eval(*n.expr);
          require(seq, n.expr->pos);
          const Json& s = seq.get();
          std::vector<Json> items;
          if (s.is_array()) {
            items.assign(s.begin(), s.end());
          } else if (s.is_object()) {
            for (auto it = s.begin(); it != s.end(); ++it) items.emplace_back(it.key());
          } else {
            fail_at(n.expr->pos, fmt::format("cannot loop over {}", type_name(s)));
          }
          const size_t len = items.size();
          for (size_t i = 0; i < len; ++i) {
            Json loop = {{"index", static_cast<int64_t>(i + 1)},
                         {"index0", static_cast<int64_t>(i)},
                         {"first", i == 0},
                         {"last", i + 1 == len},
                         {"length", static_cast<int64_t>(len)},
                         {"revindex", static_cast<int64_t>(len - i)},
                         {"revindex0", static_cast<int64_t>(len - i - 1)}};
            scope_.locals.emplace_back("loop", std::move(loop));
            scope_.locals.emplace_back(n.var, std::move(items[i]));
            render(n.body, out);
            scope_.locals.pop_back();
            scope_.locals.pop_back();
          }
          break;
        }
      }
    }
  }

  Val eval(const Expr& x) {
    switch (x.k) {
      case EK::literal: {
        Val v;
        v.ref = &x.value;
        return v;
      }
      case EK::name: return lookup(x.name);
      case EK::attr: {
        Val base = eval(*x.kids[0]);
        return member(std::move(base), x.name, x.pos);
      }
      case EK::index: {
        Val base = eval(*x.kids[0]);
        Val key = eval(*x.kids[1]);
        require(key, x.kids[1]->pos);
        const Json& k = key.get();
        if (k.is_string()) return member(std::move(base), k.get<std::string>(), x.pos);
        require(base, x.pos);
        return index(std::move(base), to_index(k, x.kids[1]->pos), x.pos);
      }
      case EK::slice: return slice(x);
      case EK::list: {
        Json arr = Json::array();
        for (const auto& k : x.kids) {
          Val v = eval(*k);
          require(v, k->pos);
          arr.push_back(v.get());
        }
        return owned(std::move(arr));
      }
      case EK::filter: return filter(x);
      case EK::neg: {
        Val v = eval(*x.kids[0]);
        require(v, x.kids[0]->pos);
        const Json& j = v.get();
        if (is_int(j)) return owned(-j.get<int64_t>());
        return owned(-to_double(j, x.pos, "'-'"));
      }
      case EK::not_: {
        Val v = eval(*x.kids[0]);
        require(v, x.kids[0]->pos);
        return owned(!truthy(v.get()));
      }
      case EK::and_: {
        Val l = eval(*x.kids[0]);
        require(l, x.kids[0]->pos);
        if (!truthy(l.get())) return l;
        Val r = eval(*x.kids[1]);
        require(r, x.kids[1]->pos);
        return r;
      }
      case EK::or_: {
        Val l = eval(*x.kids[0]);
        require(l, x.kids[0]->pos);
        if (truthy(l.get())) return l;
        Val r = eval(*x.kids[1]);
        require(r, x.kids[1]->pos);
        return r;
      }
      case EK::binary: return binary(x);
    }
    fail_at(x.pos, "internal error: unknown expression");
  }

  // Throws the "unknown field" failure for an undefined value.
  static void require(const Val& v, size_t pos) {
    if (v.undef) throw Failure{pos, Kind::missing_field, fmt::format("unknown field '{}'", v.path), v.path};
  }

 private:
  Val lookup(const std::string& name) {
    for (auto it = scope_.locals.rbegin(); it != scope_.locals.rend(); ++it) {
      if (it->first == name) {
        Val v;
        v.ref = &it->second;
        v.path = name;
        return v;
      }
    }
    if (scope_.vars != nullptr) {
      auto it = scope_.vars->find(name);
      if (it != scope_.vars->end()) {
        Val v;
        v.ref = &*it;
        v.path = name;
        return v;
      }
    }
    if (scope_.doc != nullptr && scope_.doc->is_object()) {
      auto it = scope_.doc->find(name);
      if (it != scope_.doc->end()) {
        Val v;
        v.ref = &*it;
        v.path = name;
        return v;
      }
    }
    Val v;
    v.undef = true;
    v.path = name;
    return v;
  }

  static Val member(Val base, const std::string& key, size_t pos) {
    std::string path = base.path.empty() ? key : base.path + "." + key;
    if (base.undef) {
      base.path = std::move(path);
      return base;
    }
    const Json& b = base.get();
    if (!b.is_object())
      fail_at(pos, fmt::format("cannot read field '{}' of {}{}", key, type_name(b),
                               base.path.empty() ? "" : " ('" + base.path + "')"));
    auto it = b.find(key);
    if (it == b.end()) {
      Val v;
      v.undef = true;
      v.path = std::move(path);
      return v;
    }
    if (base.ref != nullptr) {
      Val v;
      v.ref = &*it;
      v.path = std::move(path);
      return v;
    }
    return owned(*it, std::move(path));
  }

  static Val index(Val base, int64_t i, size_t pos) {
    const Json& b = base.get();
    std::string path = fmt::format("{}[{}]", base.path, i);
    if (b.is_array()) {
      const int64_t n = static_cast<int64_t>(b.size());
      int64_t j = i < 0 ? i + n : i;
      if (j < 0 || j >= n)
        fail_at(pos, fmt::format("index {} out of range for {}{} ({} item{})", i,
                                 base.path.empty() ? "a list" : "'" + base.path + "'", "", n, n == 1 ? "" : "s"));
      if (base.ref != nullptr) {
        Val v;
        v.ref = &b[static_cast<size_t>(j)];
        v.path = std::move(path);
        return v;
      }
      return owned(b[static_cast<size_t>(j)], std::move(path));
    }
    if (b.is_string()) {
      std::u32string u = cps(b);
      const int64_t n = static_cast<int64_t>(u.size());
      int64_t j = i < 0 ? i + n : i;
      if (j < 0 || j >= n)
        fail_at(pos, fmt::format("index {} out of range for {} ({} character{})", i,
                                 base.path.empty() ? "a string" : "'" + base.path + "'", n, n == 1 ? "" : "s"));
      return owned(text::encode_utf8(u.substr(static_cast<size_t>(j), 1)), std::move(path));
    }
    fail_at(pos, fmt::format("cannot index {}{}", type_name(b), base.path.empty() ? "" : " ('" + base.path + "')"));
  }

  Val slice(const Expr& x) {
    Val base = eval(*x.kids[0]);
    require(base, x.kids[0]->pos);
    std::optional<int64_t> start, stop;
    if (x.kids[1]) {
      Val v = eval(*x.kids[1]);
      require(v, x.kids[1]->pos);
      start = to_index(v.get(), x.kids[1]->pos);
    }
    if (x.kids[2]) {
      Val v = eval(*x.kids[2]);
      require(v, x.kids[2]->pos);
      stop = to_index(v.get(), x.kids[2]->pos);
    }
    auto bounds = [&](int64_t n) {
      auto fix = [n](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + n : v, 0, n); };
      int64_t s = start ? fix(*start) : 0;
      int64_t e = stop ? fix(*stop) : n;
      if (e < s) e = s;
      return std::pair<size_t, size_t>(static_cast<size_t>(s), static_cast<size_t>(e));
    };
    const Json& b = base.get();
    if (b.is_array()) {
      auto [s, e] = bounds(static_cast<int64_t>(b.size()));
      Json out = Json::array();
      for (size_t i = s; i < e; ++i) out.push_back(b[i]);
      return owned(std::move(out));
    }
    if (b.is_string()) {
      std::u32string u = cps(b);
      auto [s, e] = bounds(static_cast<int64_t>(u.size()));
      return owned(text::encode_utf8(u.substr(s, e - s)));
    }
    fail_at(x.pos, fmt::format("cannot slice {}", type_name(b)));
  }

  Val binary(const Expr& x) {
    Val lv = eval(*x.kids[0]);
    require(lv, x.kids[0]->pos);
    Val rv = eval(*x.kids[1]);
    require(rv, x.kids[1]->pos);
    const Json& l = lv.get();
    const Json& r = rv.get();
    const std::string& op = x.name;
    if (op == "~") return owned(to_text(l) + to_text(r));
    if (op == "==") return owned(l == r);
    if (op == "!=") return owned(l != r);
    if (op == "in") {
      if (r.is_string()) {
        if (!l.is_string()) fail_at(x.pos, fmt::format("'in' a string needs a string, not {}", type_name(l)));
        return owned(r.get_ref<const std::string&>().find(l.get_ref<const std::string&>()) != std::string::npos);
      }
      if (r.is_array()) return owned(std::find(r.begin(), r.end(), l) != r.end());
      if (r.is_object()) {
        if (!l.is_string()) return owned(false);
        return owned(r.contains(l.get<std::string>()));
      }
      fail_at(x.pos, fmt::format("cannot use 'in' with {}", type_name(r)));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c = 0;
      if (l.is_string() && r.is_string()) {
        c = l.get_ref<const std::string&>().compare(r.get_ref<const std::string&>());
      } else {
        double a = to_double(l, x.pos, "'" + op + "'"), b = to_double(r, x.pos, "'" + op + "'");
        c = a < b ? -1 : (a > b ? 1 : 0);
      }
      if (op == "<") return owned(c < 0);
      if (op == ">") return owned(c > 0);
      if (op == "<=") return owned(c <= 0);
      return owned(c >= 0);
    }
    if (op == "+") {
      if (l.is_string() && r.is_string()) return owned(l.get<std::string>() + r.get<std::string>());
      if (l.is_array() && r.is_array()) {
        Json out = l;
        for (const auto& v : r) out.push_back(v);
        return owned(std::move(out));
      }
    }
    if (op == "+" || op == "-" || op == "*") {
      if ((is_int(l) || l.is_boolean()) && (is_int(r) || r.is_boolean())) {
        int64_t a = to_index(l, x.pos), b = to_index(r, x.pos);
        return owned(op == "+" ? a + b : (op == "-" ? a - b : a * b));
      }
      double a = to_double(l, x.pos, "'" + op + "'"), b = to_double(r, x.pos, "'" + op + "'");
      return owned(op == "+" ? a + b : (op == "-" ? a - b : a * b));
    }
    if (op == "/") {
      double a = to_double(l, x.pos, "'/'"), b = to_double(r, x.pos, "'/'");
      if (b == 0) fail_at(x.pos, "division by zero");
      return owned(a / b);
    }
    if (op == "%") {
      int64_t a = to_index(l, x.pos), b = to_index(r, x.pos);
      if (b == 0) fail_at(x.pos, "division by zero");
      int64_t m = a % b;
      if (m != 0 && ((m < 0) != (b < 0))) m += b;  // Python's sign rule
      return owned(m);
    }
    fail_at(x.pos, fmt::format("internal error: operator '{}'", op));
  }

  std::string str_arg(const Expr& x, size_t k) {
    Val v = eval(*x.kids[k]);
    require(v, x.kids[k]->pos);
    if (!v.get().is_string())
      fail_at(x.kids[k]->pos, fmt::format("filter '{}' needs a string argument, not {}", x.name, type_name(v.get())));
    return v.get().get<std::string>();
  }

  const std::string& need_string(const Val& v, const Expr& x) {
    if (!v.get().is_string()) fail_at(x.pos, fmt::format("filter '{}' needs a string, not {}", x.name, type_name(v.get())));
    return v.get().get_ref<const std::string&>();
  }
  const Json& need_list(const Val& v, const Expr& x) {
    if (!v.get().is_array()) fail_at(x.pos, fmt::format("filter '{}' needs a list, not {}", x.name, type_name(v.get())));
    return v.get();
  }

  Val filter(const Expr& x) {
    Val v = eval(*x.kids[0]);
    const std::string& f = x.name;
    if (f == "default") {
      if (v.undef || v.get().is_null()) {
        Val d = eval(*x.kids[1]);
        require(d, x.kids[1]->pos);
        return d;
      }
      return v;
    }
    require(v, x.kids[0]->pos);
    const Json& j = v.get();
    if (x.custom) {
      Json vars = Json::object();
      vars["value"] = j;
      try {
        return owned(x.custom->evaluate(*scope_.doc, vars));
      } catch (const TemplateError& e) {
        fail_at(x.pos, fmt::format("filter '{}' failed: {} (at {})", f, e.problem, e.location));
      }
    }
    if (f == "trim" || f == "strip") return owned(py_strip(need_string(v, x)));
    if (f == "upper") return owned(ascii_upper(need_string(v, x)));
    if (f == "lower") return owned(py_lower(need_string(v, x)));
    if (f == "capitalize") {
      std::u32string u = text::decode_utf8(need_string(v, x));
      if (u.empty()) return owned(std::string());
      std::string first = ascii_upper(text::encode_utf8(u.substr(0, 1)));
      return owned(first + text::encode_utf8(text::lower(std::u32string_view(u).substr(1))));
    }
    if (f == "length") {
      if (j.is_string()) return owned(static_cast<int64_t>(cps(j).size()));
      if (j.is_array() || j.is_object()) return owned(static_cast<int64_t>(j.size()));
      fail_at(x.pos, fmt::format("filter 'length' needs a string, list or object, not {}", type_name(j)));
    }
    if (f == "first" || f == "last") {
      if (j.is_array()) {
        if (j.empty()) fail_at(x.pos, fmt::format("filter '{}' of an empty list", f));
        return owned(f == "first" ? j.front() : j.back());
      }
      if (j.is_string()) {
        std::u32string u = cps(j);
        if (u.empty()) fail_at(x.pos, fmt::format("filter '{}' of an empty string", f));
        return owned(text::encode_utf8(f == "first" ? u.substr(0, 1) : u.substr(u.size() - 1)));
      }
      fail_at(x.pos, fmt::format("filter '{}' needs a list or string, not {}", f, type_name(j)));
    }
    if (f == "join") {
      const Json& l = need_list(v, x);
      std::string sep = x.kids.size() > 1 ? str_arg(x, 1) : std::string();
      std::string out;
      for (size_t i = 0; i < l.size(); ++i) {
        if (i > 0) out += sep;
        out += to_text(l[i]);
      }
      return owned(std::move(out));
    }
    if (f == "split") {
      std::optional<std::string> sep;
      if (x.kids.size() > 1) sep = str_arg(x, 1);
      return owned(py_split(need_string(v, x), sep, x.pos));
    }
    if (f == "replace") {
      std::string s = need_string(v, x);
      std::string from = str_arg(x, 1), to = str_arg(x, 2);
      if (from.empty()) fail_at(x.kids[1]->pos, "replace: empty search string");
      replace_all(s, from, to);
      return owned(std::move(s));
    }
    if (f == "regex_replace") {
      const std::string& s = need_string(v, x);
      std::shared_ptr<const std::regex> re = x.regex;
      if (!re) {
        std::string pat = str_arg(x, 1);
        try {
          re = std::make_shared<const std::regex>(pat, std::regex::ECMAScript);
        } catch (const std::regex_error& err) {
          fail_at(x.kids[1]->pos, fmt::format("invalid regular expression: {}", err.what()));
        }
      }
      return owned(std::regex_replace(s, *re, str_arg(x, 2)));
    }
    if (f == "letter") {
      if (!is_int(j)) fail_at(x.pos, fmt::format("filter 'letter' needs an integer, not {}", type_name(j)));
      int64_t i = j.get<int64_t>();
      if (i < 0 || i >= 26) fail_at(x.pos, fmt::format("filter 'letter': {} is not in 0..25", i));
      return owned(std::string(1, static_cast<char>('A' + i)));
    }
    if (f == "int") {
      if (is_int(j)) return owned(j.get<int64_t>());
      if (j.is_boolean()) return owned(static_cast<int64_t>(j.get<bool>() ? 1 : 0));
      if (j.is_number_float()) return owned(static_cast<int64_t>(std::trunc(j.get<double>())));
      if (j.is_string()) {
        std::string s = py_strip(j.get<std::string>());
        size_t used = 0;
        int64_t n = 0;
        bool ok = !s.empty();
        try {
          n = std::stoll(s, &used);
        } catch (const std::exception&) {
          ok = false;
        }
        if (!ok || used != s.size()) fail_at(x.pos, fmt::format("filter 'int': {} is not an integer", quote(s)));
        return owned(n);
      }
      fail_at(x.pos, fmt::format("filter 'int' cannot convert {}", type_name(j)));
    }
    if (f == "float") {
      if (j.is_number()) return owned(j.get<double>());
      if (j.is_boolean()) return owned(j.get<bool>() ? 1.0 : 0.0);
      if (j.is_string()) {
        std::string s = py_strip(j.get<std::string>());
        size_t used = 0;
        double d = 0;
        bool ok = !s.empty();
        try {
          d = std::stod(s, &used);
        } catch (const std::exception&) {
          ok = false;
        }
        if (!ok || used != s.size()) fail_at(x.pos, fmt::format("filter 'float': {} is not a number", quote(s)));
        return owned(d);
      }
      fail_at(x.pos, fmt::format("filter 'float' cannot convert {}", type_name(j)));
    }
    if (f == "string") return owned(to_text(j));
    if (f == "map") {
      const Json& l = need_list(v, x);
      std::string key = str_arg(x, 1);
      Json out = Json::array();
      for (size_t i = 0; i < l.size(); ++i) {
        if (!l[i].is_object())
          fail_at(x.pos, fmt::format("filter 'map': item {} of '{}' is {}, not an object", i, v.path, type_name(l[i])));
        auto it = l[i].find(key);
        if (it == l[i].end()) {
          std::string path = fmt::format("{}[{}].{}", v.path, i, key);
          throw Failure{x.pos, Kind::missing_field, fmt::format("unknown field '{}'", path), path};
        }
        out.push_back(*it);
      }
      return owned(std::move(out));
    }
    if (f == "index_of") {
      const Json& l = need_list(v, x);
      Val needle = eval(*x.kids[1]);
      require(needle, x.kids[1]->pos);
      for (size_t i = 0; i < l.size(); ++i)
        if (l[i] == needle.get()) return owned(static_cast<int64_t>(i));
      fail_at(x.pos, fmt::format("filter 'index_of': {} is not in {}", quote(to_text(needle.get())),
                                 v.path.empty() ? "the list" : "'" + v.path + "'"));
    }
    if (f == "keys" || f == "values") {
      if (!j.is_object()) fail_at(x.pos, fmt::format("filter '{}' needs an object, not {}", f, type_name(j)));
      Json out = Json::array();
      for (auto it = j.begin(); it != j.end(); ++it) out.push_back(f == "keys" ? Json(it.key()) : it.value());
      return owned(std::move(out));
    }
    if (f == "startswith" || f == "endswith") {
      const std::string& s = need_string(v, x);
      std::string a = str_arg(x, 1);
      bool r = f == "startswith" ? s.starts_with(a) : s.ends_with(a);
      return owned(r);
    }
    if (f == "wikitext_detokenize") return owned(wikitext_detokenize(need_string(v, x)));
    fail_at(x.pos, fmt::format("internal error: filter '{}'", f));
  }

  Scope scope_;
};

int line_of(const Template& t, size_t pos) {
  const TemplateOrigin& o = t.origin();
  if (o.line <= 0) return 0;
  if (!o.block) return o.line;
  const std::string& s = t.text();
  int k = static_cast<int>(std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(std::min(pos, s.size())), '\n'));
  return o.line + 1 + k;
}

std::string location_at(const Template& t, size_t pos) {
  int line = line_of(t, pos);
  if (line <= 0) return t.origin().file;
  return fmt::format("{}:{}", t.origin().file, line);
}

std::string with_key(const TemplateOrigin& o, const std::string& problem) {
  return o.key.empty() ? problem : problem + " in " + o.key;
}

}  // namespace

Template::~Template() = default;

TemplatePtr Template::parse(std::string_view text, TemplateOrigin origin, const CustomFilters& custom) {
  std::shared_ptr<Template> t(new Template());
  t->text_ = std::string(text);
  t->origin_ = std::move(origin);
  t->impl_ = std::make_unique<Impl>();
  try {
    Parser p(t->text_, custom);
    t->impl_->nodes = p.parse_all();
  } catch (const Failure& f) {
    throw Error(fmt::format("{}: {}", location_at(*t, f.pos), with_key(t->origin_, f.problem)));
  }
  // One {{ expr }} with nothing but whitespace around it.
  const Expr* single = nullptr;
  int outputs = 0;
  bool other = false;
  for (const Node& n : t->impl_->nodes) {
    if (n.k == NK::output) {
      ++outputs;
      single = n.expr.get();
    } else if (n.k == NK::text) {
      if (strip(n.text).size() != 0) other = true;
    } else {
      other = true;
    }
  }
  if (outputs == 1 && !other) t->impl_->single = single;
  return t;
}

bool Template::is_single_expression() const { return impl_->single != nullptr; }

std::string Template::location() const {
  if (origin_.line <= 0) return origin_.file;
  return fmt::format("{}:{}", origin_.file, origin_.line);
}

namespace {
[[noreturn]] void rethrow(const Template& t, const Failure& f) {
  std::string loc = location_at(t, f.pos);
  throw TemplateError(fmt::format("{}: {}", loc, with_key(t.origin(), f.problem)), f.kind, f.problem, f.field, loc,
                      t.origin().key);
}
}  // namespace

std::string Template::render(const Json& doc, const Json& vars) const {
  std::string out;
  try {
    Evaluator ev(doc, vars);
    ev.render(impl_->nodes, out);
  } catch (const Failure& f) {
    rethrow(*this, f);
  }
  return out;
}

Json Template::evaluate(const Json& doc, const Json& vars) const {
  if (impl_->single == nullptr) return render(doc, vars);
  try {
    Evaluator ev(doc, vars);
    Val v = ev.eval(*impl_->single);
    Evaluator::require(v, impl_->single->pos);
    return v.get();
  } catch (const Failure& f) {
    rethrow(*this, f);
  }
}

// ---------------------------------------------------------------------------------------------

std::string to_text(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "";
    case Json::value_t::string: return v.get<std::string>();
    case Json::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case Json::value_t::number_integer: return std::to_string(v.get<int64_t>());
    case Json::value_t::number_unsigned: return std::to_string(v.get<uint64_t>());
    case Json::value_t::number_float: {
      double d = v.get<double>();
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      if (d == std::floor(d) && std::fabs(d) < 1e16) return fmt::format("{:.1f}", d);
      return fmt::format("{}", d);
    }
    default: return v.dump();
  }
}

bool truthy(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return v.get<bool>();
    case Json::value_t::number_integer: return v.get<int64_t>() != 0;
    case Json::value_t::number_unsigned: return v.get<uint64_t>() != 0;
    case Json::value_t::number_float: return v.get<double>() != 0;
    case Json::value_t::string: return !v.get_ref<const std::string&>().empty();
    case Json::value_t::array:
    case Json::value_t::object: return !v.empty();
    default: return true;
  }
}

std::string strip(std::string_view s) { return py_strip(s); }

const std::vector<std::string>& builtin_filters() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& f : kFilters) n.emplace_back(f.name);
    return n;
  }();
  return names;
}

namespace {

// OPEN \s* ([^CLOSE]*?) \s* CLOSE  ->  OPEN \1 CLOSE, left to right, non-overlapping, where \s is
// Python's Unicode whitespace: the content up to the next CLOSE loses its surrounding whitespace.
std::string tighten_pairs(const std::string& s, char open, char close) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != open) {
      out.push_back(s[i++]);
      continue;
    }
    size_t j = s.find(close, i + 1);
    if (j == std::string::npos) {
      out.push_back(s[i++]);
      continue;
    }
    out.push_back(open);
    out += py_strip(std::string_view(s).substr(i + 1, j - i - 1));
    out.push_back(close);
    i = j + 1;
  }
  return out;
}

}  // namespace

std::string wikitext_detokenize(std::string_view in) {
  std::string s(in);
  // contractions
  replace_all(s, "s '", "s'");
  {  // lm-eval's literal pattern "/' [0-9]/" (a digit between "/' " and "/") -> "/'[0-9]/"
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
      if (s.compare(i, 3, "/' ") == 0 && i + 4 < s.size() && s[i + 3] >= '0' && s[i + 3] <= '9' && s[i + 4] == '/') {
        out += "/'[0-9]/";
        i += 5;
      } else {
        out.push_back(s[i++]);
      }
    }
    s.swap(out);
  }
  // number separators
  replace_all(s, " @-@ ", "-");
  replace_all(s, " @,@ ", ",");
  replace_all(s, " @.@ ", ".");
  // punctuation
  replace_all(s, " : ", ": ");
  replace_all(s, " ; ", "; ");
  replace_all(s, " . ", ". ");
  replace_all(s, " ! ", "! ");
  replace_all(s, " ? ", "? ");
  replace_all(s, " , ", ", ");
  // brackets and quotes
  s = tighten_pairs(s, '(', ')');
  s = tighten_pairs(s, '[', ']');
  s = tighten_pairs(s, '{', '}');
  s = tighten_pairs(s, '"', '"');
  s = tighten_pairs(s, '\'', '\'');
  // miscellaneous
  replace_all(s, "= = = =", "====");
  replace_all(s, "= = =", "===");
  replace_all(s, "= =", "==");
  replace_all(s, " \xC2\xB0 ", "\xC2\xB0");
  replace_all(s, " \n", "\n");
  replace_all(s, "\n ", "\n");
  replace_all(s, " N ", " 1 ");
  replace_all(s, " 's", "'s");
  return s;
}

}  // namespace qeval::eval::task
