// The `nines` command line. The contract operators script against is in docs/cli.md.
#pragma once

namespace nines::app {

// Parses argv and runs the subcommand. Returns the process exit status.
int RunCli(int argc, char** argv);

}  // namespace nines::app
