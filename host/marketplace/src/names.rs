//! Syntax of the names a manifest uses. Kept in step with `airlock_rebac::Tuple` (types,
//! relations, ids) and `airlock_approvals::policy::is_role_name`, without depending on them.

/// An agent name: lower-case letters, digits and `-`, starting with a letter, not ending in
/// `-`, at most 63 characters (it becomes part of ids, client ids and connection names).
pub fn is_agent_name(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A component, tool, connection or publisher name: lower-case letters, digits, `-` and `_`,
/// starting with a letter, at most 64 characters. No `.`, `/` or `:`, which separate ids.
pub fn is_simple_name(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A type, relation or role name: letters, digits, `_` or `-`, starting with a letter.
pub fn is_relation(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An object id: non-empty, at most 256 bytes, no `#`, `:`, `*` or whitespace.
pub fn is_object_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(|c| c == '#' || c == ':' || c == '*' || c.is_whitespace())
}

/// Lower-case hex sha256.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}
