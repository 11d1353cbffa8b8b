// For tests: a throwaway PostgreSQL database per test.
//
// NINES_TEST_PG is a libpq URI of a server where the tests may create
// databases (scripts/test.sh starts one with scripts/pg-scratch.sh). Without
// it the tests skip, unless NINES_REQUIRE_PG=1 (scripts/test.sh sets it),
// which makes that a failure.
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>

namespace nines::store::postgres::testing {

inline const char* TestUri() {
  const char* uri = std::getenv("NINES_TEST_PG");
  return uri != nullptr && *uri != '\0' ? uri : nullptr;
}

// Why a test that needs PostgreSQL cannot run, or nullopt if it can.
inline std::optional<std::string> SkipReason() {
  if (TestUri() != nullptr) return std::nullopt;
  const char* required = std::getenv("NINES_REQUIRE_PG");
  if (required != nullptr && std::string(required) == "1") {
    ADD_FAILURE() << "NINES_REQUIRE_PG=1 but NINES_TEST_PG is not set";
    return std::nullopt;
  }
  return "NINES_TEST_PG is not set (scripts/test.sh starts a throwaway PostgreSQL and sets it)";
}

// Runs one statement on `conninfo` (blocking) and returns the first value of
// its first row ("" if none).
inline std::string RunSql(const std::string& conninfo, const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  EXPECT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  PGresult* result = PQexec(conn, sql.c_str());
  EXPECT_TRUE(PQresultStatus(result) == PGRES_TUPLES_OK || PQresultStatus(result) == PGRES_COMMAND_OK)
      << sql << ": " << PQerrorMessage(conn);
  std::string value = PQntuples(result) > 0 && PQnfields(result) > 0 ? PQgetvalue(result, 0, 0) : "";
  PQclear(result);
  PQfinish(conn);
  return value;
}

// The test URI with its database replaced by `database`, as key=value pairs.
inline std::string UriFor(const std::string& database) {
  PQconninfoOption* options = PQconninfoParse(TestUri(), nullptr);
  std::string out;
  for (PQconninfoOption* o = options; o != nullptr && o->keyword != nullptr; ++o) {
    std::string keyword = o->keyword;
    std::string value = keyword == "dbname" ? database : (o->val != nullptr ? o->val : "");
    if (value.empty()) continue;
    std::string quoted;
    for (char c : value) {
      if (c == '\'' || c == '\\') quoted.push_back('\\');
      quoted.push_back(c);
    }
    out += keyword + "='" + quoted + "' ";
  }
  PQconninfoFree(options);
  if (out.find("dbname=") == std::string::npos) out += "dbname='" + database + "'";
  return out;
}

// A fresh, empty database, dropped on destruction.
class TestDatabase {
 public:
  TestDatabase() {
    static std::atomic<int> next{0};
    if (TestUri() == nullptr) return;
    name_ = "nines_test_" + std::to_string(getpid()) + "_" + std::to_string(next++);
    RunSql(TestUri(), "DROP DATABASE IF EXISTS " + name_);
    RunSql(TestUri(), "CREATE DATABASE " + name_);
  }
  ~TestDatabase() {
    if (!name_.empty()) RunSql(TestUri(), "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
  }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& name() const { return name_; }
  std::string uri() const { return UriFor(name_); }
  std::string Sql(const std::string& sql) const { return RunSql(uri(), sql); }

 private:
  std::string name_;
};

}  // namespace nines::store::postgres::testing
