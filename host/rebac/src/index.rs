//! The in-memory mirror of one tenant's tuples, and check resolution over it.

use std::collections::HashMap;

use crate::engine::{TupleCondition, TupleSource};
use crate::{RebacError, RESOLUTION_DEPTH_LIMIT};

/// object -> relation -> subject -> condition. Nested maps so lookups borrow `&str` keys.
#[derive(Default)]
pub(crate) struct TenantIndex {
    objects: HashMap<String, HashMap<String, HashMap<String, Option<TupleCondition>>>>,
}

impl TenantIndex {
    pub(crate) fn insert(&mut self, object: &str, relation: &str, subject: &str, condition: Option<TupleCondition>) {
        self.objects
            .entry(object.to_string())
            .or_default()
            .entry(relation.to_string())
            .or_default()
            .insert(subject.to_string(), condition);
    }

    /// Whether the tuple is stored (with any condition).
    pub(crate) fn contains(&self, object: &str, relation: &str, subject: &str) -> bool {
        self.objects.get(object).and_then(|r| r.get(relation)).map(|s| s.contains_key(subject)).unwrap_or(false)
    }

    /// Removes a tuple; returns its condition when it was there.
    pub(crate) fn remove(&mut self, object: &str, relation: &str, subject: &str) -> Option<Option<TupleCondition>> {
        let mut removed = None;
        if let Some(relations) = self.objects.get_mut(object) {
            if let Some(subjects) = relations.get_mut(relation) {
                removed = subjects.remove(subject);
                if subjects.is_empty() {
                    relations.remove(relation);
                }
            }
            if relations.is_empty() {
                self.objects.remove(object);
            }
        }
        removed
    }

    pub(crate) fn objects_of_type<'a>(&'a self, object_type: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.objects
            .keys()
            .map(String::as_str)
            .filter(move |o| o.split_once(':').map(|(ty, _)| ty == object_type).unwrap_or(false))
    }

    /// Direct tuple, then the subject type's wildcard, then each userset, recursively.
    pub(crate) fn check(&self, subject: &str, relation: &str, object: &str, depth: u32) -> Result<bool, RebacError> {
        if depth >= RESOLUTION_DEPTH_LIMIT {
            return Err(RebacError::ResolutionTooComplex);
        }
        let Some(subjects) = self.objects.get(object).and_then(|r| r.get(relation)) else {
            return Ok(false);
        };
        if subjects.contains_key(subject) {
            return Ok(true);
        }
        if let Some((subject_type, _)) = subject.split_once(':') {
            // A wildcard only stands for concrete subjects, never for usersets.
            if !subject.contains('#') && subjects.contains_key(&format!("{subject_type}:*")) {
                return Ok(true);
            }
        }
        for userset in subjects.keys().filter(|s| s.contains('#')) {
            let Some((set_object, set_relation)) = userset.split_once('#') else { continue };
            if self.check(subject, set_relation, set_object, depth + 1)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The model-aware engine reads the same mirror.
impl TupleSource for TenantIndex {
    fn read<'s>(&'s self, object: &str, relation: &str) -> Vec<(&'s str, Option<&'s TupleCondition>)> {
        match self.objects.get(object).and_then(|r| r.get(relation)) {
            Some(users) => users.iter().map(|(u, c)| (u.as_str(), c.as_ref())).collect(),
            None => Vec::new(),
        }
    }

    fn objects_of_type<'s>(&'s self, object_type: &str) -> Vec<&'s str> {
        self.objects
            .keys()
            .map(String::as_str)
            .filter(|o| o.split_once(':').map(|(ty, _)| ty == object_type).unwrap_or(false))
            .collect()
    }

    fn names<'s>(&'s self) -> Vec<&'s str> {
        let mut out: Vec<&str> = self.objects.keys().map(String::as_str).collect();
        out.extend(self.objects.values().flat_map(|r| r.values()).flat_map(|users| users.keys().map(String::as_str)));
        out
    }
}
