// An address space's settings as an op stream records them (format version 2): mm-new's b
// word holds the kernel rules (MmRules) and the THP orders (thpOrders) that differ from a
// default `new AddressSpace(mem, { pages })`, so 0 is the default and every version-1 stream
// (where b was 0) means what it meant. Layout of the word:
//
//   bits 0-9    THP orders that differ from the default (order 9 alone): thp_orders is
//               (word & 0x3ff) ^ 0x200; bits 0 and 1 must be 0 (orders 2..9 only)
//   bits 10-15  0
//   bits 16-31  the rules, 2 bits each, in kRuleFields order; field value 0 is mainline's
//               value, values the rule does not have are refused; unused fields 0
//
// Adding a rule: a field to MmRules (mm/address_space.h), a row at the end of kRuleFields
// (op_settings.cpp: its text name, its values' names, and how to read and set it). Its field
// takes the next two bits; streams written before it have 0 there, mainline's value, which is
// what they ran under. No version bump: an older build refuses the new bits.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "mm/address_space.h"

namespace pinlab::ops {

inline constexpr uint32_t kSettingsThpMask = 0x3ffu;
inline constexpr uint32_t kSettingsRuleShift = 16;
inline constexpr uint32_t kSettingsRuleBits = 2;

// One rule's field: its name in the text form, and the names of its values (index = the
// field value; null past the last).
struct RuleField {
  const char* name;
  const char* values[4];
};
std::span<const RuleField> rule_fields();

// The word for these settings (valid ones: check_mm_rules and check_thp_orders accept them).
uint32_t encode_space_settings(const MmRules& rules, uint32_t thp_orders);
// The settings a word names; null if it names valid ones, else what is wrong.
const char* decode_space_settings(uint32_t word, MmRules* rules, uint32_t* thp_orders);

// The text form: " thp-orders=4,9 longterm-file-writes=allow ..." for what differs from the
// default (nothing for 0), appended to *out; and one such token parsed into *word (false: not a
// settings token, or a bad one, with *what set).
void format_space_settings(uint32_t word, std::string* out);
bool parse_space_setting(std::string_view token, uint32_t* word, const char** what);

}  // namespace pinlab::ops
