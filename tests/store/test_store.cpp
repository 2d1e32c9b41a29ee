// Results store: SHA-256 vectors, round trip of cells with provenance, resume semantics
// (unique keys, replace), the hash cache, refusal of foreign / newer files, and two processes
// writing one database at once.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include "qeval/store/sha256.h"
#include "qeval/store/store.h"
#include "qeval/util/error.h"
#include "test_support.h"

using namespace qeval;
using namespace qeval::store;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Fed in uneven pieces: same digest as in one piece (buffering across 64-byte blocks).
  std::string million(1000000, 'a');
  Sha256 h;
  for (size_t i = 0; i < million.size(); i += 777) h.update(std::string_view(million).substr(i, 777));
  EXPECT_EQ(h.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

namespace {

CellRecord sample_cell(const std::string& key, double value) {
  CellRecord c;
  c.key = key;
  c.kind = "task";
  c.model = "m";
  c.model_path = "/x/m.gguf";
  c.model_hash = std::string(64, 'a');
  c.architecture = "llama";
  c.spec = "w4g32";
  c.calib_samples = 64;
  c.seed = 3;
  c.task = "arc_easy";
  c.task_hash = std::string(64, 'b');
  c.dataset_hash = std::string(64, 'c');
  c.dimension = "quality";
  c.sub_dimension = "reasoning";
  c.params = {{"limit", 20}, {"configuration", "w4g32@calib64@seed3"}};
  c.qeval_version = "0.1.0";
  c.git_commit = "abc";
  c.machine = {{"cpu_model", "<script>cpu</script>"}};
  c.started_at = now_iso8601();
  c.ended_at = now_iso8601();
  c.duration_s = 1.5;
  c.extra = {{"note", "ünïcode"}};
  MetricRow m;
  m.name = "acc";
  m.value = value;
  m.stderr_value = 0.05;
  m.n = 20;
  m.ci_low = value - 0.1;
  m.ci_high = value + 0.1;
  m.stderr_method = "mean";
  c.metrics.push_back(m);
  MetricRow p;
  p.name = "perplexity";
  p.value = 12.5;
  p.n = 100;
  p.higher_is_better = false;
  c.metrics.push_back(p);
  c.items = {{"acc", {1, 0, 1, nullptr}}};
  return c;
}

}  // namespace

TEST(Store, RoundTripWithProvenance) {
  test::TempDir dir;
  auto st = Store::open(dir.file("r.db"));
  RunRecord run;
  run.plan_name = "p";
  run.plan_path = "plans/p.yaml";
  run.plan_hash = "h";
  run.command = "qeval run";
  run.qeval_version = "0.1.0";
  run.git_commit = "abc";
  run.machine = {{"cores", 2}};
  const int64_t id = st->begin_run(run);
  CellRecord c = sample_cell("k1", 0.75);
  c.run_id = id;
  ASSERT_TRUE(st->put_cell(c, false));
  st->end_run(id, "finished");

  auto again = Store::open_existing(dir.file("r.db"));
  const auto cells = again->cells({.with_items = true});
  ASSERT_EQ(cells.size(), 1u);
  const CellRecord& r = cells[0];
  EXPECT_EQ(r.key, "k1");
  EXPECT_EQ(r.run_id, id);
  EXPECT_EQ(r.model_hash, c.model_hash);
  EXPECT_EQ(r.task_hash, c.task_hash);
  EXPECT_EQ(r.dataset_hash, c.dataset_hash);
  EXPECT_EQ(r.calib_samples, 64);
  EXPECT_EQ(r.seed, 3);
  EXPECT_EQ(r.params, c.params);
  EXPECT_EQ(r.machine, c.machine);
  EXPECT_EQ(r.extra, c.extra);
  EXPECT_EQ(r.items, c.items);
  ASSERT_EQ(r.metrics.size(), 2u);
  EXPECT_EQ(r.metrics[0], c.metrics[0]);
  EXPECT_EQ(r.metrics[1], c.metrics[1]);
  EXPECT_FALSE(r.metrics[1].stderr_value.has_value());
  const auto runs = again->runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].status, "finished");
  EXPECT_FALSE(runs[0].ended_at.empty());
  // Without items unless asked.
  EXPECT_TRUE(again->cells().front().items.empty());
  // Filters.
  EXPECT_EQ(again->cells({.model = "m", .spec = "w4g32"}).size(), 1u);
  EXPECT_TRUE(again->cells({.task = "hellaswag"}).empty());
}

TEST(Store, KeysAreUniqueAndReplaceIsExplicit) {
  test::TempDir dir;
  auto st = Store::open(dir.file("r.db"));
  EXPECT_TRUE(st->put_cell(sample_cell("k", 0.5), false));
  EXPECT_FALSE(st->put_cell(sample_cell("k", 0.9), false));  // kept, not duplicated
  auto cells = st->cells();
  ASSERT_EQ(cells.size(), 1u);
  EXPECT_DOUBLE_EQ(cells[0].metrics[0].value, 0.5);
  EXPECT_TRUE(st->put_cell(sample_cell("k", 0.9), true));   // --force
  cells = st->cells({.with_items = true});
  ASSERT_EQ(cells.size(), 1u);
  EXPECT_DOUBLE_EQ(cells[0].metrics[0].value, 0.9);
  EXPECT_EQ(cells[0].metrics.size(), 2u);  // the old metric rows went with the old cell
  EXPECT_TRUE(st->has_cell("k"));
  EXPECT_FALSE(st->has_cell("other"));
}

TEST(Store, FileHashIsCachedAndFollowsChanges) {
  test::TempDir dir;
  auto st = Store::open(dir.file("r.db"));
  test::write_bytes(dir.file("f.bin"), "abc");
  EXPECT_EQ(st->file_hash(dir.file("f.bin")), sha256_hex("abc"));
  EXPECT_EQ(st->file_hash(dir.file("f.bin")), sha256_hex("abc"));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  test::write_bytes(dir.file("f.bin"), "abcd");  // new size and mtime: hashed again
  EXPECT_EQ(st->file_hash(dir.file("f.bin")), sha256_hex("abcd"));
  // A directory: the listing of its files' hashes.
  std::filesystem::create_directories(dir.path() / "d" / "sub");
  test::write_bytes(dir.path() / "d" / "a.txt", "1");
  test::write_bytes(dir.path() / "d" / "sub" / "b.txt", "2");
  const std::string listing = std::string("a.txt") + '\0' + sha256_hex("1") + "\n" + "sub/b.txt" + '\0' + sha256_hex("2") + "\n";
  EXPECT_EQ(st->file_hash(dir.path() / "d"), sha256_hex(listing));
  EXPECT_THROW(st->file_hash(dir.file("missing")), Error);
}

TEST(Store, RefusesForeignAndNewerFiles) {
  test::TempDir dir;
  test::write_bytes(dir.file("text.db"), std::string(4096, 'x'));
  try {
    Store::open(dir.file("text.db"));
    FAIL() << "opened a non-SQLite file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("text.db"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Store::open_existing(dir.file("absent.db")), Error);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir.file("newer.db").c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  try {
    Store::open(dir.file("newer.db"));
    FAIL() << "opened a newer schema";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(Store, TwoProcessesWriteOneDatabase) {
  test::TempDir dir;
  const std::string path = dir.file("shared.db");
  Store::open(path);  // create the schema once; the children race on everything else
  constexpr int kCells = 150;
  std::vector<pid_t> kids;
  for (int p = 0; p < 2; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      try {
        auto st = Store::open(path);
        const int64_t run = st->begin_run({});
        for (int i = 0; i < kCells; ++i) {
          CellRecord c = sample_cell("p" + std::to_string(p) + "-" + std::to_string(i), i / 1000.0);
          c.run_id = run;
          st->put_cell(c, false);
          // Both write the same shared keys too: exactly one copy must survive.
          st->put_cell(sample_cell("common-" + std::to_string(i), p), false);
        }
        st->end_run(run, "finished");
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", p, e.what());
        rc = 1;
      }
      _exit(rc);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(k, &status, 0), k);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  auto st = Store::open_existing(path);
  const auto keys = st->cell_keys();
  EXPECT_EQ(keys.size(), static_cast<size_t>(3 * kCells));
  EXPECT_EQ(std::set<std::string>(keys.begin(), keys.end()).size(), keys.size());
  for (const auto& c : st->cells()) EXPECT_EQ(c.metrics.size(), 2u) << c.key;
  EXPECT_EQ(st->runs().size(), 2u);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "ok");
  sqlite3_finalize(s);
  sqlite3_close(db);
}
