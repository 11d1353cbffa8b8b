// Report: turns a RunResult into the final table (for people) or one JSON
// object (for scripts, --json). Both are made from one list of metrics, so
// they always agree.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "bench/options.h"
#include "bench/runner.h"

namespace nines::bench {

struct Metric {
  std::string key;    // JSON key, e.g. "logins_per_s"
  std::string label;  // table label, e.g. "logins/s"
  double value = 0;
  int precision = 0;  // decimals shown
};

std::vector<Metric> Metrics(const Options& options, const RunResult& result);
void PrintTable(std::FILE* out, const Options& options, const RunResult& result);
void PrintJson(std::FILE* out, const Options& options, const RunResult& result);

// Escapes a string for a JSON string literal (without the quotes).
std::string JsonEscape(const std::string& text);

}  // namespace nines::bench
