-- Traits sent on personalize, remembered in the visitor's traits hash (personalization/store/traits.py);
-- vary_traits is defined by traits_merge.lua, which the profile store prepends to this script.
--
-- KEYS[1]: the traits hash (vary:vh:{<visitor tag>}:tr)
-- ARGV[1] ttl (s), [2] most traits, [3] most bytes, [4..] pairs of trait name, JSON value
-- Returns 1 when merged, 0 when the merge would pass a bound (nothing written).
return vary_traits(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV, 4)
