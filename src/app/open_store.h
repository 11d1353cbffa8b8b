// Opens the store the configuration names (store.backend).
#pragma once

#include <memory>

#include "base/config.h"
#include "base/result.h"
#include "store/store.h"

namespace nines::app {

// Synchronous (connects and migrates): for startup and the CLI.
Result<std::unique_ptr<store::Store>> OpenConfiguredStore(const Config& config);

}  // namespace nines::app
