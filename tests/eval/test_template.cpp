// The task template language: every construct, every filter, every error and its location.
#include <gtest/gtest.h>

#include "qeval/eval/task/template.h"

namespace qeval::eval::task {
namespace {

const Json kDoc = Json::parse(R"({
  "question": "  What is 2+2?  ",
  "choices": ["three", "four", "five"],
  "n": 3,
  "obj": {"x": {"y": "deep"}, "k": "v"},
  "flag": true,
  "off": false,
  "empty": "",
  "none": null,
  "list": [],
  "answer": "2",
  "items": [{"text": "a", "label": "A"}, {"text": "b", "label": "B"}],
  "targets": {"yes it is": 1, "no": 0, "maybe": 0},
  "sentence": "Sarah was better than Maria so _ got the easier cases.",
  "pi": 3.25,
  "uni": "Ünïcödé"
})");

TemplateOrigin origin(int line = 7, bool block = false) { return TemplateOrigin{"tasks/t.yaml", line, block, "doc_to_text"}; }

std::string R(const std::string& t, const Json& doc = kDoc) { return Template::parse(t, origin())->render(doc); }
Json E(const std::string& t, const Json& doc = kDoc) { return Template::parse(t, origin())->evaluate(doc); }

// The message of the qeval::Error thrown by f.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
std::string render_error(const std::string& t, const Json& doc = kDoc, TemplateOrigin o = origin()) {
  return error_of([&] { Template::parse(t, o)->render(doc); });
}

TEST(Template, TextAndFields) {
  EXPECT_EQ(R("plain text\nline 2"), "plain text\nline 2");
  EXPECT_EQ(R(""), "");
  EXPECT_EQ(R("Q: {{question}}|"), "Q:   What is 2+2?  |");
  EXPECT_EQ(R("{{ obj.x.y }}"), "deep");
  EXPECT_EQ(R("{{ obj['x'][\"y\"] }}"), "deep");
  EXPECT_EQ(R("{{ choices[0] }} {{ choices[2] }} {{ choices[-1] }} {{ choices.1 }}"), "three five five four");
  EXPECT_EQ(R("{{ items[1].label }}"), "B");
  EXPECT_EQ(R("{{ n }} {{ pi }} {{ flag }} {{ off }} [{{ none }}] {{ 2.0 }}"), "3 3.25 True False [] 2.0");
  EXPECT_EQ(R("{{ choices }}"), R"(["three","four","five"])");
  EXPECT_EQ(R("{{ uni[2] }}{{ uni[-1] }}"), "ïé");  // indexing counts code points
}

TEST(Template, Slices) {
  EXPECT_EQ(R("{{ choices[1:] | join(',') }}"), "four,five");
  EXPECT_EQ(R("{{ choices[:-1] | join(',') }}"), "three,four");
  EXPECT_EQ(R("{{ choices[5:] | length }}"), "0");
  EXPECT_EQ(R("{{ 'abcdef'[1:3] }}{{ 'abcdef'[-2:] }}"), "bcef");
  EXPECT_EQ(R("{{ uni[:3] }}"), "Ünï");
}

TEST(Template, Literals) {
  EXPECT_EQ(R("{{ 'single' }}{{ \"double\" }}{{ 'it\\'s' }}{{ 'a\\nb' }}"), "singledoubleit'sa\nb");
  EXPECT_EQ(E("{{ [n, 'x', [1, 2],] }}"), Json::parse(R"([3, "x", [1, 2]])"));
  EXPECT_EQ(E("{{ 42 }}"), 42);
  EXPECT_EQ(E("{{ true }}"), true);
  EXPECT_EQ(E("{{ none }}"), nullptr);  // the doc's field 'none' (null)
  EXPECT_EQ(E("{{ None }}"), nullptr);
}

TEST(Template, Operators) {
  EXPECT_EQ(E("{{ n + 2 }}"), 5);
  EXPECT_EQ(E("{{ n - 5 }}"), -2);
  EXPECT_EQ(E("{{ n * 4 }}"), 12);
  EXPECT_EQ(E("{{ n / 2 }}"), 1.5);
  EXPECT_EQ(E("{{ -7 % 3 }}"), 2);  // Python's sign rule
  EXPECT_EQ(E("{{ -n }}"), -3);
  EXPECT_EQ(E("{{ 'a' ~ n ~ flag }}"), "a3True");
  EXPECT_EQ(E("{{ 'ab' + 'cd' }}"), "abcd");
  EXPECT_EQ(E("{{ (answer | int) - 1 }}"), 1);
  EXPECT_EQ(E("{{ 2 + 3 * 4 }}"), 14);
  EXPECT_EQ(E("{{ (2 + 3) * 4 }}"), 20);
  EXPECT_EQ(E("{{ n == 3 and answer == '2' }}"), true);
  EXPECT_EQ(E("{{ n != 3 or off }}"), false);
  EXPECT_EQ(E("{{ not flag }}"), false);
  EXPECT_EQ(E("{{ n < 4 }}{{ n >= 4 }}{{ 'a' < 'b' }}"), "TrueFalseTrue");
  EXPECT_EQ(E("{{ 'four' in choices }}"), true);
  EXPECT_EQ(E("{{ 'six' not in choices }}"), true);
  EXPECT_EQ(E("{{ '2+2' in question }}"), true);
  EXPECT_EQ(E("{{ 'k' in obj }}"), true);
  EXPECT_EQ(E("{{ empty or 'fallback' }}"), "fallback");  // and/or give an operand, as in Python
}

TEST(Template, Filters) {
  EXPECT_EQ(R("[{{ question | trim }}][{{ question | strip }}]"), "[What is 2+2?][What is 2+2?]");
  EXPECT_EQ(R("{{ 'MiXed' | upper }} {{ 'MiXed' | lower }} {{ 'hELLO wORLD' | capitalize }}"), "MIXED mixed Hello world");
  EXPECT_EQ(R("{{ uni | lower }}"), "ünïcödé");
  EXPECT_EQ(R("{{ choices | length }} {{ 'héllo' | length }} {{ obj | length }}"), "3 5 2");
  EXPECT_EQ(R("{{ choices | first }} {{ choices | last }} {{ 'xyz' | first }}"), "three five x");
  EXPECT_EQ(R("{{ choices | join }}|{{ choices | join(', ') }}"), "threefourfive|three, four, five");
  EXPECT_EQ(E("{{ '  a  b\tc ' | split }}"), Json::parse(R"(["a","b","c"])"));
  EXPECT_EQ(E("{{ 'a,,b' | split(',') }}"), Json::parse(R"(["a","","b"])"));
  EXPECT_EQ(R("{{ 'a_b_c' | replace('_', ' ') }}"), "a b c");
  EXPECT_EQ(R("{{ 'x [title] y [tag]z' | regex_replace('\\[.*?\\]', '') }}"), "x  y z");
  EXPECT_EQ(R("{{ 'ab12cd' | regex_replace('([a-z]+)', '<$1>') }}"), "<ab>12<cd>");
  EXPECT_EQ(R("{{ 0 | letter }}{{ 2 | letter }}{{ 25 | letter }}"), "ACZ");
  EXPECT_EQ(E("{{ answer | int }}"), 2);
  EXPECT_EQ(E("{{ ' 17 ' | int }}"), 17);
  EXPECT_EQ(E("{{ flag | int }}"), 1);
  EXPECT_EQ(E("{{ pi | int }}"), 3);
  EXPECT_EQ(E("{{ '2.5' | float }}"), 2.5);
  EXPECT_EQ(E("{{ n | string }}"), "3");
  EXPECT_EQ(E("{{ items | map('text') }}"), Json::parse(R"(["a","b"])"));
  EXPECT_EQ(E("{{ items | map('label') | index_of('B') }}"), 1);
  EXPECT_EQ(E("{{ targets | keys }}"), Json::parse(R"(["yes it is","no","maybe"])"));  // file order
  EXPECT_EQ(E("{{ targets | values }}"), Json::parse("[1,0,0]"));
  EXPECT_EQ(E("{{ targets | values | index_of(1) }}"), 0);
  EXPECT_EQ(R("{{ missing | default('d') }}|{{ none | default('n') }}|{{ n | default(0) }}"), "d|n|3");
  EXPECT_EQ(R("{{ obj.nope.deeper | default('x') }}"), "x");
  EXPECT_EQ(E("{{ 'abc.' | endswith('.') }}"), true);
  EXPECT_EQ(E("{{ 'abc' | startswith('b') }}"), false);
  EXPECT_EQ(R("{{ (sentence | split('_'))[0] }}|{{ (sentence | split('_'))[1] | trim }}"),
            "Sarah was better than Maria so |got the easier cases.");
}

TEST(Template, WikitextDetokenize) {
  EXPECT_EQ(wikitext_detokenize(" = Title = \n The 1 @,@ 000 @-@ year ( old ) war , and \" so \" on . "),
            " = Title =\nThe 1,000-year (old) war, and \"so\" on. ");
  EXPECT_EQ(wikitext_detokenize("= = Heading = =\nplayers ' kit , it 's 5 \xC2\xB0 C"), "== Heading ==\nplayers'kit, it's 5\xC2\xB0" "C");  // lm-eval pairs the apostrophes too
  EXPECT_EQ(wikitext_detokenize("a ( b"), "a ( b");  // an unclosed bracket stays
  EXPECT_EQ(R("{{ 'x @.@ 5' | wikitext_detokenize }}"), "x.5");
}

TEST(Template, ForLoops) {
  EXPECT_EQ(R("{% for c in choices %}{{ loop.index }}.{{ c }} {% endfor %}"), "1.three 2.four 3.five ");
  EXPECT_EQ(R("{% for c in choices %}{{ \"ABCD\"[loop.index0] }}. {{ c }}\n{% endfor %}"), "A. three\nB. four\nC. five\n");
  EXPECT_EQ(R("{% for c in choices %}{{ loop.index0 | letter }}{% endfor %}"), "ABC");
  EXPECT_EQ(R("{% for c in choices %}{% if loop.first %}[{% endif %}{{ c }}{% if loop.last %}]{% else %},{% endif %}{% endfor %}"),
            "[three,four,five]");
  EXPECT_EQ(R("{% for c in choices %}{{ loop.length }}{{ loop.revindex }}{% endfor %}"), "333231");
  EXPECT_EQ(R("{% for i in items %}{% for c in choices[:2] %}{{ i.text }}{{ loop.index }}{% endfor %};{{ loop.index }} {% endfor %}"),
            "a1a2;1 b1b2;2 ");
  EXPECT_EQ(R("{% for k in obj %}{{ k }}{% endfor %}"), "xk");
  EXPECT_EQ(R("{% for x in list %}never{% endfor %}done"), "done");
  // The loop variable shadows a doc field and disappears after the loop.
  EXPECT_EQ(R("{% for n in [7, 8] %}{{ n }}{% endfor %}{{ n }}"), "783");
}

TEST(Template, Conditionals) {
  EXPECT_EQ(R("{% if flag %}yes{% endif %}"), "yes");
  EXPECT_EQ(R("{% if off %}yes{% else %}no{% endif %}"), "no");
  EXPECT_EQ(R("{% if n == 1 %}one{% elif n == 3 %}three{% else %}other{% endif %}"), "three");
  EXPECT_EQ(R("{% if empty %}a{% elif list %}b{% else %}c{% endif %}"), "c");
  EXPECT_EQ(R("{% if not (question | trim | endswith('.')) %}no period{% endif %}"), "no period");
}

TEST(Template, WhitespaceControlAndComments) {
  EXPECT_EQ(R("a  {{- n -}}  b"), "a3b");
  EXPECT_EQ(R("{% for c in choices -%}\n  {{ c }}\n{%- endfor %}"), "threefourfive");
  EXPECT_EQ(R("x{# a comment {{ not rendered }} #}y"), "xy");
  EXPECT_EQ(R("x {#- trimmed -#} y"), "xy");
}

TEST(Template, EvaluateGivesValuesOfSingleExpressions) {
  auto t = Template::parse("  {{ choices }}\n", origin());
  EXPECT_TRUE(t->is_single_expression());
  EXPECT_EQ(t->evaluate(kDoc), Json::parse(R"(["three","four","five"])"));
  auto u = Template::parse("{{ n }}{{ n }}", origin());
  EXPECT_FALSE(u->is_single_expression());
  EXPECT_EQ(u->evaluate(kDoc), "33");
  EXPECT_EQ(Template::parse("{{ choices }}", origin())->render(kDoc), R"(["three","four","five"])");
}

TEST(Template, VarsShadowFields) {
  Json vars = {{"turn", "hello"}, {"n", 9}};
  EXPECT_EQ(Template::parse("{{ turn }} {{ n }} {{ answer }}", origin())->render(kDoc, vars), "hello 9 2");
}

TEST(Template, CustomFilters) {
  CustomFilters custom;
  custom["shout"] = Template::parse("{{ value | upper ~ '!' }}", TemplateOrigin{"tasks/t.yaml", 3, false, "template_filters.shout"});
  custom["twice"] = Template::parse("{{ value | shout }}{{ value | shout }}", TemplateOrigin{"tasks/t.yaml", 4, false, "template_filters.twice"}, custom);
  EXPECT_EQ(Template::parse("{{ 'hi' | shout }} {{ choices[0] | twice }}", origin(), custom)->render(kDoc), "HI! THREE!THREE!");
  EXPECT_EQ(error_of([&] { Template::parse("{{ n | shout(1) }}", origin(), custom); }),
            "tasks/t.yaml:7: filter 'shout' takes no arguments in doc_to_text");
  std::string e = error_of([&] { Template::parse("{{ n | shout }}", origin(), custom)->render(kDoc); });
  EXPECT_EQ(e, "tasks/t.yaml:7: filter 'shout' failed: filter 'upper' needs a string, not an integer (at tasks/t.yaml:3) in doc_to_text");
}

// ---- errors ----

TEST(TemplateErrors, UnknownFieldNamesFileLineAndKey) {
  EXPECT_EQ(render_error("Question: {{ questoin }}\nAnswer:"), "tasks/t.yaml:7: unknown field 'questoin' in doc_to_text");
  EXPECT_EQ(render_error("{{ obj.x.z }}"), "tasks/t.yaml:7: unknown field 'obj.x.z' in doc_to_text");
  EXPECT_EQ(render_error("{{ items | map('txt') }}"), "tasks/t.yaml:7: unknown field 'items[0].txt' in doc_to_text");
  EXPECT_EQ(render_error("{% if missing %}x{% endif %}"), "tasks/t.yaml:7: unknown field 'missing' in doc_to_text");
  try {
    Template::parse("{{ obj.x.z }}", origin())->render(kDoc);
    FAIL();
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.kind, TemplateError::Kind::missing_field);
    EXPECT_EQ(e.field, "obj.x.z");
    EXPECT_EQ(e.location, "tasks/t.yaml:7");
    EXPECT_EQ(e.key, "doc_to_text");
  }
}

TEST(TemplateErrors, LineInsideABlockScalar) {
  // A literal block starting on line 5 ('|'): its first text line is file line 6.
  auto o = origin(5, true);
  EXPECT_EQ(render_error("Question: {{ question }}\nChoices:\n{{ choicez }}\n", kDoc, o),
            "tasks/t.yaml:8: unknown field 'choicez' in doc_to_text");
  EXPECT_EQ(render_error("{{ questoin }}", kDoc, o), "tasks/t.yaml:6: unknown field 'questoin' in doc_to_text");
  // Not a block: the value's line.
  EXPECT_EQ(render_error("a\nb\n{{ choicez }}", kDoc, origin(5, false)), "tasks/t.yaml:5: unknown field 'choicez' in doc_to_text");
  // Parse errors too.
  EXPECT_EQ(error_of([&] { Template::parse("line\n{% for c in choices %}\n", o); }),
            "tasks/t.yaml:7: '{% for %}' without '{% endfor %}' in doc_to_text");
}

TEST(TemplateErrors, Syntax) {
  auto parse_error = [](const std::string& t) { return error_of([&] { Template::parse(t, origin()); }); };
  EXPECT_EQ(parse_error("{{ question"), "tasks/t.yaml:7: missing '}}' in doc_to_text");
  EXPECT_EQ(parse_error("{% if flag %}x"), "tasks/t.yaml:7: '{% if %}' without '{% endif %}' in doc_to_text");
  EXPECT_EQ(parse_error("x{% endfor %}"), "tasks/t.yaml:7: '{% endfor %}' without a matching opening statement in doc_to_text");
  EXPECT_EQ(parse_error("{% else %}"), "tasks/t.yaml:7: '{% else %}' without a matching opening statement in doc_to_text");
  EXPECT_EQ(parse_error("{% include 'x' %}"), "tasks/t.yaml:7: unknown statement 'include' in doc_to_text");
  EXPECT_EQ(parse_error("{% for c of choices %}{% endfor %}"), "tasks/t.yaml:7: expected '{% for NAME in EXPRESSION %}' in doc_to_text");
  EXPECT_EQ(parse_error("{% if x %}a{% else %}b{% else %}c{% endif %}"), "tasks/t.yaml:7: second '{% else %}' in doc_to_text");
  EXPECT_EQ(parse_error("{% endif x %}"), "tasks/t.yaml:7: '{% endif %}' without a matching opening statement in doc_to_text");
  EXPECT_EQ(parse_error("{{ 'abc }}"), "tasks/t.yaml:7: unterminated string literal in doc_to_text");
  EXPECT_EQ(parse_error("{{ a $ b }}"), "tasks/t.yaml:7: unexpected character '$' in doc_to_text");
  EXPECT_EQ(parse_error("{{ }}"), "tasks/t.yaml:7: empty '{{ }}' in doc_to_text");
  EXPECT_EQ(parse_error("{{ a b }}"), "tasks/t.yaml:7: unexpected 'b' in doc_to_text");
  EXPECT_EQ(parse_error("{{ choices[0 }}"), "tasks/t.yaml:7: expected ']' but found end of expression in doc_to_text");
  EXPECT_EQ(parse_error("{{ x | uper }}"), "tasks/t.yaml:7: unknown filter 'uper' in doc_to_text");
  EXPECT_EQ(parse_error("{{ x | replace('a') }}"), "tasks/t.yaml:7: filter 'replace' takes 2 arguments in doc_to_text");
  EXPECT_EQ(parse_error("{{ x | join(1, 2) }}"), "tasks/t.yaml:7: filter 'join' takes 0 to 1 arguments in doc_to_text");
  EXPECT_EQ(parse_error("{{ x | regex_replace('(', '') }}").rfind("tasks/t.yaml:7: invalid regular expression", 0), 0u);
  EXPECT_EQ(parse_error("{{ x. }}"), "tasks/t.yaml:7: expected a field name after '.' in doc_to_text");
  EXPECT_EQ(parse_error("{# open"), "tasks/t.yaml:7: missing '#}' in doc_to_text");
  EXPECT_EQ(parse_error("{% for loop in choices %}{% endfor %}"), "tasks/t.yaml:7: 'loop' is reserved in doc_to_text");
}

TEST(TemplateErrors, Evaluation) {
  EXPECT_EQ(render_error("{{ choices[3] }}"), "tasks/t.yaml:7: index 3 out of range for 'choices' (3 items) in doc_to_text");
  EXPECT_EQ(render_error("{{ n.x }}"), "tasks/t.yaml:7: cannot read field 'x' of an integer ('n') in doc_to_text");
  EXPECT_EQ(render_error("{{ n[0] }}"), "tasks/t.yaml:7: cannot index an integer ('n') in doc_to_text");
  EXPECT_EQ(render_error("{{ choices['a':] }}"), "tasks/t.yaml:7: index must be an integer, not a string in doc_to_text");
  EXPECT_EQ(render_error("{{ n / 0 }}"), "tasks/t.yaml:7: division by zero in doc_to_text");
  EXPECT_EQ(render_error("{{ 26 | letter }}"), "tasks/t.yaml:7: filter 'letter': 26 is not in 0..25 in doc_to_text");
  EXPECT_EQ(render_error("{{ question | int }}"), "tasks/t.yaml:7: filter 'int': 'What is 2+2?' is not an integer in doc_to_text");
  EXPECT_EQ(render_error("{{ choices | index_of('six') }}"), "tasks/t.yaml:7: filter 'index_of': 'six' is not in 'choices' in doc_to_text");
  EXPECT_EQ(render_error("{{ n | upper }}"), "tasks/t.yaml:7: filter 'upper' needs a string, not an integer in doc_to_text");
  EXPECT_EQ(render_error("{{ list | first }}"), "tasks/t.yaml:7: filter 'first' of an empty list in doc_to_text");
  EXPECT_EQ(render_error("{% for c in n %}{% endfor %}"), "tasks/t.yaml:7: cannot loop over an integer in doc_to_text");
  EXPECT_EQ(render_error("{{ choices - 1 }}"), "tasks/t.yaml:7: '-' needs numbers, not a list in doc_to_text");
  EXPECT_EQ(render_error("{{ 'x' | split('') }}"), "tasks/t.yaml:7: split: empty separator in doc_to_text");
  EXPECT_EQ(render_error("{{ obj | keys | join(n) }}"), "tasks/t.yaml:7: filter 'join' needs a string argument, not an integer in doc_to_text");
  TemplateOrigin nowhere{"tasks/t.yaml", 0, false, ""};
  EXPECT_EQ(render_error("{{ zzz }}", kDoc, nowhere), "tasks/t.yaml: unknown field 'zzz'");
}

TEST(TemplateHelpers, TextAndTruthiness) {
  EXPECT_EQ(to_text(Json(1.0)), "1.0");
  EXPECT_EQ(to_text(Json(0.1)), "0.1");
  EXPECT_EQ(to_text(Json(nullptr)), "");
  EXPECT_FALSE(truthy(Json::array()));
  EXPECT_FALSE(truthy(Json("")));
  EXPECT_FALSE(truthy(Json(0)));
  EXPECT_TRUE(truthy(Json("0")));
  EXPECT_TRUE(truthy(Json::parse("[0]")));
  EXPECT_EQ(strip("\u00a0 x \u3000"), "x");  // Python strips Unicode whitespace
}

}  // namespace
}  // namespace qeval::eval::task
