//! List-objects by reverse expansion: start at the user, walk the model's
//! relation graph backwards through the tuples written for that user, and
//! collect the objects reached, instead of checking every object of the type.
//!
//! The walk follows the same steps [`Engine::resolve`] takes, reversed: a
//! tuple naming the user (or its type's wildcard), a userset `type:id#rel`
//! once the user holds `rel` on `type:id`, a computed relation, and a
//! tuple-to-userset `rel from parent`. A step is *exact* when every rewrite
//! above it is a union and its tuple has no condition: whoever the step
//! reaches certainly holds the relation. Intersections, exclusions and
//! conditions make a step *inexact*: the objects reached that way are only
//! candidates, and each is confirmed with a check. Exact reaches deeper than
//! the resolution limit are confirmed too, so that the answer (or the error)
//! is the one a check gives.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use super::{object_type, parse_user, Engine, EngineError, Tri, TupleCondition, TupleSource};
use crate::model::{Model, Rewrite};
use crate::RESOLUTION_DEPTH_LIMIT;

/// One rewrite leaf that can make a user hold a relation, and whether it does so exactly.
#[derive(Debug, Clone, Copy)]
enum Leaf<'m> {
    Direct,
    Computed(&'m str),
    TupleToUserset { tupleset: &'m str, computed: &'m str },
}

/// `relation: computed from tupleset` on `object_type`, indexed by `computed`.
#[derive(Debug, Clone, Copy)]
struct Inherit<'m> {
    object_type: &'m str,
    tupleset: &'m str,
    relation: &'m str,
    exact: bool,
}

/// The model's rewrites turned around: from "who holds this relation" to "what does holding it grant".
#[derive(Debug, Default)]
struct ReverseModel<'m> {
    /// (type, relation) whose rewrite reads its `[...]` tuples; true when some such read is exact.
    direct: HashMap<(&'m str, &'m str), bool>,
    /// (type, relation) -> the relations of the same type computed from it.
    computed: HashMap<(&'m str, &'m str), Vec<(&'m str, bool)>>,
    /// Relation name on a parent -> the relations that inherit it through a tupleset.
    inherited: HashMap<&'m str, Vec<Inherit<'m>>>,
}

impl<'m> ReverseModel<'m> {
    /// The reversed model, or `None` when it holds an empty intersection (everyone holds
    /// such a relation on every object, which no walk from a user can find).
    fn new(model: &'m Model) -> Option<ReverseModel<'m>> {
        let mut reverse = ReverseModel::default();
        for ty in &model.types {
            for rel in &ty.relations {
                let mut leaves = Vec::new();
                if !collect_leaves(&rel.rewrite, true, &mut leaves) {
                    return None;
                }
                for (leaf, exact) in leaves {
                    reverse.add(&ty.name, &rel.name, leaf, exact);
                }
            }
        }
        Some(reverse)
    }

    fn add(&mut self, ty: &'m str, relation: &'m str, leaf: Leaf<'m>, exact: bool) {
        match leaf {
            Leaf::Direct => {
                let known = self.direct.entry((ty, relation)).or_insert(exact);
                *known |= exact;
            }
            Leaf::Computed(from) => self.computed.entry((ty, from)).or_default().push((relation, exact)),
            Leaf::TupleToUserset { tupleset, computed } => {
                self.inherited.entry(computed).or_default().push(Inherit { object_type: ty, tupleset, relation, exact })
            }
        }
    }
}

/// The leaves through which a user can come to hold a relation: all operands of a union,
/// the first operand of an intersection (every member is in it), the base of an exclusion.
/// False when an intersection has no operand.
fn collect_leaves<'m>(rw: &'m Rewrite, exact: bool, out: &mut Vec<(Leaf<'m>, bool)>) -> bool {
    match rw {
        Rewrite::This => out.push((Leaf::Direct, exact)),
        Rewrite::Computed(r) => out.push((Leaf::Computed(r), exact)),
        Rewrite::TupleToUserset { tupleset, computed } => {
            out.push((Leaf::TupleToUserset { tupleset, computed }, exact));
        }
        Rewrite::Union(children) => return children.iter().all(|c| collect_leaves(c, exact, out)),
        Rewrite::Intersection(children) => {
            return children.first().is_some_and(|c| collect_leaves(c, false, out));
        }
        Rewrite::Difference(base, _) => return collect_leaves(base, false, out),
    }
    true
}

/// "The user holds `relation` on `object`", as the walk reaches it.
type Node<'e> = (&'e str, &'e str);

/// The walk's state: breadth first, so the first exact reach of a node is its shortest.
struct Walk<'e> {
    /// Nodes reached exactly, with the number of steps from the user.
    exact: HashMap<Node<'e>, u32>,
    /// Nodes reached only inexactly so far.
    inexact: HashSet<Node<'e>>,
    queue: VecDeque<(Node<'e>, bool, u32)>,
}

impl<'e> Walk<'e> {
    fn new() -> Walk<'e> {
        Walk { exact: HashMap::new(), inexact: HashSet::new(), queue: VecDeque::new() }
    }

    /// Records a reach; queues the node when this is its first reach of this kind.
    fn reach(&mut self, node: Node<'e>, exact: bool, steps: u32) {
        if self.exact.contains_key(&node) {
            return;
        }
        if exact {
            self.exact.insert(node, steps);
            self.queue.push_back((node, true, steps));
        } else if self.inexact.insert(node) {
            self.queue.push_back((node, false, steps));
        }
    }

    /// The next node to expand; an inexact reach of a node since reached exactly is skipped.
    fn next(&mut self) -> Option<(Node<'e>, bool, u32)> {
        while let Some((node, exact, steps)) = self.queue.pop_front() {
            if exact || !self.exact.contains_key(&node) {
                return Some((node, exact, steps));
            }
        }
        None
    }
}

impl<'a> Engine<'a> {
    /// [`Engine::list_objects`] by reverse expansion; `None` when the model cannot be reversed.
    pub(super) fn list_objects_by_reverse(
        &self,
        object_type: &str,
        relation: &str,
        user: &str,
    ) -> Result<Option<Vec<String>>, EngineError> {
        let Some(reverse) = ReverseModel::new(self.model) else { return Ok(None) };
        let walk = self.walk_from_user(&reverse, user);
        let mut sure = BTreeSet::new();
        let mut to_confirm = BTreeSet::new();
        for (&(object, rel), &steps) in &walk.exact {
            if rel == relation && object_type_is(object, object_type) {
                if steps < RESOLUTION_DEPTH_LIMIT {
                    sure.insert(object);
                } else {
                    to_confirm.insert(object);
                }
            }
        }
        for &(object, rel) in &walk.inexact {
            if rel == relation && object_type_is(object, object_type) && !walk.exact.contains_key(&(object, rel)) {
                to_confirm.insert(object);
            }
        }
        for object in to_confirm {
            if self.has_object(object) && self.resolve(object, relation, user, 0, &mut HashSet::new())? == Tri::Yes {
                sure.insert(object);
            }
        }
        Ok(Some(sure.into_iter().filter(|o| self.has_object(o)).map(str::to_string).collect()))
    }

    /// Every node reachable from `user`, each marked exact or not.
    fn walk_from_user<'e>(&'e self, reverse: &ReverseModel<'e>, user: &'e str) -> Walk<'e> {
        let mut walk = Walk::new();
        if let Some((object, relation)) = user.split_once('#') {
            walk.reach((object, relation), true, 0); // a userset is a member of itself
        }
        self.seed_tuples(reverse, user, &mut walk);
        if let Some(u) = parse_user(user).filter(|u| u.relation.is_none() && !u.wildcard) {
            let wildcard = format!("{}:*", u.type_name);
            self.seed_tuples(reverse, &wildcard, &mut walk);
        }
        while let Some(((object, relation), exact, steps)) = walk.next() {
            self.step_from(reverse, object, relation, exact, steps, &mut walk);
        }
        walk
    }

    /// The `[...]` tuples naming `subject` (the user, or its type's wildcard).
    fn seed_tuples<'e>(&'e self, reverse: &ReverseModel<'e>, subject: &str, walk: &mut Walk<'e>) {
        for (object, relation, condition, exact) in self.direct_tuples_of(reverse, subject) {
            walk.reach((object, relation), exact && condition.is_none(), 0);
        }
    }

    /// What holding `relation` on `object` grants, one step on.
    fn step_from<'e>(
        &'e self,
        reverse: &ReverseModel<'e>,
        object: &'e str,
        relation: &'e str,
        exact: bool,
        steps: u32,
        walk: &mut Walk<'e>,
    ) {
        let Some(ty) = object_type(object) else { return };
        for &(computed, step_exact) in reverse.computed.get(&(ty, relation)).into_iter().flatten() {
            walk.reach((object, computed), exact && step_exact, steps + 1);
        }
        let userset = format!("{object}#{relation}");
        for (o, r, condition, step_exact) in self.direct_tuples_of(reverse, &userset) {
            walk.reach((o, r), exact && step_exact && condition.is_none(), steps + 1);
        }
        let Some(inherits) = reverse.inherited.get(relation) else { return };
        for (child, tupleset, condition) in self.by_user(object) {
            let Some(child_ty) = object_type(child) else { continue };
            for i in inherits.iter().filter(|i| i.object_type == child_ty && i.tupleset == tupleset) {
                let Some(ts) = self.model.relation(child_ty, tupleset) else { continue };
                let cname = condition.map(|c| c.name.as_str());
                if ts.directly_related.iter().any(|d| d.admits(ty, None, false, cname)) {
                    walk.reach((child, i.relation), exact && i.exact && condition.is_none(), steps + 1);
                }
            }
        }
    }

    /// Tuples naming `subject` that the model admits on a relation whose rewrite reads its
    /// `[...]`: (object, relation, condition, whether that read is exact).
    fn direct_tuples_of<'e>(
        &'e self,
        reverse: &ReverseModel<'e>,
        subject: &str,
    ) -> Vec<(&'e str, &'e str, Option<&'e TupleCondition>, bool)> {
        let Some(s) = parse_user(subject) else { return Vec::new() };
        let mut out = Vec::new();
        for (object, relation, condition) in self.by_user(subject) {
            let Some(ty) = object_type(object) else { continue };
            let Some(&exact) = reverse.direct.get(&(ty, relation)) else { continue };
            let Some(rel) = self.model.relation(ty, relation) else { continue };
            let cname = condition.map(|c| c.name.as_str());
            if rel.directly_related.iter().any(|d| d.admits(s.type_name, s.relation, s.wildcard, cname)) {
                out.push((object, relation, condition, exact));
            }
        }
        out
    }

    /// Stored and contextual tuples naming exactly `subject`: (object, relation, condition).
    fn by_user(&self, subject: &str) -> Vec<(&str, &str, Option<&TupleCondition>)> {
        let mut tuples = self.store.read_by_user(subject);
        tuples.extend(self.contextual.read_by_user(subject));
        tuples
    }

    /// Whether `object` is named in some stored or contextual tuple (list-objects looks no further).
    fn has_object(&self, object: &str) -> bool {
        self.store.has_object(object) || self.contextual.has_object(object)
    }
}

fn object_type_is(object: &str, ty: &str) -> bool {
    object_type(object) == Some(ty)
}
