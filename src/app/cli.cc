#include "app/cli.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "base/config.h"

namespace nines::app {

int RunCli(int argc, char** argv) {
  CLI::App app{"nines: a messaging server (XMPP)"};
  app.require_subcommand(1);
  auto* config_cmd = app.add_subcommand("config", "Check or document configuration");
  config_cmd->require_subcommand(1);
  auto* doc = config_cmd->add_subcommand("doc", "Print docs/config.md, generated from the schema");
  doc->callback([] { fmt::print("{}", ConfigDocMarkdown()); });
  CLI11_PARSE(app, argc, argv);
  return 0;
}

}  // namespace nines::app
