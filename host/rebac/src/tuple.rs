//! Relationship tuples and the syntax rules of their parts.

use serde::{Deserialize, Serialize};

/// `subject` holds `relation` on `object`.
///
/// `object` is `type:id`; `subject` is `type:id`, a wildcard `type:*`, or a
/// userset `type:id#relation` ("everyone who holds `relation` on `type:id`").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tuple {
    pub object: String,
    pub relation: String,
    pub subject: String,
}

/// What is wrong with a tuple or one of its parts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TupleError {
    #[error("invalid object `{0}`: expected `type:id`")]
    Object(String),
    #[error("invalid relation `{0}`: expected letters, digits, `_` or `-`, starting with a letter")]
    Relation(String),
    #[error("invalid subject `{0}`: expected `type:id`, `type:*` or `type:id#relation`")]
    Subject(String),
    #[error("invalid type `{0}`: expected letters, digits, `_` or `-`, starting with a letter")]
    Type(String),
}

impl Tuple {
    /// Builds a tuple from its three parts (not yet validated).
    pub fn new(object: impl Into<String>, relation: impl Into<String>, subject: impl Into<String>) -> Tuple {
        Tuple { object: object.into(), relation: relation.into(), subject: subject.into() }
    }

    /// Checks all three parts.
    pub fn validate(&self) -> Result<(), TupleError> {
        Self::validate_object(&self.object)?;
        Self::validate_relation(&self.relation)?;
        Self::validate_subject(&self.subject)
    }

    /// `type:id` with a valid type and a non-empty id free of `#`, `:`, `*` and whitespace.
    pub fn validate_object(object: &str) -> Result<(), TupleError> {
        match object.split_once(':') {
            Some((ty, id)) if is_name(ty) && is_id(id) && id != "*" => Ok(()),
            _ => Err(TupleError::Object(object.to_string())),
        }
    }

    /// A relation name.
    pub fn validate_relation(relation: &str) -> Result<(), TupleError> {
        if is_name(relation) {
            Ok(())
        } else {
            Err(TupleError::Relation(relation.to_string()))
        }
    }

    /// A type name.
    pub fn validate_type(ty: &str) -> Result<(), TupleError> {
        if is_name(ty) {
            Ok(())
        } else {
            Err(TupleError::Type(ty.to_string()))
        }
    }

    /// `type:id`, `type:*` or `type:id#relation`.
    pub fn validate_subject(subject: &str) -> Result<(), TupleError> {
        let err = || TupleError::Subject(subject.to_string());
        let (object, relation) = match subject.split_once('#') {
            Some((o, r)) => (o, Some(r)),
            None => (subject, None),
        };
        let (ty, id) = object.split_once(':').ok_or_else(err)?;
        if !is_name(ty) {
            return Err(err());
        }
        match relation {
            None if id == "*" || is_id(id) => Ok(()),
            Some(r) if is_id(id) && id != "*" && is_name(r) => Ok(()),
            _ => Err(err()),
        }
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s.len() <= 64
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(|c| c == '#' || c == ':' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_subject_forms() {
        assert!(Tuple::validate_subject("agent:crm-bot").is_ok());
        assert!(Tuple::validate_subject("agent:*").is_ok());
        assert!(Tuple::validate_subject("group:eng#member").is_ok());
    }

    #[test]
    fn rejects_malformed_parts_naming_them() {
        assert_eq!(Tuple::validate_object("tool"), Err(TupleError::Object("tool".into())));
        assert_eq!(Tuple::validate_object("tool:*"), Err(TupleError::Object("tool:*".into())));
        assert_eq!(Tuple::validate_object("tool:a b"), Err(TupleError::Object("tool:a b".into())));
        assert!(Tuple::validate_relation("can use").is_err());
        assert!(Tuple::validate_subject("group:*#member").is_err());
        assert!(Tuple::validate_subject("group:eng#").is_err());
        assert!(Tuple::validate_subject(":x").is_err());
    }
}
