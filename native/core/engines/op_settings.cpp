// mm-new's settings word: see op_settings.h.
#include "engines/op_settings.h"

#include <algorithm>
#include <charconv>
#include <iterator>

namespace pinlab::ops {

namespace {

// How one rule reads from and writes to MmRules, as a field value (0: mainline's).
struct RuleAccess {
  uint32_t (*get)(const MmRules&);
  void (*set)(MmRules*, uint32_t);
};

constexpr RuleField kRuleFields[] = {
    {"zero-page-unshare", {"1", "0", nullptr, nullptr}},
    {"longterm-file-writes", {"refuse", "allow", nullptr, nullptr}},
    {"migrate-pte-mapped-thp", {"1", "0", nullptr, nullptr}},
    {"anon-exclusive", {"1", "0", nullptr, nullptr}},
    {"huge-zero-page", {"1", "0", nullptr, nullptr}},
};
constexpr RuleAccess kRuleAccess[] = {
    {[](const MmRules& r) { return r.zero_page_unshare ? 0u : 1u; },
     [](MmRules* r, uint32_t v) { r->zero_page_unshare = v == 0; }},
    {[](const MmRules& r) { return uint32_t(r.longterm_file_writes); },
     [](MmRules* r, uint32_t v) { r->longterm_file_writes = LongtermFileWrites(v); }},
    {[](const MmRules& r) { return r.migrate_pte_mapped_thp ? 0u : 1u; },
     [](MmRules* r, uint32_t v) { r->migrate_pte_mapped_thp = v == 0; }},
    {[](const MmRules& r) { return r.anon_exclusive ? 0u : 1u; },
     [](MmRules* r, uint32_t v) { r->anon_exclusive = v == 0; }},
    {[](const MmRules& r) { return r.huge_zero_page ? 0u : 1u; },
     [](MmRules* r, uint32_t v) { r->huge_zero_page = v == 0; }},
};
static_assert(std::size(kRuleFields) == std::size(kRuleAccess), "one access per rule field");
static_assert(std::size(kRuleFields) * kSettingsRuleBits <= 32 - kSettingsRuleShift, "rule fields fit the word");
static_assert(uint32_t(LongtermFileWrites::kRefuse) == 0, "mainline's value is field value 0");

constexpr uint32_t field_shift(size_t i) { return kSettingsRuleShift + uint32_t(i) * kSettingsRuleBits; }
constexpr uint32_t kFieldMask = (1u << kSettingsRuleBits) - 1;
constexpr uint32_t kUsedRuleBits =
    uint32_t((uint64_t{1} << (std::size(kRuleFields) * kSettingsRuleBits)) - 1) << kSettingsRuleShift;

bool has_value(const RuleField& f, uint32_t v) { return v < 4 && f.values[v] != nullptr; }

}  // namespace

std::span<const RuleField> rule_fields() { return {kRuleFields, std::size(kRuleFields)}; }

uint32_t encode_space_settings(const MmRules& rules, uint32_t thp_orders) {
  uint32_t word = (thp_orders ^ kPmdThpOrders) & kSettingsThpMask;
  for (size_t i = 0; i < std::size(kRuleAccess); ++i) word |= (kRuleAccess[i].get(rules) & kFieldMask) << field_shift(i);
  return word;
}

const char* decode_space_settings(uint32_t word, MmRules* rules, uint32_t* thp_orders) {
  const uint32_t thp = (word & kSettingsThpMask) ^ kPmdThpOrders;
  if (thp & ~kAllThpOrders) return "mm-new settings: THP orders must be 2..9 (bits 0-1 set)";
  if (word & ~(kSettingsThpMask | kUsedRuleBits)) return "mm-new settings: unknown bits (a rule this build does not know)";
  MmRules r = MmRules::mainline();
  for (size_t i = 0; i < std::size(kRuleFields); ++i) {
    const uint32_t v = (word >> field_shift(i)) & kFieldMask;
    if (!has_value(kRuleFields[i], v)) return "mm-new settings: a rule has a value it does not take";
    kRuleAccess[i].set(&r, v);
  }
  *rules = r;
  *thp_orders = thp;
  return nullptr;
}

void format_space_settings(uint32_t word, std::string* out) {
  MmRules r;
  uint32_t thp = 0;
  if (decode_space_settings(word, &r, &thp) != nullptr) {
    // Not a valid word (the framing refuses it): as a number, for a diagnostic dump.
    out->append(" settings=" + std::to_string(word));
    return;
  }
  if (thp != kPmdThpOrders) {
    out->append(" thp-orders=");
    bool first = true;
    for (uint32_t k = 2; k <= 9; ++k) {
      if (!(thp & (1u << k))) continue;
      if (!first) out->push_back(',');
      out->append(std::to_string(k));
      first = false;
    }
    if (first) out->append("none");
  }
  for (size_t i = 0; i < std::size(kRuleFields); ++i) {
    const uint32_t v = (word >> field_shift(i)) & kFieldMask;
    if (v == 0) continue;
    out->push_back(' ');
    out->append(kRuleFields[i].name);
    out->push_back('=');
    out->append(kRuleFields[i].values[v]);
  }
}

bool parse_space_setting(std::string_view token, uint32_t* word, const char** what) {
  const size_t eq = token.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    *what = "mm-new takes settings as key=value";
    return false;
  }
  const std::string_view key = token.substr(0, eq), val = token.substr(eq + 1);
  if (key == "settings") {  // the raw word (what a diagnostic dump writes)
    uint32_t v = 0;
    auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), v);
    if (ec != std::errc() || p != val.data() + val.size()) {
      *what = "settings=N needs a number below 2^32";
      return false;
    }
    *word = v;
    return true;
  }
  if (key == "thp-orders") {
    uint32_t thp = 0;
    if (val != "none") {
      size_t i = 0;
      while (i <= val.size()) {
        const size_t comma = std::min(val.find(',', i), val.size());
        const std::string_view k = val.substr(i, comma - i);
        if (k.size() != 1 || k[0] < '2' || k[0] > '9' || (thp & (1u << (k[0] - '0')))) {
          *what = "thp-orders is a list of distinct orders 2..9 (4,9) or none";
          return false;
        }
        thp |= 1u << (k[0] - '0');
        i = comma + 1;
      }
    }
    *word = (*word & ~kSettingsThpMask) | ((thp ^ kPmdThpOrders) & kSettingsThpMask);
    return true;
  }
  for (size_t i = 0; i < std::size(kRuleFields); ++i) {
    if (key != kRuleFields[i].name) continue;
    for (uint32_t v = 0; v < 4; ++v) {
      if (!has_value(kRuleFields[i], v) || val != kRuleFields[i].values[v]) continue;
      *word = (*word & ~(kFieldMask << field_shift(i))) | v << field_shift(i);
      return true;
    }
    *what = "a rule's value is not one it takes";
    return false;
  }
  *what = "unknown mm-new setting";
  return false;
}

}  // namespace pinlab::ops
