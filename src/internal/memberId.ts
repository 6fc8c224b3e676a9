/**
 * A member id's canonical form. Member ids are uuids in the PostgreSQL store, whose `uuid` type also
 * reads the same uuid in upper case, in braces, without hyphens or hyphenated every four digits, and
 * always writes it back lower case, hyphenated 8-4-4-4-12. Two spellings of one uuid are one member
 * (one row): a review of migration 0012 gave two members of one process the same uuid with and
 * without braces, and the process's check of live ids let both in. Any other string is left as it is
 * (the in-memory store takes any id).
 */
export const canonicalMemberId = (memberId: string): string => {
  if (!/^\{?[0-9A-Fa-f-]+\}?$/.test(memberId)) return memberId
  const hex = memberId.replace(/[{}-]/g, "").toLowerCase()
  if (hex.length !== 32) return memberId
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
