#include "scheme.h"

#include <cstring>

namespace pinlab {

const char* scheme_name(Scheme s) {
  switch (s) {
    case Scheme::kBias: return "bias";
    case Scheme::kHybrid: return "hybrid";
    case Scheme::kSeparate: return "separate";
    case Scheme::kWriteBias: return "write-bias";
  }
  return "?";
}

bool parse_scheme(const char* name, Scheme* out) {
  for (Scheme s : {Scheme::kBias, Scheme::kHybrid, Scheme::kSeparate, Scheme::kWriteBias}) {
    if (std::strcmp(name, scheme_name(s)) == 0) {
      *out = s;
      return true;
    }
  }
  return false;
}

}  // namespace pinlab
