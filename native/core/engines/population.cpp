#include "engines/population.h"

#include <algorithm>
#include <cmath>

namespace pinlab {

namespace {
Status bad(const char* name, double value, const char* rule) {
  return Status::BadOption(name, int64_t(value), rule);
}
}  // namespace

Status validate_distribution(const Distribution& d, const char* name, int depth) {
  using K = Distribution::Kind;
  switch (d.kind) {
    case K::kFixed:
      if (d.a < 0 || d.a > INT32_MAX) return bad(name, d.a, "fixed: a value in 0..2^31-1");
      return Status::Ok();
    case K::kUniform:
      if (d.a < 0 || d.b < d.a || d.b > INT32_MAX) return bad(name, d.b, "uniform: 0 <= min <= max < 2^31");
      return Status::Ok();
    case K::kGeometric:
      if (!(d.a > 0 && d.a <= 1)) return bad(name, d.a, "geometric: 0 < p <= 1");
      if (d.b < 0 || d.b > INT32_MAX) return bad(name, d.b, "geometric: min in 0..2^31-1");
      return Status::Ok();
    case K::kZipf:
      if (!(d.a > 0) || d.b < 1 || d.b > (1 << 24)) return bad(name, d.b, "zipf: s > 0, max in 1..2^24");
      return Status::Ok();
    case K::kLognormal:
      if (!(d.b > 0) || d.c < 0 || d.c > INT32_MAX || !std::isfinite(d.a))
        return bad(name, d.b, "lognormal: sigma > 0, max in 0 (none)..2^31-1");
      return Status::Ok();
    case K::kMixture: {
      if (d.parts.empty()) return bad(name, 0, "mixture: at least one part");
      if (depth > kMaxMixtureDepth) return bad(name, depth, "mixture: nested at most 8 deep");
      for (const auto& [w, part] : d.parts) {
        if (!(w > 0)) return bad(name, w, "mixture: weights > 0");
        if (Status st = validate_distribution(part, name, depth + 1); !st.ok()) return st;
      }
      return Status::Ok();
    }
  }
  return bad(name, 0, "a known distribution");
}

double distribution_tail(const Distribution& d, uint64_t k) {
  using K = Distribution::Kind;
  const double x = double(k);
  switch (d.kind) {
    case K::kFixed: return d.a >= x ? 1 : 0;
    case K::kUniform: {
      if (x <= d.a) return 1;
      if (x > d.b) return 0;
      return (d.b - x + 1) / (d.b - d.a + 1);
    }
    case K::kGeometric: return x <= d.b ? 1 : std::pow(1 - d.a, x - d.b);
    case K::kZipf: {
      const auto max = uint64_t(d.b);
      if (k > max) return 0;
      double all = 0, tail = 0;
      for (uint64_t i = 1; i <= max; ++i) {
        const double w = std::pow(double(i), -d.a);
        all += w;
        if (i >= k) tail += w;
      }
      return tail / all;
    }
    case K::kLognormal: {
      // X = max(1, round(exp(N))) (capped at max): P(X >= k) = P(exp(N) >= k - 0.5).
      if (k <= 1) return 1;
      if (d.c > 0 && x > d.c) return 0;
      const double z = (std::log(x - 0.5) - d.a) / (d.b * std::sqrt(2.0));
      return 0.5 * std::erfc(z);
    }
    case K::kMixture: {
      double all = 0, tail = 0;
      for (const auto& [w, part] : d.parts) {
        all += w;
        tail += w * distribution_tail(part, k);
      }
      return tail / all;
    }
  }
  return 0;
}

Sampler::Sampler(const Distribution& d) : d_(d) {
  if (d.kind == Distribution::Kind::kZipf) {
    const auto max = uint64_t(d.b);
    zipf_cdf_.resize(max);
    double sum = 0;
    for (uint64_t i = 1; i <= max; ++i) zipf_cdf_[i - 1] = (sum += std::pow(double(i), -d.a));
    for (double& c : zipf_cdf_) c /= sum;
  }
  if (d.kind == Distribution::Kind::kMixture) {
    double sum = 0;
    for (const auto& [w, part] : d.parts) {
      parts_.push_back(std::make_unique<Sampler>(part));
      part_cdf_.push_back(sum += w);
    }
    for (double& c : part_cdf_) c /= sum;
  }
}

uint64_t Sampler::operator()(std::mt19937_64& rng) const {
  using K = Distribution::Kind;
  std::uniform_real_distribution<double> u01(0, 1);
  switch (d_.kind) {
    case K::kFixed: return uint64_t(d_.a);
    case K::kUniform: return std::uniform_int_distribution<uint64_t>(uint64_t(d_.a), uint64_t(d_.b))(rng);
    case K::kGeometric:
      return uint64_t(d_.b) + (d_.a >= 1 ? 0 : std::geometric_distribution<uint64_t>(d_.a)(rng));
    case K::kZipf: {
      const double r = u01(rng);
      return uint64_t(std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), r) - zipf_cdf_.begin()) + 1;
    }
    case K::kLognormal: {
      double v = std::round(std::lognormal_distribution<double>(d_.a, d_.b)(rng));
      v = std::max(v, 1.0);
      if (d_.c > 0) v = std::min(v, d_.c);
      return uint64_t(std::min(v, double(INT32_MAX)));
    }
    case K::kMixture: {
      const double r = u01(rng);
      const size_t i = size_t(std::lower_bound(part_cdf_.begin(), part_cdf_.end(), r) - part_cdf_.begin());
      return (*parts_[std::min(i, parts_.size() - 1)])(rng);
    }
  }
  return 0;
}

Status validate_population(const PopulationSpec& p) {
  if (p.pages < 1 || p.pages > kMaxPages)
    return Status::BadOption("pages", int64_t(p.pages), "an integer in 1..2^31");
  if (p.orders.empty()) return Status::BadOption("orders", 0, "at least one (order, weight)");
  for (const auto& [order, w] : p.orders) {
    if (order > 18) return Status::BadOption("orders", order, "orders in 0..18");
    if (!(w > 0)) return Status::BadOption("orders", int64_t(w), "weights > 0");
  }
  auto fraction = [](const char* name, double f) {
    return f >= 0 && f <= 1 ? Status::Ok() : Status::BadOption(name, int64_t(f * 100), "a fraction in 0..1");
  };
  if (Status st = fraction("freeFraction", p.free_fraction); !st.ok()) return st;
  if (Status st = fraction("pinnedFraction", p.pinned_fraction); !st.ok()) return st;
  if (Status st = fraction("writeFraction", p.write_fraction); !st.ok()) return st;
  if (Status st = validate_distribution(p.refs, "refs"); !st.ok()) return st;
  return validate_distribution(p.pins_per_pinned, "pinsPerPinned");
}

std::vector<PopFolio> draw_population(const PopulationSpec& p) {
  std::mt19937_64 rng(p.seed);
  std::uniform_real_distribution<double> u01(0, 1);
  // The weights are shares of base pages: each aligned block of the largest order in the mix
  // is given to one order (drawn by weight) and cut into folios of that order.
  std::vector<double> cdf;
  double sum = 0;
  uint32_t max_order = 0;
  for (const auto& [order, w] : p.orders) {
    cdf.push_back(sum += w);
    max_order = std::max(max_order, order);
  }
  const uint64_t block = uint64_t{1} << max_order;
  const Sampler refs(p.refs), pins(p.pins_per_pinned);
  std::vector<PopFolio> out;
  // At most one folio per page: reserving that much only maps address space (pages are
  // touched as they are filled), and saves the copies of every growth step.
  out.reserve(p.pages);
  for (uint64_t base = 0; base < p.pages; base += block) {
    const double r = u01(rng) * sum;
    const size_t i = size_t(std::lower_bound(cdf.begin(), cdf.end(), r) - cdf.begin());
    const uint32_t chosen = p.orders[std::min(i, p.orders.size() - 1)].first;
    const uint64_t end = std::min(p.pages, base + block);
    for (uint64_t pfn = base; pfn < end;) {
      uint32_t order = chosen;  // the array's end may cut a block: smaller folios there
      while (order > 0 && pfn + (uint64_t{1} << order) > end) --order;
      PopFolio f{pfn, uint8_t(order), 0, 0, 0};
      if (u01(rng) >= p.free_fraction) {
        f.refs = uint32_t(std::clamp<uint64_t>(refs(rng), 1, INT32_MAX));
        if (u01(rng) < p.pinned_fraction) {
          const uint64_t n = std::max<uint64_t>(1, pins(rng));
          for (uint64_t k = 0; k < n; ++k) (u01(rng) < p.write_fraction ? f.writes : f.reads)++;
        }
      }
      out.push_back(f);
      pfn += uint64_t{1} << order;
    }
  }
  return out;
}

std::vector<PopFolio> population_from_snapshot(const HostSnapshot& snap, const PopulationSpec& pins) {
  std::mt19937_64 rng(pins.seed);
  std::uniform_real_distribution<double> u01(0, 1);
  const Sampler per_pinned(pins.pins_per_pinned);
  std::vector<PopFolio> out;
  uint64_t pfn = 0;
  auto free_until = [&](uint64_t end) {
    for (; pfn < end; ++pfn) out.push_back(PopFolio{pfn, 0, 0, 0, 0});
  };
  for (const SnapshotFolio& f : snap.folios) {
    free_until(f.pfn);
    PopFolio p{f.pfn, f.order, std::max<uint32_t>(1, f.refs), 0, 0};
    if (u01(rng) < pins.pinned_fraction) {
      const uint64_t n = std::max<uint64_t>(1, per_pinned(rng));
      for (uint64_t k = 0; k < n; ++k) (u01(rng) < pins.write_fraction ? p.writes : p.reads)++;
    }
    out.push_back(p);
    pfn = f.pfn + (uint64_t{1} << f.order);
  }
  free_until(snap.pages);
  return out;
}

Status build_population_array(const std::vector<PopFolio>& folios, uint64_t pages, Scheme scheme,
                              uint32_t bias, BuiltArray* out, const RunControl* control) {
  PageArrayConfig cfg;
  cfg.pages = int64_t(pages);
  cfg.scheme = scheme;
  cfg.pin_bias = bias;
  cfg.debug = true;  // the exact truth the profiler compares against
  std::unique_ptr<PageArray> mem;
  if (Status st = PageArray::create(cfg, &mem); !st.ok()) return st;
  for (const PopFolio& f : folios) mem->init_folio_unshared(f.head, f.order, int32_t(f.refs));
  std::mt19937_64 rng(pages * 7919 + bias);  // where on the folio each pin lands
  uint64_t taken = 0, refused = 0, seen = 0;
  for (const PopFolio& f : folios) {
    if ((++seen & 0xffff) == 0 && stop_requested(control))
      return Status{Code::kEINVAL, Reason::kCancelled, "the profile run"};
    const uint64_t n = uint64_t(1) << f.order;
    for (uint32_t k = 0; k < f.reads + f.writes; ++k) {
      const uint64_t pfn = f.head + (n == 1 ? 0 : rng() % n);
      PinFlags pf;
      pf.write = k < f.writes;
      uint64_t pinned = 0;
      const Status st = mem->pin_pages(PageSet::range(pfn, 1), pf, &pinned);
      if (st.ok()) ++taken;
      else if (st.code == Code::kEOVERFLOW) ++refused;
      else return st;
    }
  }
  out->mem = std::move(mem);
  out->pins_taken = taken;
  out->overflow_refusals = refused;
  return Status::Ok();
}

}  // namespace pinlab
