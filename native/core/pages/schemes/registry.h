// The registry of pin-counting schemes: the one place that lists them. A scheme is one header
// in this folder (see scheme_api.h) plus its include and its X(...) line below, in the order
// the tools list schemes. The enum, dispatch_scheme, scheme_name/parse_scheme, the addon's
// schemes() and the generated TypeScript list (scripts/gen-schemes.mjs reads this file) all
// come from here.
#pragma once

#include "pages/schemes/bias.h"
#include "pages/schemes/hybrid.h"
#include "pages/schemes/separate.h"
#include "pages/schemes/sharded.h"
#include "pages/schemes/write_bias.h"

// X(enumerator, policy type)
#define PINLAB_SCHEME_REGISTRY(X) \
  X(kBias, BiasScheme)            \
  X(kHybrid, HybridScheme)        \
  X(kSeparate, SeparateScheme)    \
  X(kWriteBias, WriteBiasScheme)  \
  X(kSharded, ShardedScheme)
