//! Check and list-objects over an authorization model, OpenFGA semantics.
//!
//! The engine reads tuples through [`TupleSource`] (the in-memory mirror of the
//! store, and the request's contextual tuples on top), ignores stored tuples
//! that the model's type restrictions do not admit, resolves rewrites
//! recursively, treats a cycle as "not this way", and gives up with
//! `resolution_too_complex` past [`RESOLUTION_DEPTH_LIMIT`] nested steps.
//! Errors are OpenFGA's codes; callers treat every error as a denial.

mod reverse;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::model::{Model, RelationDef, Rewrite};
use crate::{Tuple, RESOLUTION_DEPTH_LIMIT};

/// The condition written on a tuple, with the tuple's own context.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TupleCondition {
    pub name: String,
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// Where the engine reads tuples from.
pub trait TupleSource {
    /// The users written for `object#relation`, each with its condition if any.
    fn read<'s>(&'s self, object: &str, relation: &str) -> Vec<(&'s str, Option<&'s TupleCondition>)>;
    /// The tuples whose user is exactly `user` (no wildcard or userset matching), each as
    /// (object, relation, condition): list-objects walks from the user to its objects.
    fn read_by_user<'s>(&'s self, user: &str) -> Vec<(&'s str, &'s str, Option<&'s TupleCondition>)>;
    /// Whether some tuple has `object` as its object (list-objects lists no other).
    fn has_object(&self, object: &str) -> bool;
    /// Every object of `object_type` that appears in some tuple.
    fn objects_of_type<'s>(&'s self, object_type: &str) -> Vec<&'s str>;
    /// Every object and every user of every tuple (for list-users candidates).
    fn names<'s>(&'s self) -> Vec<&'s str>;
}

/// Tuples held in memory: the request's contextual tuples, or a test's store.
#[derive(Debug, Default, Clone)]
pub struct MemoryTuples {
    by_key: HashMap<(String, String), Vec<(String, Option<TupleCondition>)>>,
    /// user -> the (object, relation) keys of `by_key` that name it, for [`TupleSource::read_by_user`].
    by_user: HashMap<String, Vec<(String, String)>>,
}

impl MemoryTuples {
    /// Adds a tuple (a duplicate of an existing one is ignored).
    pub fn insert(&mut self, t: &Tuple, condition: Option<TupleCondition>) {
        let users = self.by_key.entry((t.object.clone(), t.relation.clone())).or_default();
        if users.iter().any(|(u, c)| u == &t.subject && c == &condition) {
            return;
        }
        let first_for_user = !users.iter().any(|(u, _)| u == &t.subject);
        users.push((t.subject.clone(), condition));
        if first_for_user {
            self.by_user.entry(t.subject.clone()).or_default().push((t.object.clone(), t.relation.clone()));
        }
    }
}

impl TupleSource for MemoryTuples {
    fn read<'s>(&'s self, object: &str, relation: &str) -> Vec<(&'s str, Option<&'s TupleCondition>)> {
        match self.by_key.get(&(object.to_string(), relation.to_string())) {
            Some(users) => users.iter().map(|(u, c)| (u.as_str(), c.as_ref())).collect(),
            None => Vec::new(),
        }
    }

    fn read_by_user<'s>(&'s self, user: &str) -> Vec<(&'s str, &'s str, Option<&'s TupleCondition>)> {
        let mut out = Vec::new();
        for (object, relation) in self.by_user.get(user).into_iter().flatten() {
            for (u, c) in self.by_key.get(&(object.clone(), relation.clone())).into_iter().flatten() {
                if u == user {
                    out.push((object.as_str(), relation.as_str(), c.as_ref()));
                }
            }
        }
        out
    }

    fn has_object(&self, object: &str) -> bool {
        self.by_key.keys().any(|(o, _)| o == object)
    }

    fn objects_of_type<'s>(&'s self, object_type: &str) -> Vec<&'s str> {
        self.by_key
            .keys()
            .map(|(o, _)| o.as_str())
            .filter(|o| o.split_once(':').map(|(t, _)| t == object_type).unwrap_or(false))
            .collect()
    }

    fn names<'s>(&'s self) -> Vec<&'s str> {
        let mut out: Vec<&str> = self.by_key.keys().map(|(o, _)| o.as_str()).collect();
        out.extend(self.by_key.values().flat_map(|users| users.iter().map(|(u, _)| u.as_str())));
        out
    }
}

/// OpenFGA's errors, with their codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("validation error: {0}")]
    Validation(String),
    #[error("resolution too complex: more than {RESOLUTION_DEPTH_LIMIT} nested steps")]
    ResolutionTooComplex,
    #[error("type `{0}` not found")]
    TypeNotFound(String),
    #[error("relation `{0}` not found")]
    RelationNotFound(String),
    #[error("invalid tuple: {0}")]
    InvalidTuple(String),
}

impl EngineError {
    /// The OpenFGA error code.
    pub fn code(&self) -> u32 {
        match self {
            EngineError::Validation(_) => 2000,
            EngineError::ResolutionTooComplex => 2002,
            EngineError::TypeNotFound(_) => 2021,
            EngineError::RelationNotFound(_) => 2022,
            EngineError::InvalidTuple(_) => 2027,
        }
    }
}

/// The answer along one path: a cycle is neither yes nor no. It loses to
/// "yes" in a union and to "no" in an intersection, and otherwise spreads, so
/// that `[user] but not restricted`, where `restricted` loops back, denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Cycle,
}

/// Combines the answers of alternatives: yes wins; then an error; then a cycle.
struct AnyOf {
    cycle: bool,
    error: Option<EngineError>,
}

impl AnyOf {
    fn new() -> AnyOf {
        AnyOf { cycle: false, error: None }
    }

    /// Records one answer; true when it settles the union.
    fn add(&mut self, r: Result<Tri, EngineError>) -> bool {
        match r {
            Ok(Tri::Yes) => return true,
            Ok(Tri::No) => {}
            Ok(Tri::Cycle) => self.cycle = true,
            Err(e) => self.error = Some(e),
        }
        false
    }

    fn finish(self) -> Result<Tri, EngineError> {
        match (self.error, self.cycle) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(Tri::Cycle),
            (None, false) => Ok(Tri::No),
        }
    }
}

/// A parsed user: `type:id`, `type:*` or `type:id#relation`.
struct User<'a> {
    type_name: &'a str,
    relation: Option<&'a str>,
    wildcard: bool,
}

fn parse_user(user: &str) -> Option<User<'_>> {
    let (object, relation) = match user.split_once('#') {
        Some((o, r)) => (o, Some(r)),
        None => (user, None),
    };
    let (type_name, id) = object.split_once(':')?;
    if type_name.is_empty() || id.is_empty() || id.contains(':') || relation == Some("") {
        return None;
    }
    if id == "*" && relation.is_some() {
        return None;
    }
    Some(User { type_name, relation, wildcard: id == "*" })
}

fn object_type(object: &str) -> Option<&str> {
    match object.split_once(':') {
        Some((t, id)) if !t.is_empty() && !id.is_empty() && !id.contains(':') && !id.contains('#') => Some(t),
        _ => None,
    }
}

/// Checks a tuple against the model's types, relations and type restrictions.
pub fn validate_tuple(model: &Model, t: &Tuple, condition: Option<&str>) -> Result<(), EngineError> {
    let bad = |why: String| EngineError::InvalidTuple(format!("`{}#{}@{}`: {why}", t.object, t.relation, t.subject));
    let ty = object_type(&t.object).ok_or_else(|| bad("the object is not `type:id`".into()))?;
    let rel =
        model.relation(ty, &t.relation).ok_or_else(|| bad(format!("type `{ty}` has no relation `{}`", t.relation)))?;
    let user = parse_user(&t.subject)
        .ok_or_else(|| bad("the user is not `type:id`, `type:*` or `type:id#relation`".into()))?;
    if !rel.directly_related.iter().any(|d| d.admits(user.type_name, user.relation, user.wildcard, condition)) {
        return Err(bad(format!("the type restriction of `{ty}#{}` does not admit this user", t.relation)));
    }
    Ok(())
}

/// One check or list request against a model and a tuple source.
pub struct Engine<'a> {
    model: &'a Model,
    store: &'a dyn TupleSource,
    contextual: MemoryTuples,
    context: &'a serde_json::Map<String, serde_json::Value>,
    /// Whether a `type:*` tuple grants every concrete user of the type (check), or
    /// only stands for itself (list-users, which reports the wildcard, not everyone).
    wildcard_is_everyone: std::cell::Cell<bool>,
}

static EMPTY_CONTEXT: std::sync::OnceLock<serde_json::Map<String, serde_json::Value>> = std::sync::OnceLock::new();

impl<'a> Engine<'a> {
    /// An engine over `store` plus `contextual` tuples (validated against the model: 2027 when one is invalid).
    pub fn new(
        model: &'a Model,
        store: &'a dyn TupleSource,
        contextual: &[(Tuple, Option<TupleCondition>)],
        context: Option<&'a serde_json::Map<String, serde_json::Value>>,
    ) -> Result<Engine<'a>, EngineError> {
        let mut mem = MemoryTuples::default();
        for (t, c) in contextual {
            validate_tuple(model, t, c.as_ref().map(|c| c.name.as_str()))?;
            mem.insert(t, c.clone());
        }
        let context = context.unwrap_or_else(|| EMPTY_CONTEXT.get_or_init(serde_json::Map::new));
        Ok(Engine { model, store, contextual: mem, context, wildcard_is_everyone: std::cell::Cell::new(true) })
    }

    /// Does `user` hold `relation` on `object`?
    pub fn check(&self, object: &str, relation: &str, user: &str) -> Result<bool, EngineError> {
        let ty = object_type(object)
            .ok_or_else(|| EngineError::Validation(format!("object `{object}` is not `type:id`")))?;
        if self.model.type_def(ty).is_none() {
            return Err(EngineError::Validation(format!("type `{ty}` is not in the model")));
        }
        if self.model.relation(ty, relation).is_none() {
            return Err(EngineError::Validation(format!("type `{ty}` has no relation `{relation}`")));
        }
        self.validate_user(user)?;
        let mut visited = HashSet::new();
        Ok(self.resolve(object, relation, user, 0, &mut visited)? == Tri::Yes)
    }

    /// Every object of `object_type` on which `user` holds `relation`, sorted.
    ///
    /// Walks from the user to the objects its tuples reach (module `reverse`), so the cost
    /// follows the user's tuples, not the number of objects of the type. An error means some
    /// object the user may hold `relation` on could not be decided: unlike a check of every
    /// object, a failure on an object the user cannot reach does not fail the list.
    pub fn list_objects(&self, object_type: &str, relation: &str, user: &str) -> Result<Vec<String>, EngineError> {
        self.validate_list_objects(object_type, relation, user)?;
        match self.list_objects_by_reverse(object_type, relation, user)? {
            Some(found) => Ok(found),
            None => self.check_every_object(object_type, relation, user),
        }
    }

    /// List-objects the former way, one check per object of the type that some tuple names:
    /// the oracle the reverse walk is tested against. Unlike [`Engine::list_objects`] it
    /// fails when the check of any object fails, whether or not the user reaches it.
    #[doc(hidden)]
    pub fn list_objects_by_check(
        &self,
        object_type: &str,
        relation: &str,
        user: &str,
    ) -> Result<Vec<String>, EngineError> {
        self.validate_list_objects(object_type, relation, user)?;
        self.check_every_object(object_type, relation, user)
    }

    /// The request's type and relation must be in the model (2021, 2022), its user well formed (2000).
    fn validate_list_objects(&self, object_type: &str, relation: &str, user: &str) -> Result<(), EngineError> {
        let ty = self.model.type_def(object_type).ok_or_else(|| EngineError::TypeNotFound(object_type.to_string()))?;
        if ty.relation(relation).is_none() {
            return Err(EngineError::RelationNotFound(relation.to_string()));
        }
        self.validate_user(user)
    }

    /// One check per object of `object_type` named in a tuple, in sorted order.
    fn check_every_object(&self, object_type: &str, relation: &str, user: &str) -> Result<Vec<String>, EngineError> {
        let mut candidates: BTreeSet<&str> = self.store.objects_of_type(object_type).into_iter().collect();
        candidates.extend(self.contextual.objects_of_type(object_type));
        let mut found = Vec::new();
        for object in candidates {
            let mut visited = HashSet::new();
            if self.resolve(object, relation, user, 0, &mut visited)? == Tri::Yes {
                found.push(object.to_string());
            }
        }
        Ok(found)
    }

    /// Every user matching `filters` (`type` or `type#relation`) that holds
    /// `relation` on `object`: concrete users, `type:*` when the wildcard is
    /// granted, and usersets. Sorted.
    pub fn list_users(&self, object: &str, relation: &str, filters: &[String]) -> Result<Vec<String>, EngineError> {
        let ty = object_type(object)
            .ok_or_else(|| EngineError::Validation(format!("object `{object}` is not `type:id`")))?;
        let td = self.model.type_def(ty).ok_or_else(|| EngineError::TypeNotFound(ty.to_string()))?;
        if td.relation(relation).is_none() {
            return Err(EngineError::RelationNotFound(relation.to_string()));
        }
        let mut parsed = Vec::new();
        for f in filters {
            let (fty, frel) = match f.split_once('#') {
                Some((t, r)) => (t, Some(r)),
                None => (f.as_str(), None),
            };
            if self.model.type_def(fty).is_none() {
                return Err(EngineError::TypeNotFound(fty.to_string()));
            }
            if let Some(r) = frel {
                if self.model.relation(fty, r).is_none() {
                    return Err(EngineError::RelationNotFound(r.to_string()));
                }
            }
            parsed.push((fty, frel));
        }
        // Candidates: every object named in a tuple, as itself, its wildcard, or a userset.
        let mut names: BTreeSet<&str> = self.store.names().into_iter().collect();
        names.extend(self.contextual.names());
        names.insert(object);
        let mut candidates = BTreeSet::new();
        for name in names {
            let base = name.split_once('#').map(|(o, _)| o).unwrap_or(name);
            let Some(bty) = base.split_once(':').map(|(t, _)| t) else { continue };
            for (fty, frel) in &parsed {
                if *fty != bty {
                    continue;
                }
                match frel {
                    Some(r) if !base.ends_with(":*") => {
                        candidates.insert(format!("{base}#{r}"));
                    }
                    Some(_) => {}
                    None => {
                        candidates.insert(base.to_string());
                    }
                }
            }
        }
        self.wildcard_is_everyone.set(false);
        let mut found = Vec::new();
        let mut failure = None;
        for candidate in candidates {
            let mut visited = HashSet::new();
            match self.resolve(object, relation, &candidate, 0, &mut visited) {
                Ok(Tri::Yes) => found.push(candidate),
                Ok(_) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.wildcard_is_everyone.set(true);
        failure.map_or(Ok(found), Err)
    }

    /// One level of the userset tree of `object#relation`, as OpenFGA's Expand returns it:
    /// direct users as a leaf, computed relations and tuple-to-usersets as references to expand next.
    pub fn expand(&self, object: &str, relation: &str) -> Result<serde_json::Value, EngineError> {
        let ty = object_type(object)
            .ok_or_else(|| EngineError::Validation(format!("object `{object}` is not `type:id`")))?;
        let td = self.model.type_def(ty).ok_or_else(|| EngineError::TypeNotFound(ty.to_string()))?;
        let rel = td.relation(relation).ok_or_else(|| EngineError::RelationNotFound(relation.to_string()))?;
        let name = format!("{object}#{relation}");
        Ok(serde_json::json!({ "root": self.expand_node(&name, &rel.rewrite, rel, object) }))
    }

    fn expand_node(&self, name: &str, rw: &Rewrite, rel: &RelationDef, object: &str) -> serde_json::Value {
        use serde_json::json;
        let nodes = |cs: &[Rewrite]| cs.iter().map(|c| self.expand_node(name, c, rel, object)).collect::<Vec<_>>();
        match rw {
            Rewrite::This => {
                let mut users: Vec<String> = self
                    .read(object, &rel.name)
                    .into_iter()
                    .filter(|(u, c)| {
                        parse_user(u)
                            .map(|w| {
                                let cname = c.map(|c| c.name.as_str());
                                rel.directly_related
                                    .iter()
                                    .any(|d| d.admits(w.type_name, w.relation, w.wildcard, cname))
                            })
                            .unwrap_or(false)
                    })
                    .map(|(u, _)| u.to_string())
                    .collect();
                users.sort();
                users.dedup();
                json!({ "name": name, "leaf": { "users": { "users": users } } })
            }
            Rewrite::Computed(r) => {
                json!({ "name": name, "leaf": { "computed": { "userset": format!("{object}#{r}") } } })
            }
            Rewrite::TupleToUserset { tupleset, computed } => {
                let mut parents: Vec<String> = self
                    .read(object, tupleset)
                    .into_iter()
                    .filter(|(u, _)| parse_user(u).map(|p| p.relation.is_none() && !p.wildcard).unwrap_or(false))
                    .map(|(u, _)| u.to_string())
                    .collect();
                parents.sort();
                parents.dedup();
                let computed: Vec<_> =
                    parents.iter().map(|p| json!({ "userset": format!("{p}#{computed}") })).collect();
                json!({ "name": name, "leaf": { "tupleToUserset": { "tupleset": format!("{object}#{tupleset}"), "computed": computed } } })
            }
            Rewrite::Union(cs) => json!({ "name": name, "union": { "nodes": nodes(cs) } }),
            Rewrite::Intersection(cs) => json!({ "name": name, "intersection": { "nodes": nodes(cs) } }),
            Rewrite::Difference(a, b) => json!({ "name": name, "difference": {
                "base": self.expand_node(name, a, rel, object), "subtract": self.expand_node(name, b, rel, object) } }),
        }
    }

    fn validate_user(&self, user: &str) -> Result<(), EngineError> {
        let u = parse_user(user).ok_or_else(|| {
            EngineError::Validation(format!("user `{user}` is not `type:id`, `type:*` or `type:id#relation`"))
        })?;
        if self.model.type_def(u.type_name).is_none() {
            return Err(EngineError::Validation(format!("user type `{}` is not in the model", u.type_name)));
        }
        if let Some(r) = u.relation {
            if self.model.relation(u.type_name, r).is_none() {
                return Err(EngineError::Validation(format!("type `{}` has no relation `{r}`", u.type_name)));
            }
        }
        Ok(())
    }

    fn read(&self, object: &str, relation: &str) -> Vec<(&str, Option<&TupleCondition>)> {
        let mut users = self.store.read(object, relation);
        users.extend(self.contextual.read(object, relation));
        users
    }

    fn resolve(
        &self,
        object: &str,
        relation: &str,
        user: &str,
        depth: u32,
        visited: &mut HashSet<String>,
    ) -> Result<Tri, EngineError> {
        if depth >= RESOLUTION_DEPTH_LIMIT {
            return Err(EngineError::ResolutionTooComplex);
        }
        let Some(ty) = object_type(object) else { return Ok(Tri::No) };
        let Some(rel) = self.model.relation(ty, relation) else { return Ok(Tri::No) };
        // A userset is a member of itself: `document:1#writer` holds `writer` on `document:1`.
        if user.len() == object.len() + 1 + relation.len()
            && user.starts_with(object)
            && user[object.len()..].starts_with('#')
            && user.ends_with(relation)
        {
            return Ok(Tri::Yes);
        }
        let key = format!("{object}#{relation}@{user}");
        if !visited.insert(key.clone()) {
            return Ok(Tri::Cycle);
        }
        let result = self.rewrite(&rel.rewrite, rel, object, user, depth, visited);
        visited.remove(&key);
        result
    }

    fn rewrite(
        &self,
        rw: &Rewrite,
        rel: &RelationDef,
        object: &str,
        user: &str,
        depth: u32,
        visited: &mut HashSet<String>,
    ) -> Result<Tri, EngineError> {
        match rw {
            Rewrite::This => self.direct(rel, object, user, depth, visited),
            Rewrite::Computed(other) => self.resolve(object, other, user, depth + 1, visited),
            Rewrite::TupleToUserset { tupleset, computed } => {
                let Some(ty) = object_type(object) else { return Ok(Tri::No) };
                let Some(ts) = self.model.relation(ty, tupleset) else { return Ok(Tri::No) };
                let mut any = AnyOf::new();
                for (parent, condition) in self.read(object, tupleset) {
                    let Some(p) = parse_user(parent) else { continue };
                    if p.relation.is_some() || p.wildcard {
                        continue;
                    }
                    let cname = condition.map(|c| c.name.as_str());
                    if !ts.directly_related.iter().any(|d| d.admits(p.type_name, None, false, cname)) {
                        continue; // not admitted by the current model: ignored
                    }
                    if self.model.relation(p.type_name, computed).is_none() {
                        continue;
                    }
                    let answer = self.condition_holds(condition).and_then(|ok| {
                        if ok {
                            self.resolve(parent, computed, user, depth + 1, visited)
                        } else {
                            Ok(Tri::No)
                        }
                    });
                    if any.add(answer) {
                        return Ok(Tri::Yes);
                    }
                }
                any.finish()
            }
            Rewrite::Union(children) => {
                let mut any = AnyOf::new();
                for c in children {
                    if any.add(self.rewrite(c, rel, object, user, depth, visited)) {
                        return Ok(Tri::Yes);
                    }
                }
                any.finish()
            }
            Rewrite::Intersection(children) => {
                if !self.wildcard_is_everyone.get() {
                    // List-users: a concrete user is in `a and b` when it is in every operand,
                    // counting wildcards as everyone, and named in at least one of them.
                    let everyone =
                        self.with_wildcards(true, || self.intersection(children, rel, object, user, depth, visited));
                    if everyone? != Tri::Yes {
                        return Ok(Tri::No);
                    }
                    let mut any = AnyOf::new();
                    for c in children {
                        if any.add(self.rewrite(c, rel, object, user, depth, visited)) {
                            return Ok(Tri::Yes);
                        }
                    }
                    return any.finish();
                }
                self.intersection(children, rel, object, user, depth, visited)
            }
            Rewrite::Difference(base, subtract) => {
                let b = self.rewrite(base, rel, object, user, depth, visited);
                if let Ok(Tri::No) = b {
                    return Ok(Tri::No);
                }
                // Whoever a wildcard excludes is excluded, in list-users too.
                let s = self.with_wildcards(true, || self.rewrite(subtract, rel, object, user, depth, visited));
                match (b, s) {
                    (_, Ok(Tri::Yes)) => Ok(Tri::No),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                    (Ok(Tri::Yes), Ok(Tri::No)) => Ok(Tri::Yes),
                    _ => Ok(Tri::Cycle),
                }
            }
        }
    }

    fn intersection(
        &self,
        children: &[Rewrite],
        rel: &RelationDef,
        object: &str,
        user: &str,
        depth: u32,
        visited: &mut HashSet<String>,
    ) -> Result<Tri, EngineError> {
        let (mut cycle, mut error) = (false, None);
        for c in children {
            match self.rewrite(c, rel, object, user, depth, visited) {
                Ok(Tri::No) => return Ok(Tri::No),
                Ok(Tri::Yes) => {}
                Ok(Tri::Cycle) => cycle = true,
                Err(e) => error = Some(e),
            }
        }
        match (error, cycle) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(Tri::Cycle),
            (None, false) => Ok(Tri::Yes),
        }
    }

    /// Runs `f` with wildcard semantics set to `everyone`, then restores them.
    fn with_wildcards<T>(&self, everyone: bool, f: impl FnOnce() -> T) -> T {
        let before = self.wildcard_is_everyone.replace(everyone);
        let out = f();
        self.wildcard_is_everyone.set(before);
        out
    }

    /// The `[...]` part: tuples admitted by the type restriction.
    fn direct(
        &self,
        rel: &RelationDef,
        object: &str,
        user: &str,
        depth: u32,
        visited: &mut HashSet<String>,
    ) -> Result<Tri, EngineError> {
        let requested = parse_user(user);
        let mut any = AnyOf::new();
        for (written, condition) in self.read(object, &rel.name) {
            let Some(w) = parse_user(written) else { continue };
            let cname = condition.map(|c| c.name.as_str());
            if !rel.directly_related.iter().any(|d| d.admits(w.type_name, w.relation, w.wildcard, cname)) {
                continue; // written under an older model, not admitted now: ignored
            }
            let matches = if written == user {
                Ok(Tri::Yes)
            } else if w.wildcard {
                let hit = self.wildcard_is_everyone.get()
                    && requested.as_ref().map(|r| r.type_name == w.type_name && r.relation.is_none()).unwrap_or(false);
                Ok(if hit { Tri::Yes } else { Tri::No })
            } else if let Some(set_relation) = w.relation {
                let set_object = written.split_once('#').map(|(o, _)| o).unwrap_or(written);
                self.resolve(set_object, set_relation, user, depth + 1, visited)
            } else {
                Ok(Tri::No)
            };
            let answer = matches.and_then(|m| match m {
                Tri::Yes => self.condition_holds(condition).map(|ok| if ok { Tri::Yes } else { Tri::No }),
                other => Ok(other),
            });
            if any.add(answer) {
                return Ok(Tri::Yes);
            }
        }
        any.finish()
    }

    fn condition_holds(&self, condition: Option<&TupleCondition>) -> Result<bool, EngineError> {
        let Some(c) = condition else { return Ok(true) };
        let def = self
            .model
            .conditions
            .get(&c.name)
            .ok_or_else(|| EngineError::Validation(format!("condition `{}` is not in the model", c.name)))?;
        crate::conditions::evaluate(def, &c.context, self.context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dsl;

    #[test]
    fn list_users_reports_a_wildcard_as_itself() {
        let model = dsl::parse("model\n  schema 1.1\ntype user\ntype document\n  relations\n    define writer: [user:*]\n    define viewer: [user] or writer\n").unwrap();
        let mut store = MemoryTuples::default();
        store.insert(&Tuple::new("document:public", "writer", "user:*"), None);
        store.insert(&Tuple::new("document:public", "viewer", "user:jon"), None);
        let engine = Engine::new(&model, &store, &[], None).unwrap();
        assert_eq!(engine.list_users("document:public", "writer", &["user".into()]).unwrap(), vec!["user:*"]);
        assert_eq!(
            engine.list_users("document:public", "viewer", &["user".into()]).unwrap(),
            vec!["user:*", "user:jon"]
        );
        assert!(engine.check("document:public", "viewer", "user:anyone").unwrap(), "check: the wildcard is everyone");
        let tree = engine.expand("document:public", "viewer").unwrap();
        assert_eq!(tree["root"]["name"], "document:public#viewer");
        assert_eq!(tree["root"]["union"]["nodes"][0]["leaf"]["users"]["users"], serde_json::json!(["user:jon"]));
        assert_eq!(tree["root"]["union"]["nodes"][1]["leaf"]["computed"]["userset"], "document:public#writer");
        assert!(matches!(engine.expand("document:public", "nope"), Err(EngineError::RelationNotFound(_))));
    }
}
