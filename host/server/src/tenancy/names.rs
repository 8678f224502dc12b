//! Tenant names: checked at every entry point, authenticated or not, before anything is
//! written or audited under them.

/// The longest tenant name, in bytes.
pub const MAX_TENANT_NAME: usize = 64;

/// The audit chain of host-wide work (tenants, host components, publishers, keys): not a
/// tenant, and no tenant can be named so (a name starts with a letter or a digit).
pub const HOST_CHAIN: &str = "_host";

/// A tenant name is 1 to 64 ASCII letters, digits, `-` and `_`, starting with a letter or a
/// digit (an OpenFGA store id, a ULID, is one too). The error says what is wrong without
/// echoing a long input back.
pub fn validate_tenant_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the tenant name is empty".into());
    }
    if name.len() > MAX_TENANT_NAME {
        return Err(format!("a tenant name is at most {MAX_TENANT_NAME} bytes; this one has {}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!("tenant name `{name}` has `{}`: use letters, digits, `-` and `_`", bad.escape_default()));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("tenant name `{name}` must start with a letter or a digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_store_ids() {
        for ok in ["default", "acme-corp", "t_1", "01JD8ZKQ3Y4W1V2S9T7R6P5N4M"] {
            assert!(validate_tenant_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_empty_long_and_odd_names_without_echoing_long_input() {
        assert!(validate_tenant_name("").is_err());
        let long = "a".repeat(10_000);
        let e = validate_tenant_name(&long).unwrap_err();
        assert!(e.len() < 100, "{e}");
        assert!(validate_tenant_name(&"a".repeat(64)).is_ok());
        assert!(validate_tenant_name(&"a".repeat(65)).is_err());
        for bad in ["_host", "-a", "a b", "a/b", "é", "a\0", "../x", "a:b"] {
            assert!(validate_tenant_name(bad).is_err(), "{bad}");
        }
    }
}
