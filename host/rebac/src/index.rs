//! The in-memory mirror of one tenant's tuples, and check resolution over it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::engine::{TupleCondition, TupleSource};
use crate::{RebacError, RESOLUTION_DEPTH_LIMIT};

/// A name shared by the forward maps and the reverse set, so the reverse index costs no strings.
type Name = Arc<str>;

/// Every tuple twice: by object (for checks) and by subject (for list-objects, which walks
/// from the user to the objects). Both share each tuple's strings.
#[derive(Default)]
pub(crate) struct TenantIndex {
    /// object -> relation -> subject -> condition. Nested maps so lookups borrow `&str` keys.
    objects: HashMap<Name, HashMap<Name, HashMap<Name, Option<TupleCondition>>>>,
    /// (subject, object, relation), sorted so that one subject's tuples are one range.
    /// A sorted set rather than a map of sets: most subjects have few tuples, and a set per
    /// subject would cost more than the tuples themselves.
    by_subject: BTreeSet<(Name, Name, Name)>,
}

/// The key already stored in `map` for `name`, or a new one.
fn shared_key<V>(map: &HashMap<Name, V>, name: &str) -> Name {
    map.get_key_value(name).map(|(k, _)| k.clone()).unwrap_or_else(|| Name::from(name))
}

impl TenantIndex {
    /// Adds a tuple, or replaces the condition of one already stored.
    pub(crate) fn insert(&mut self, object: &str, relation: &str, subject: &str, condition: Option<TupleCondition>) {
        let object = shared_key(&self.objects, object);
        let relations = self.objects.entry(object.clone()).or_default();
        let relation = shared_key(relations, relation);
        let subjects = relations.entry(relation.clone()).or_default();
        let subject = shared_key(subjects, subject);
        subjects.insert(subject.clone(), condition);
        self.by_subject.insert((subject, object, relation));
    }

    /// Whether the tuple is stored (with any condition).
    pub(crate) fn contains(&self, object: &str, relation: &str, subject: &str) -> bool {
        self.objects.get(object).and_then(|r| r.get(relation)).map(|s| s.contains_key(subject)).unwrap_or(false)
    }

    /// Removes a tuple; returns its condition when it was there.
    pub(crate) fn remove(&mut self, object: &str, relation: &str, subject: &str) -> Option<Option<TupleCondition>> {
        let object_key = self.objects.get_key_value(object)?.0.clone();
        let relations = self.objects.get_mut(object)?;
        let relation_key = relations.get_key_value(relation)?.0.clone();
        let subjects = relations.get_mut(relation)?;
        let (subject_key, condition) = subjects.remove_entry(subject)?;
        if subjects.is_empty() {
            relations.remove(relation);
        }
        if relations.is_empty() {
            self.objects.remove(object);
        }
        self.by_subject.remove(&(subject_key, object_key, relation_key));
        Some(condition)
    }

    pub(crate) fn objects_of_type<'a>(&'a self, object_type: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.objects
            .keys()
            .map(|o| &**o)
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
            if !subject.contains('#') && subjects.contains_key(format!("{subject_type}:*").as_str()) {
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
            Some(users) => users.iter().map(|(u, c)| (&**u, c.as_ref())).collect(),
            None => Vec::new(),
        }
    }

    fn read_by_user<'s>(&'s self, user: &str) -> Vec<(&'s str, &'s str, Option<&'s TupleCondition>)> {
        let empty = Name::from("");
        let from = (Name::from(user), empty.clone(), empty);
        self.by_subject
            .range(from..)
            .take_while(|(s, _, _)| &**s == user)
            .map(|(s, o, r)| {
                let condition = self.objects.get(o).and_then(|rs| rs.get(r)).and_then(|ss| ss.get(s));
                (&**o, &**r, condition.and_then(Option::as_ref))
            })
            .collect()
    }

    fn has_object(&self, object: &str) -> bool {
        self.objects.contains_key(object)
    }

    fn objects_of_type<'s>(&'s self, object_type: &str) -> Vec<&'s str> {
        self.objects
            .keys()
            .map(|o| &**o)
            .filter(|o| o.split_once(':').map(|(ty, _)| ty == object_type).unwrap_or(false))
            .collect()
    }

    fn names<'s>(&'s self) -> Vec<&'s str> {
        let mut out: Vec<&str> = self.objects.keys().map(|o| &**o).collect();
        out.extend(self.objects.values().flat_map(|r| r.values()).flat_map(|users| users.keys().map(|u| &**u)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reverse set must follow every insert, condition change and delete of the forward maps.
    #[test]
    fn read_by_user_follows_writes_and_deletes() {
        let mut index = TenantIndex::default();
        let cond = |n: &str| Some(TupleCondition { name: n.into(), context: serde_json::Map::new() });
        index.insert("doc:1", "viewer", "user:a", None);
        index.insert("doc:2", "viewer", "user:a", cond("c"));
        index.insert("doc:2", "editor", "user:a", None);
        index.insert("doc:1", "viewer", "user:ab", None);
        index.insert("doc:1", "viewer", "group:g#member", None);
        index.insert("doc:2", "viewer", "user:a", cond("d")); // replaces the condition
        let mut got = index.read_by_user("user:a");
        got.sort_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)));
        let names: Vec<_> = got.iter().map(|(o, r, c)| (*o, *r, c.map(|c| c.name.as_str()))).collect();
        assert_eq!(names, vec![("doc:1", "viewer", None), ("doc:2", "editor", None), ("doc:2", "viewer", Some("d"))]);
        assert_eq!(index.read_by_user("group:g#member").len(), 1);

        assert_eq!(index.remove("doc:2", "viewer", "user:a"), Some(cond("d")));
        assert_eq!(index.remove("doc:2", "viewer", "user:a"), None, "a second delete finds nothing");
        assert_eq!(index.remove("doc:2", "editor", "user:a"), Some(None));
        assert_eq!(index.read_by_user("user:a").len(), 1);
        assert!(!index.has_object("doc:2"), "an object without tuples is gone");
        assert!(index.has_object("doc:1"));
        index.remove("doc:1", "viewer", "user:a");
        index.remove("doc:1", "viewer", "user:ab");
        index.remove("doc:1", "viewer", "group:g#member");
        assert!(index.read_by_user("user:a").is_empty() && index.by_subject.is_empty() && index.objects.is_empty());
    }
}
