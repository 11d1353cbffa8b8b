#include "app/cli.h"

int main(int argc, char** argv) { return nines::app::RunCli(argc, argv); }
