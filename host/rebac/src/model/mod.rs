//! Authorization models with OpenFGA schema 1.1 semantics.
//!
//! A model names the types of objects, the relations each type has, and how
//! each relation is computed (its rewrite): from tuples written directly
//! (restricted to the listed user types), from another relation on the same
//! object, from a relation on related objects (tuple-to-userset), or a union,
//! intersection or difference of those. [`dsl`] reads and writes the OpenFGA
//! DSL.

pub mod dsl;
pub mod json;

use std::collections::BTreeMap;

/// A whole authorization model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub schema: String,
    /// In declaration order.
    pub types: Vec<TypeDef>,
    pub conditions: BTreeMap<String, Condition>,
}

/// One type and its relations.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeDef {
    pub name: String,
    /// In declaration order.
    pub relations: Vec<RelationDef>,
}

/// One relation: how it is computed and which users may be written to it directly.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationDef {
    pub name: String,
    pub rewrite: Rewrite,
    /// The `[...]` of the definition: empty when the relation has no direct part.
    pub directly_related: Vec<RelatedType>,
}

/// How a relation's members are found.
#[derive(Debug, Clone, PartialEq)]
pub enum Rewrite {
    /// `[user, group#member, ...]`: tuples written for this object and relation.
    This,
    /// `editor`: whoever holds another relation on the same object.
    Computed(String),
    /// `viewer from parent`: whoever holds `computed` on the objects related by `tupleset`.
    TupleToUserset {
        tupleset: String,
        computed: String,
    },
    Union(Vec<Rewrite>),
    Intersection(Vec<Rewrite>),
    /// `base but not subtract`.
    Difference(Box<Rewrite>, Box<Rewrite>),
}

/// One entry of a type restriction: `user`, `user:*`, `group#member`, `user with cond`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedType {
    pub type_name: String,
    pub relation: Option<String>,
    pub wildcard: bool,
    pub condition: Option<String>,
}

/// A named CEL condition with typed parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub name: String,
    pub parameters: BTreeMap<String, String>,
    pub expression: String,
}

impl Model {
    /// A type by name.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.iter().find(|t| t.name == name)
    }

    /// A relation of a type.
    pub fn relation(&self, type_name: &str, relation: &str) -> Option<&RelationDef> {
        self.type_def(type_name).and_then(|t| t.relation(relation))
    }
}

impl TypeDef {
    /// A relation by name.
    pub fn relation(&self, name: &str) -> Option<&RelationDef> {
        self.relations.iter().find(|r| r.name == name)
    }
}

impl RelatedType {
    /// Does this entry admit a tuple user of `user_type` (with `user_relation` for
    /// usersets, `wildcard` for `type:*`) written with `condition`?
    pub fn admits(
        &self,
        user_type: &str,
        user_relation: Option<&str>,
        wildcard: bool,
        condition: Option<&str>,
    ) -> bool {
        self.type_name == user_type
            && self.relation.as_deref() == user_relation
            && self.wildcard == wildcard
            && self.condition.as_deref() == condition
    }
}
