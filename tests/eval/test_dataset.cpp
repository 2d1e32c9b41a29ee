// Dataset readers: every format, wildcards, joins, malformed records.
#include <gtest/gtest.h>

#include <cstdlib>

#include "qeval/eval/task/dataset.h"
#include "test_support.h"

namespace qeval::eval::task {
namespace {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

DatasetSpec spec_of(const std::string& format) {
  DatasetSpec s;
  s.path = "x";
  s.format = format;
  s.origin = "tasks/t.yaml:4";
  return s;
}

FileRecords read(const std::string& bytes, const DatasetSpec& s, BadRows* bad_out = nullptr) {
  BadRows bad;
  FileRecords r = read_records("data/f", bytes, s, bad);
  if (bad_out) *bad_out = bad;
  return r;
}

TEST(DatasetJsonl, RecordsAndRows) {
  auto r = read("{\"a\": 1}\n\n  \n{\"a\": \"two\", \"b\": [1]}\r\n", spec_of("jsonl"));
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ((*r.records[0])["a"], 1);
  EXPECT_EQ((*r.records[1])["b"], Json::parse("[1]"));
  EXPECT_EQ(r.rows, (std::vector<int64_t>{1, 4}));
}

TEST(DatasetJsonl, MalformedRecordsStopWithFileAndRow) {
  EXPECT_EQ(error_of([] { read("{\"a\": 1}\n{\"a\": }\n", spec_of("jsonl")); }).rfind("data/f:2: invalid JSON: ", 0), 0u);
  EXPECT_EQ(error_of([] { read("{\"a\": 1}\n[1, 2]\n", spec_of("jsonl")); }), "data/f:2: record is a list, not an object");
  EXPECT_EQ(error_of([] { read("{\"a\": 1}\n{\"a\": \"\xff\"}\n", spec_of("jsonl")); }),
            "data/f:2: invalid UTF-8 (byte 7 of the record)");
}

TEST(DatasetJsonl, SkipBadCountsAndKeepsAlignment) {
  DatasetSpec s = spec_of("jsonl");
  s.skip_bad = true;
  BadRows bad;
  auto r = read("{\"a\": 1}\nnot json\n{\"a\": \"\xc3\"}\n{\"a\": 4}\n", s, &bad);
  ASSERT_EQ(r.records.size(), 4u);
  EXPECT_TRUE(r.records[0] && r.records[3]);
  EXPECT_FALSE(r.records[1]);
  EXPECT_FALSE(r.records[2]);
  EXPECT_EQ(bad.count, 2);
  ASSERT_EQ(bad.messages.size(), 2u);
  EXPECT_EQ(bad.messages[0].rfind("data/f:2: invalid JSON", 0), 0u);
  EXPECT_EQ(bad.messages[1].rfind("data/f:3: invalid UTF-8", 0), 0u);
}

TEST(DatasetJson, TopLevelArrayWithElementLines) {
  auto r = read("[\n  {\"q\": \"a\"},\n  {\n    \"q\": \"b\"\n  }\n]\n", spec_of("json"));
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ((*r.records[1])["q"], "b");
  EXPECT_EQ(r.rows, (std::vector<int64_t>{2, 3}));
}

TEST(DatasetJson, RecordsKeyPath) {
  DatasetSpec s = spec_of("json");
  s.records = "data.sst2";
  const std::string text = "{\"data\": {\"qqp\": [{\"x\": 0}],\n \"sst2\": [\n{\"idx\": 0, \"s\": \"{[\\\"]\"},\n{\"idx\": 1}]}}";
  auto r = read(text, s);
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ((*r.records[0])["s"], "{[\"]");
  EXPECT_EQ((*r.records[1])["idx"], 1);
  EXPECT_EQ(r.rows, (std::vector<int64_t>{3, 4}));
  s.records = "data.mnli";
  EXPECT_EQ(error_of([&] { read(text, s); }), "data/f: no key 'mnli' in 'data' (records: data.mnli)");
  EXPECT_EQ(error_of([&] { read(text, spec_of("json")); }),
            "data/f: the top level is an object (keys: data); name the array of records with `records`");
  EXPECT_EQ(error_of([&] { read("[{\"a\": 1}, 5]", spec_of("json")); }), "data/f:1: record is a number, not an object");
  EXPECT_EQ(error_of([&] { read("[\n{\"a\": 1},\n\"\xff\"]", spec_of("json")); }), "data/f:3: invalid UTF-8");
}

TEST(DatasetCsv, HeaderQuotesNewlinesBom) {
  const std::string text =
      "\xEF\xBB\xBFquestion,choice0,answer\r\n"
      "\"What, if \"\"any\"\"?\",plain,1\r\n"
      "\"multi\nline\",\"\",0\r\n"
      "\n"
      "last,x,2";
  auto r = read(text, spec_of("csv"));
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_EQ((*r.records[0])["question"], "What, if \"any\"?");
  EXPECT_EQ((*r.records[0])["choice0"], "plain");
  EXPECT_EQ((*r.records[1])["question"], "multi\nline");
  EXPECT_EQ((*r.records[1])["choice0"], "");
  EXPECT_EQ((*r.records[2])["answer"], "2");
  EXPECT_EQ(r.rows, (std::vector<int64_t>{2, 3, 6}));
}

TEST(DatasetCsv, ColumnsAndBadRows) {
  DatasetSpec s = spec_of("csv");
  s.columns = {"a", "b"};
  auto r = read("1,2\n3,4\n", s);
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ((*r.records[0])["a"], "1");
  s.header = true;  // columns rename, the header row is skipped
  r = read("x,y\n1,2\n", s);
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ((*r.records[0])["b"], "2");
  EXPECT_EQ(error_of([] { read("a,b\n1,2\n1,2,3\n", spec_of("csv")); }), "data/f:3: expected 2 fields, found 3");
  EXPECT_EQ(error_of([] { read("a,b\n\"open,2\n", spec_of("csv")); }), "data/f:2: unterminated quoted field");
  EXPECT_EQ(error_of([] { read("a,a\n1,2\n", spec_of("csv")); }), "data/f: field name 'a' appears twice");
  EXPECT_EQ(error_of([] { read("a,b\n1,\xfe\n", spec_of("csv")); }), "data/f:2: invalid UTF-8 in field 'b'");
  DatasetSpec skip = spec_of("csv");
  skip.skip_bad = true;
  BadRows bad;
  r = read("a,b\n1\n3,4\n", skip, &bad);
  EXPECT_EQ(bad.count, 1);
  EXPECT_FALSE(r.records[0]);
  EXPECT_EQ((*r.records[1])["a"], "3");
}

TEST(DatasetText, WholeSeparatorAndDocStart) {
  DatasetSpec s = spec_of("text");
  auto r = read("all\nof it\n", s);
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ((*r.records[0])["text"], "all\nof it\n");

  s.separator = "\n\n";
  s.field = "story";
  r = read("one\nline two\n\n\ntwo\n\n\n\nthree\n\n", s);
  ASSERT_EQ(r.records.size(), 3u);  // as Python's text.rstrip("\n").split("\n\n"), empty pieces dropped
  EXPECT_EQ((*r.records[0])["story"], "one\nline two");
  EXPECT_EQ((*r.records[1])["story"], "\ntwo");  // a third newline stays with the next piece
  EXPECT_EQ((*r.records[2])["story"], "three");
  EXPECT_EQ(r.rows, (std::vector<int64_t>{1, 4, 9}));

  DatasetSpec d = spec_of("text");
  d.doc_start = "^ = [^=].* = $";
  d.field = "page";
  d.normalize_newlines = true;
  r = read("preamble\r\n = A = \r\n text a\r\n = = sub = = \r\n more\r\n = B = \r\n text b\r\n", d);
  ASSERT_EQ(r.records.size(), 3u);
  EXPECT_EQ((*r.records[0])["page"], "preamble");
  EXPECT_EQ((*r.records[1])["page"], " = A = \n text a\n = = sub = = \n more");
  EXPECT_EQ((*r.records[2])["page"], " = B = \n text b");
  EXPECT_EQ(r.rows, (std::vector<int64_t>{1, 2, 6}));
  d.normalize_newlines = false;
  r = read(" = A = \r\n x\r\n", d);
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ((*r.records[0])["page"], " = A = \r\n x");
}

TEST(DatasetLines, OnePerLineAndGroups) {
  DatasetSpec s = spec_of("lines");
  s.field = "label";
  auto r = read("1\r\n0\n\n1\n", s);
  ASSERT_EQ(r.records.size(), 4u);
  EXPECT_EQ((*r.records[0])["label"], "1");
  EXPECT_EQ((*r.records[2])["label"], "");  // an empty line is a record (files are aligned by line)
  s.lines_per_doc = 3;
  s.columns = {"ctx", "label", "end"};
  r = read("c1\n0\ne1\nc2\n1\ne2\n", s);
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ((*r.records[1])["ctx"], "c2");
  EXPECT_EQ((*r.records[1])["end"], "e2");
  EXPECT_EQ(r.rows, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(error_of([&] { read("a\nb\n", s); }), "data/f: 2 lines is not a multiple of lines_per_doc (3)");
  EXPECT_EQ(error_of([&] { read("a\n\xc0\xaf\nc\n", s); }), "data/f:2: invalid UTF-8");
}

TEST(DatasetFormat, ImpliedByExtension) {
  DatasetSpec s;
  s.origin = "tasks/t.yaml:4";
  s.path = "a/b.jsonl";
  EXPECT_EQ(dataset_format(s), "jsonl");
  s.path = "a/b.lst";
  EXPECT_EQ(dataset_format(s), "lines");
  s.path = "a/b.raw";
  EXPECT_EQ(dataset_format(s), "text");
  s.path = "a/newstest.de";
  EXPECT_EQ(error_of([&] { dataset_format(s); }),
            "tasks/t.yaml:4: no `format` given and none implied by the extension of 'a/newstest.de' (jsonl, json, csv, text, lines)");
}

class DatasetFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir.path() / "set" / "test");
    test::write_bytes(dir.path() / "set/test/algebra_test.csv", "q,a\nx,1\ny,2\n");
    test::write_bytes(dir.path() / "set/test/biology_test.csv", "q,a\nz,3\n");
    test::write_bytes(dir.path() / "set/test/notes.txt", "ignored");
    test::write_bytes(dir.path() / "set/test/algebra_labels.lst", "A\nB\n");
    test::write_bytes(dir.path() / "set/test/biology_labels.lst", "C\n");
    test::write_bytes(dir.path() / "set/pairs.en", "hello\nworld\n");
    test::write_bytes(dir.path() / "set/pairs.de", "hallo\nWelt\n");
    test::write_bytes(dir.path() / "set/short.de", "hallo\n");
  }
  test::TempDir dir;
};

TEST_F(DatasetFiles, WildcardBindsFieldsInNameOrder) {
  DatasetSpec s;
  s.path = "set/test/{subject}_test.csv";
  s.origin = "tasks/t.yaml:4";
  RawDataset ds = read_dataset(s, dir.path());
  ASSERT_EQ(ds.docs.size(), 3u);
  EXPECT_EQ(ds.bound, std::vector<std::string>{"subject"});
  EXPECT_EQ(ds.docs[0]["subject"], "algebra");
  EXPECT_EQ(ds.docs[1]["q"], "y");
  EXPECT_EQ(ds.docs[2]["subject"], "biology");
  EXPECT_EQ(ds.sources[2].file, (dir.path() / "set/test/biology_test.csv").string());
  EXPECT_EQ(ds.sources[2].row, 2);
  s.path = "set/test/*_test.csv";
  EXPECT_EQ(read_dataset(s, dir.path()).docs.size(), 3u);
  s.path = "set/test/{subject}_dev.csv";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }), (dir.path() / "set/test/{subject}_dev.csv").string() + ": no file matches");
}

TEST_F(DatasetFiles, JoinAlignsRecords) {
  DatasetSpec s;
  s.path = "set/pairs.en";
  s.format = "lines";
  s.field = "en";
  s.origin = "tasks/t.yaml:4";
  DatasetSpec j;
  j.path = "set/pairs.de";
  j.format = "lines";
  j.field = "de";
  j.origin = "tasks/t.yaml:8";
  s.join.push_back(j);
  RawDataset ds = read_dataset(s, dir.path());
  ASSERT_EQ(ds.docs.size(), 2u);
  EXPECT_EQ(ds.docs[1]["en"], "world");
  EXPECT_EQ(ds.docs[1]["de"], "Welt");
  s.join[0].path = "set/short.de";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }),
            (dir.path() / "set/short.de").string() + ": 1 records, but " + (dir.path() / "set/pairs.en").string() +
                " has 2 (join needs aligned files)");
  s.join[0].field = "en";
  s.join[0].path = "set/pairs.de";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }),
            (dir.path() / "set/pairs.de").string() + ": joined field 'en' is already a field of " +
                (dir.path() / "set/pairs.en").string());
}

TEST_F(DatasetFiles, JoinPathUsesTheMainMatch) {
  DatasetSpec s;
  s.path = "set/test/{subject}_test.csv";
  s.origin = "tasks/t.yaml:4";
  DatasetSpec j;
  j.path = "set/test/{subject}_labels.lst";
  j.field = "label";
  j.origin = "tasks/t.yaml:7";
  s.join.push_back(j);
  RawDataset ds = read_dataset(s, dir.path());
  ASSERT_EQ(ds.docs.size(), 3u);
  EXPECT_EQ(ds.docs[1]["label"], "B");
  EXPECT_EQ(ds.docs[2]["label"], "C");
  s.join[0].path = "set/test/{topic}_labels.lst";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }),
            "tasks/t.yaml:7: '{topic}' in join path 'set/test/{topic}_labels.lst' is not bound by the main path");
}

TEST_F(DatasetFiles, PathsAreRelativeToTheDataRoot) {
  DatasetSpec s;
  s.origin = "tasks/t.yaml:4";
  s.path = (dir.path() / "set/pairs.en").string();
  s.format = "lines";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }),
            "tasks/t.yaml:4: dataset path '" + s.path + "' must be relative to the data root (--data-dir / QEVAL_DATA)");
  s.path = "../set/pairs.en";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }), "tasks/t.yaml:4: dataset path '../set/pairs.en' must not contain '..'");
  s.path = "set/nothere.en";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }), (dir.path() / "set/nothere.en").string() + ": not found");
  s.path = "s*t/pairs.en";
  EXPECT_EQ(error_of([&] { read_dataset(s, dir.path()); }), "tasks/t.yaml:4: wildcards are only allowed in the file name ('s*t/pairs.en')");
}

TEST(DataRoot, CliThenEnvironment) {
  const char* old_data = std::getenv("QEVAL_DATA");
  const char* old_shared = std::getenv("QEVAL_SHARED");
  std::string keep_data = old_data ? old_data : "", keep_shared = old_shared ? old_shared : "";
  ::setenv("QEVAL_DATA", "/d", 1);
  ::setenv("QEVAL_SHARED", "/s", 1);
  EXPECT_EQ(resolve_data_root(std::string("cli")), std::filesystem::path("cli"));
  EXPECT_EQ(resolve_data_root(std::nullopt), std::filesystem::path("/d"));
  ::unsetenv("QEVAL_DATA");
  EXPECT_EQ(resolve_data_root(std::nullopt), std::filesystem::path("/s/data"));
  ::unsetenv("QEVAL_SHARED");
  EXPECT_EQ(resolve_data_root(std::nullopt, "fallback"), std::filesystem::path("fallback"));
  if (old_data) ::setenv("QEVAL_DATA", keep_data.c_str(), 1);
  if (old_shared) ::setenv("QEVAL_SHARED", keep_shared.c_str(), 1);
}

}  // namespace
}  // namespace qeval::eval::task
