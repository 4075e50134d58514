// Synthetic page populations for the false-positive profiler: per-folio plain reference
// counts from named distributions, a folio order mix, free folios, and pins (count, kind),
// all reproducible from one seed. Also builds a PageArray holding a population.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "pages/page_array.h"
#include "host/snapshot.h"
#include "base/status.h"
#include "base/threads.h"

namespace pinlab {

// A distribution of integers >= 0 (see lib/profile/types.ts for the public form).
struct Distribution {
  enum class Kind : uint8_t { kFixed, kUniform, kGeometric, kZipf, kLognormal, kMixture };
  Kind kind = Kind::kFixed;
  double a = 1, b = 0, c = 0;  // fixed: a; uniform: [a, b]; geometric: p = a, min = b;
                               // zipf: s = a, max = b; lognormal: mu = a, sigma = b, max = c
  std::vector<std::pair<double, Distribution>> parts;  // mixture: (weight, distribution)
};

// Mixtures may nest this deep (a mixture of mixtures is depth 2): conversion, validation and
// sampling recurse, so a hostile nesting is refused rather than allowed to exhaust the stack.
constexpr int kMaxMixtureDepth = 8;

Status validate_distribution(const Distribution& d, const char* name, int depth = 1);
// P(X >= k): the analytic tail the profiler sets beside its measurements.
double distribution_tail(const Distribution& d, uint64_t k);

// Draws from a Distribution (Zipf through a precomputed CDF, built once).
class Sampler {
 public:
  explicit Sampler(const Distribution& d);
  uint64_t operator()(std::mt19937_64& rng) const;

 private:
  Distribution d_;
  std::vector<double> zipf_cdf_;
  std::vector<std::unique_ptr<Sampler>> parts_;
  std::vector<double> part_cdf_;
};

struct PopulationSpec {
  uint64_t pages = 1 << 20;
  uint64_t seed = 1;
  std::vector<std::pair<uint32_t, double>> orders{{0, 1.0}};  // (order, share of base pages)
  Distribution refs;
  double free_fraction = 0;
  double pinned_fraction = 0.01;
  Distribution pins_per_pinned;
  double write_fraction = 0.5;
};

Status validate_population(const PopulationSpec& p);

// One folio of a population: its plain references and the pins asked for on it.
struct PopFolio {
  uint64_t head;
  uint8_t order;
  uint32_t refs;   // 0: free
  uint32_t reads;  // read pins asked for
  uint32_t writes; // write pins asked for
};

// Draws the folios of a population (deterministic for its seed).
std::vector<PopFolio> draw_population(const PopulationSpec& p);

// The folios of a host snapshot (its orders and map counts as plain references; PFNs it
// does not cover are free), with pins drawn from `pins`' pinned fraction, pins per pinned
// folio and write fraction, reproducible from its seed.
std::vector<PopFolio> population_from_snapshot(const HostSnapshot& snap, const PopulationSpec& pins);

struct BuiltArray {
  std::unique_ptr<PageArray> mem;
  uint64_t pins_taken = 0;
  uint64_t overflow_refusals = 0;
};

// A PageArray (debug accounting on: the exact truth) holding `folios`: every folio's order
// and plain references set directly, then its pins taken one by one (a pin the refcount
// budget cannot take is refused with EOVERFLOW and counted).
// kCancelled if `control` asks to stop (checked every 64 Ki folios).
Status build_population_array(const std::vector<PopFolio>& folios, uint64_t pages,
                              Scheme scheme, uint32_t bias, BuiltArray* out,
                              const RunControl* control = nullptr);

}  // namespace pinlab
