// nines-bench: the project's XMPP load generator (issue 3; see bench/README.md).
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <iostream>

#include "bench/options.h"
#include "bench/report.h"
#include "bench/runner.h"

int main(int argc, char** argv) {
  using namespace nines::bench;
  Options options;
  const int status = ParseOptions(argc, argv, options, std::cout, std::cerr);
  if (status >= 0) return status;
  signal(SIGPIPE, SIG_IGN);

  // Raise the open-file limit as far as we are allowed; workers inherit it.
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  getrlimit(RLIMIT_NOFILE, &lim);
  const std::string error = FinishOptions(options, lim.rlim_cur);
  if (!error.empty()) {
    std::fprintf(stderr, "nines-bench: %s\n", error.c_str());
    return 2;
  }

  RunResult result;
  if (RunScenario(options, result) != 0) return 1;
  if (options.json) {
    PrintJson(stdout, options, result);
  } else {
    PrintTable(stdout, options, result);
  }
  const bool ok = result.stats.failed == 0 && result.stats.disconnects == 0;
  return ok ? 0 : 1;
}
