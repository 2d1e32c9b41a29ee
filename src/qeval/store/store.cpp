#include "qeval/store/store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <functional>

#include "qeval/store/sha256.h"
#include "qeval/util/error.h"

namespace qeval::store {
namespace fs = std::filesystem;

const MetricRow* CellRecord::metric(const std::string& name) const {
  for (const auto& m : metrics)
    if (m.name == name) return &m;
  return nullptr;
}

std::string now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

namespace {

constexpr const char* kSchema = R"SQL(
CREATE TABLE IF NOT EXISTS runs(
  id INTEGER PRIMARY KEY, plan_name TEXT NOT NULL, plan_path TEXT NOT NULL, plan_hash TEXT NOT NULL,
  command TEXT NOT NULL, qeval_version TEXT NOT NULL, git_commit TEXT NOT NULL, machine_json TEXT NOT NULL,
  started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells(
  id INTEGER PRIMARY KEY, cell_key TEXT NOT NULL UNIQUE, run_id INTEGER REFERENCES runs(id),
  kind TEXT NOT NULL, model TEXT NOT NULL, model_path TEXT NOT NULL, model_hash TEXT NOT NULL,
  architecture TEXT NOT NULL, spec TEXT NOT NULL, calib_samples INTEGER NOT NULL, seed INTEGER NOT NULL,
  task TEXT NOT NULL, task_hash TEXT NOT NULL, dataset_hash TEXT NOT NULL,
  dimension TEXT NOT NULL, sub_dimension TEXT NOT NULL, params_json TEXT NOT NULL,
  qeval_version TEXT NOT NULL, git_commit TEXT NOT NULL, machine_json TEXT NOT NULL,
  started_at TEXT NOT NULL, ended_at TEXT NOT NULL, duration_s REAL NOT NULL, extra_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cells_by_config ON cells(model, spec, task);
CREATE TABLE IF NOT EXISTS metrics(
  cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE, name TEXT NOT NULL, value REAL,
  stderr REAL, n INTEGER NOT NULL, ci_low REAL, ci_high REAL, higher_is_better INTEGER NOT NULL,
  stderr_method TEXT NOT NULL, PRIMARY KEY(cell_id, name));
CREATE TABLE IF NOT EXISTS item_scores(
  cell_id INTEGER NOT NULL REFERENCES cells(id) ON DELETE CASCADE, metric TEXT NOT NULL,
  scores_json TEXT NOT NULL, PRIMARY KEY(cell_id, metric));
CREATE TABLE IF NOT EXISTS file_hashes(
  path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
)SQL";

}  // namespace

struct Store::Db {
  sqlite3* handle = nullptr;
  std::string name;  // path for messages

  ~Db() {
    if (handle) sqlite3_close_v2(handle);
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(name + ": " + what + ": " + (handle ? sqlite3_errmsg(handle) : "no database"));
  }
  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(handle, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "error";
      sqlite3_free(err);
      throw Error(name + ": " + msg);
    }
  }
  // Runs f inside BEGIN IMMEDIATE ... COMMIT (rolled back when f throws).
  void transaction(const std::function<void()>& f) {
    exec("BEGIN IMMEDIATE");
    try {
      f();
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(handle, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }
};

namespace {

// Prepared statement with positional binds (1-based) and typed column reads.
class Stmt {
 public:
  Stmt(const Store* /*owner*/, sqlite3* db, const std::string& name, const char* sql) : db_(db), name_(name) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      throw Error(name_ + ": " + sqlite3_errmsg(db) + " in: " + sql);
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  Stmt& bind(int i, double v) {
    check(std::isfinite(v) ? sqlite3_bind_double(s_, i, v) : sqlite3_bind_null(s_, i));
    return *this;
  }
  Stmt& bind(int i, const std::optional<double>& v) {
    if (v) return bind(i, *v);
    check(sqlite3_bind_null(s_, i));
    return *this;
  }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(name_ + ": " + sqlite3_errmsg(db_));
  }
  std::string text(int c) const {
    const auto* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(s_, c)) : std::string();
  }
  int64_t integer(int c) const { return sqlite3_column_int64(s_, c); }
  bool is_null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  double real(int c) const { return is_null(c) ? std::nan("") : sqlite3_column_double(s_, c); }
  std::optional<double> opt_real(int c) const {
    return is_null(c) ? std::nullopt : std::optional<double>(sqlite3_column_double(s_, c));
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw Error(name_ + ": " + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  std::string name_;
  sqlite3_stmt* s_ = nullptr;
};

nlohmann::json parse_json(const std::string& s, const std::string& where) {
  try {
    return s.empty() ? nlohmann::json::object() : nlohmann::json::parse(s);
  } catch (const std::exception& e) {
    throw Error(where + ": stored JSON is corrupt: " + e.what());
  }
}

// JSON text with NaN/inf as null (nlohmann writes them as null already; this keeps the intent explicit).
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace

Store::Store(fs::path path) : db_(std::make_unique<Db>()), path_(std::move(path)) { db_->name = path_.string(); }
Store::~Store() = default;

std::unique_ptr<Store> Store::open_existing(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(path.string() + ": no such results database");
  return open(path);
}

std::unique_ptr<Store> Store::open(const fs::path& path) {
  std::unique_ptr<Store> s(new Store(path));
  Db& db = *s->db_;
  if (sqlite3_open_v2(path.c_str(), &db.handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK)
    db.fail("cannot open");
  // Long enough for another process's cell transaction; they are short (one cell's rows).
  sqlite3_busy_timeout(db.handle, 120000);
  {
    Stmt q(nullptr, db.handle, db.name, "PRAGMA schema_version");
    try {
      q.step();
    } catch (const Error&) {
      throw Error(path.string() + ": not a QEval results database (not SQLite)");
    }
  }
  {
    Stmt wal(nullptr, db.handle, db.name, "PRAGMA journal_mode=WAL");
    if (wal.step() && wal.text(0) != "wal") throw Error(path.string() + ": cannot switch to WAL mode");
  }
  db.exec("PRAGMA foreign_keys=ON");
  db.exec("PRAGMA synchronous=NORMAL");  // WAL + NORMAL: durable across process kills
  db.transaction([&] {
    Stmt v(nullptr, db.handle, db.name, "PRAGMA user_version");
    v.step();
    const int64_t version = v.integer(0);
    if (version > kSchemaVersion)
      throw Error(path.string() + ": results database schema version " + std::to_string(version) +
                  " is newer than this qeval's (" + std::to_string(kSchemaVersion) + ")");
    if (version == 0) {
      // A fresh file, or a SQLite file that is not ours.
      Stmt t(nullptr, db.handle, db.name, "SELECT count(*) FROM sqlite_master WHERE name NOT IN "
                                          "('runs','cells','metrics','item_scores','file_hashes') "
                                          "AND name NOT LIKE 'sqlite_%' AND name != 'cells_by_config'");
      t.step();
      if (t.integer(0) > 0) throw Error(path.string() + ": not a QEval results database (foreign tables)");
      db.exec(kSchema);
      db.exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
    }
  });
  return s;
}

int64_t Store::begin_run(const RunRecord& run) {
  int64_t id = 0;
  db_->transaction([&] {
    Stmt s(this, db_->handle, db_->name,
           "INSERT INTO runs(plan_name, plan_path, plan_hash, command, qeval_version, git_commit, machine_json, "
           "started_at, ended_at, status) VALUES(?,?,?,?,?,?,?,?,NULL,'running')");
    s.bind(1, run.plan_name).bind(2, run.plan_path).bind(3, run.plan_hash).bind(4, run.command);
    s.bind(5, run.qeval_version).bind(6, run.git_commit).bind(7, dump(run.machine));
    s.bind(8, run.started_at.empty() ? now_iso8601() : run.started_at);
    s.step();
    id = sqlite3_last_insert_rowid(db_->handle);
  });
  return id;
}

void Store::end_run(int64_t run_id, const std::string& status) {
  db_->transaction([&] {
    Stmt s(this, db_->handle, db_->name, "UPDATE runs SET ended_at=?, status=? WHERE id=?");
    s.bind(1, now_iso8601()).bind(2, status).bind(3, run_id);
    s.step();
  });
}

std::vector<RunRecord> Store::runs() const {
  Stmt s(nullptr, db_->handle, db_->name,
         "SELECT id, plan_name, plan_path, plan_hash, command, qeval_version, git_commit, machine_json, started_at, "
         "ended_at, status FROM runs ORDER BY id");
  std::vector<RunRecord> out;
  while (s.step()) {
    RunRecord r;
    r.id = s.integer(0);
    r.plan_name = s.text(1), r.plan_path = s.text(2), r.plan_hash = s.text(3), r.command = s.text(4);
    r.qeval_version = s.text(5), r.git_commit = s.text(6);
    r.machine = parse_json(s.text(7), db_->name + ": run " + std::to_string(r.id));
    r.started_at = s.text(8), r.ended_at = s.text(9), r.status = s.text(10);
    out.push_back(std::move(r));
  }
  return out;
}

bool Store::has_cell(const std::string& key) const {
  Stmt s(nullptr, db_->handle, db_->name, "SELECT 1 FROM cells WHERE cell_key=?");
  s.bind(1, key);
  return s.step();
}

std::vector<std::string> Store::cell_keys() const {
  Stmt s(nullptr, db_->handle, db_->name, "SELECT cell_key FROM cells ORDER BY id");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

bool Store::put_cell(const CellRecord& c, bool replace) {
  if (c.key.empty()) throw Error(db_->name + ": a cell needs a key");
  bool written = false;
  db_->transaction([&] {
    {
      Stmt e(this, db_->handle, db_->name, "SELECT id FROM cells WHERE cell_key=?");
      e.bind(1, c.key);
      if (e.step()) {
        if (!replace) return;
        Stmt d(this, db_->handle, db_->name, "DELETE FROM cells WHERE cell_key=?");
        d.bind(1, c.key);
        d.step();
      }
    }
    Stmt s(this, db_->handle, db_->name,
           "INSERT INTO cells(cell_key, run_id, kind, model, model_path, model_hash, architecture, spec, calib_samples, "
           "seed, task, task_hash, dataset_hash, dimension, sub_dimension, params_json, qeval_version, git_commit, "
           "machine_json, started_at, ended_at, duration_s, extra_json) "
           "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    int i = 0;
    auto bind = [&](const auto& v) { s.bind(++i, v); };
    bind(c.key);
    if (c.run_id > 0)
      bind(c.run_id);
    else
      bind(std::optional<double>());
    for (const std::string* v : {&c.kind, &c.model, &c.model_path, &c.model_hash, &c.architecture, &c.spec}) bind(*v);
    bind(c.calib_samples);
    bind(c.seed);
    for (const std::string* v : {&c.task, &c.task_hash, &c.dataset_hash, &c.dimension, &c.sub_dimension}) bind(*v);
    bind(dump(c.params));
    bind(c.qeval_version);
    bind(c.git_commit);
    bind(dump(c.machine));
    bind(c.started_at);
    bind(c.ended_at);
    bind(c.duration_s);
    bind(dump(c.extra));
    s.step();
    const int64_t id = sqlite3_last_insert_rowid(db_->handle);
    Stmt m(this, db_->handle, db_->name,
           "INSERT INTO metrics(cell_id, name, value, stderr, n, ci_low, ci_high, higher_is_better, stderr_method) "
           "VALUES(?,?,?,?,?,?,?,?,?)");
    for (const auto& r : c.metrics) {
      m.bind(1, id).bind(2, r.name).bind(3, r.value).bind(4, r.stderr_value).bind(5, r.n).bind(6, r.ci_low);
      m.bind(7, r.ci_high).bind(8, int64_t{r.higher_is_better}).bind(9, r.stderr_method);
      m.step();
      m.reset();
    }
    if (c.items.is_object()) {
      Stmt it(this, db_->handle, db_->name, "INSERT INTO item_scores(cell_id, metric, scores_json) VALUES(?,?,?)");
      for (auto kv = c.items.begin(); kv != c.items.end(); ++kv) {
        it.bind(1, id).bind(2, kv.key()).bind(3, dump(kv.value()));
        it.step();
        it.reset();
      }
    }
    written = true;
  });
  return written;
}

std::vector<CellRecord> Store::cells(const CellFilter& f) const {
  std::string sql =
      "SELECT id, cell_key, run_id, kind, model, model_path, model_hash, architecture, spec, calib_samples, seed, task, "
      "task_hash, dataset_hash, dimension, sub_dimension, params_json, qeval_version, git_commit, machine_json, "
      "started_at, ended_at, duration_s, extra_json FROM cells WHERE 1=1";
  std::vector<std::string> binds;
  for (const auto& [col, val] : {std::pair<const char*, const std::string*>{"model", &f.model},
                                 {"spec", &f.spec}, {"task", &f.task}, {"kind", &f.kind}})
    if (!val->empty()) {
      sql += std::string(" AND ") + col + "=?";
      binds.push_back(*val);
    }
  sql += " ORDER BY id";
  Stmt s(this, db_->handle, db_->name, sql.c_str());
  for (size_t i = 0; i < binds.size(); ++i) s.bind(static_cast<int>(i + 1), binds[i]);
  std::vector<CellRecord> out;
  while (s.step()) {
    CellRecord c;
    int i = 0;
    c.id = s.integer(i++);
    c.key = s.text(i++);
    c.run_id = s.integer(i++);
    c.kind = s.text(i++), c.model = s.text(i++), c.model_path = s.text(i++), c.model_hash = s.text(i++);
    c.architecture = s.text(i++), c.spec = s.text(i++);
    c.calib_samples = s.integer(i++), c.seed = s.integer(i++);
    c.task = s.text(i++), c.task_hash = s.text(i++), c.dataset_hash = s.text(i++);
    c.dimension = s.text(i++), c.sub_dimension = s.text(i++);
    const std::string where = db_->name + ": cell " + c.key;
    c.params = parse_json(s.text(i++), where);
    c.qeval_version = s.text(i++), c.git_commit = s.text(i++);
    c.machine = parse_json(s.text(i++), where);
    c.started_at = s.text(i++), c.ended_at = s.text(i++);
    c.duration_s = s.real(i++);
    c.extra = parse_json(s.text(i++), where);
    out.push_back(std::move(c));
  }
  Stmt m(this, db_->handle, db_->name,
         "SELECT name, value, stderr, n, ci_low, ci_high, higher_is_better, stderr_method FROM metrics WHERE cell_id=? "
         "ORDER BY rowid");
  Stmt it(this, db_->handle, db_->name, "SELECT metric, scores_json FROM item_scores WHERE cell_id=? ORDER BY rowid");
  for (auto& c : out) {
    m.bind(1, c.id);
    while (m.step()) {
      MetricRow r;
      r.name = m.text(0), r.value = m.real(1), r.stderr_value = m.opt_real(2), r.n = m.integer(3);
      r.ci_low = m.opt_real(4), r.ci_high = m.opt_real(5), r.higher_is_better = m.integer(6) != 0;
      r.stderr_method = m.text(7);
      c.metrics.push_back(std::move(r));
    }
    m.reset();
    if (f.with_items) {
      it.bind(1, c.id);
      while (it.step()) c.items[it.text(0)] = parse_json(it.text(1), db_->name + ": cell " + c.key);
      it.reset();
    }
  }
  return out;
}

std::string Store::file_hash(const fs::path& path) {
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec).lexically_normal();
  if (fs::is_directory(abs, ec)) {
    std::vector<std::pair<std::string, std::string>> files;
    for (const auto& e : fs::recursive_directory_iterator(abs))
      if (e.is_regular_file()) files.emplace_back(fs::relative(e.path(), abs).generic_string(), file_hash(e.path()));
    std::sort(files.begin(), files.end());
    std::string listing;
    for (const auto& [rel, h] : files) listing += rel + '\0' + h + '\n';
    return sha256_hex(listing);
  }
  struct stat st{};
  if (::stat(abs.c_str(), &st) != 0) throw Error(path.string() + ": cannot read");
  const int64_t size = st.st_size;
  const int64_t mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  {
    Stmt q(this, db_->handle, db_->name, "SELECT sha256 FROM file_hashes WHERE path=? AND size=? AND mtime_ns=?");
    q.bind(1, abs.string()).bind(2, size).bind(3, mtime_ns);
    if (q.step()) return q.text(0);
  }
  const std::string h = sha256_file(abs);
  db_->transaction([&] {
    Stmt w(this, db_->handle, db_->name,
           "INSERT OR REPLACE INTO file_hashes(path, size, mtime_ns, sha256) VALUES(?,?,?,?)");
    w.bind(1, abs.string()).bind(2, size).bind(3, mtime_ns).bind(4, h);
    w.step();
  });
  return h;
}

}  // namespace qeval::store
