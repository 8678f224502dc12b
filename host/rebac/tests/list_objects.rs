//! List-objects by reverse expansion against the former algorithm (one check per
//! object of the type, kept as `Engine::list_objects_by_check`), on random models
//! and tuples from a fixed seed.
//!
//! The models mix direct types, wildcards, usersets (of groups and of the listed
//! type itself, so cycles occur), computed relations, tuple-to-userset over a
//! parent hierarchy and into groups, union, intersection, exclusion and a
//! condition; the tuples are split between the store and the request's contextual
//! tuples, carry conditions with or without their parameters, and include some the
//! model no longer admits. The questions ask for every relation, for concrete
//! users, the wildcard and usersets, with and without a request context.
//!
//! Where the former algorithm answers, both must give the same list. Where it fails
//! (it checks every object, so an error on any object fails the whole list), the
//! new one may answer instead, but then its list must hold exactly the objects whose
//! own check says yes.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use airlock_rebac::engine::{validate_tuple, Engine, MemoryTuples, TupleCondition};
use airlock_rebac::model::{dsl, Model};
use airlock_rebac::Tuple;

mod common;
use common::Rng;

const MODELS: usize = 250;
const RELATIONS: usize = 5;
const DOCS: usize = 5;

/// A term that may come first in a definition (the only place for a `[...]`).
fn first_term(rng: &mut Rng) -> String {
    let direct = [
        "[user]",
        "[user, user:*]",
        "[user, group#member]",
        "[user with small, group#member with small]",
        "[user:* with small, group#member]",
    ];
    match rng.below(6) {
        0..=2 => rng.pick(&direct).to_string(),
        3 => format!("[user, doc#r{}]", rng.below(RELATIONS)),
        4 => format!("r{}", rng.below(RELATIONS)),
        _ => later_term(rng),
    }
}

/// A term that refers to relations: computed, tuple-to-userset, or a parenthesised pair.
fn later_term(rng: &mut Rng) -> String {
    match rng.below(7) {
        0 | 1 => format!("r{}", rng.below(RELATIONS)),
        2 | 3 => format!("r{} from parent", rng.below(RELATIONS)),
        4 => "member from team".to_string(),
        5 => format!("(r{} and r{} from parent)", rng.below(RELATIONS), rng.below(RELATIONS)),
        _ => format!("(r{} but not r{})", rng.below(RELATIONS), rng.below(RELATIONS)),
    }
}

fn definition(rng: &mut Rng) -> String {
    let a = first_term(rng);
    match rng.below(6) {
        0 => a,
        1 => format!("{a} or {}", later_term(rng)),
        2 => format!("{a} or {} or {}", later_term(rng), later_term(rng)),
        3 => format!("{a} and {}", later_term(rng)),
        _ => format!("{a} but not {}", later_term(rng)),
    }
}

fn model_text(rng: &mut Rng) -> String {
    let member = rng.pick(&[
        "[user, user:*, group#member, user with small]",
        "[user, group#member] but not banned",
        "[user, group#member with small]",
    ]);
    let mut m = format!(
        "model\n  schema 1.1\ntype user\ntype group\n  relations\n    define banned: [user, user with small]\n    \
         define member: {member}\ntype doc\n  relations\n    define parent: [doc, doc with small]\n    \
         define team: [group]\n"
    );
    for i in 0..RELATIONS {
        let _ = writeln!(m, "    define r{i}: {}", definition(rng));
    }
    m.push_str("condition small(x: int, y: int) {\n  x < y\n}\n");
    m
}

fn user(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => "user:*".to_string(),
        1 => format!("group:g{}#member", rng.below(3)),
        2 => format!("doc:d{}#r{}", rng.below(DOCS), rng.below(RELATIONS)),
        _ => format!("user:u{}", rng.below(4)),
    }
}

fn random_tuple(rng: &mut Rng) -> Tuple {
    let doc = |rng: &mut Rng| format!("doc:d{}", rng.below(DOCS));
    match rng.below(6) {
        0 => Tuple::new(format!("group:g{}", rng.below(3)), "member", user(rng)),
        1 => Tuple::new(format!("group:g{}", rng.below(3)), "banned", format!("user:u{}", rng.below(4))),
        2 => Tuple::new(doc(rng), "parent", doc(rng)),
        3 => Tuple::new(doc(rng), "team", format!("group:g{}", rng.below(3))),
        _ => Tuple::new(doc(rng), format!("r{}", rng.below(RELATIONS)), user(rng)),
    }
}

/// `small` with `x` and sometimes `y` (else the request must supply it), or no condition.
fn random_condition(rng: &mut Rng) -> Option<TupleCondition> {
    if rng.below(3) != 0 {
        return None;
    }
    let mut context = serde_json::Map::new();
    context.insert("x".into(), (rng.below(4) as i64).into());
    if rng.below(2) == 0 {
        context.insert("y".into(), (rng.below(4) as i64).into());
    }
    Some(TupleCondition { name: "small".into(), context })
}

/// One generated case: the model, the stored tuples and the contextual ones.
struct Case {
    text: String,
    model: Model,
    stored: Vec<(Tuple, Option<TupleCondition>)>,
    contextual: Vec<(Tuple, Option<TupleCondition>)>,
}

fn random_case(rng: &mut Rng) -> Case {
    loop {
        let text = model_text(rng);
        let Ok(model) = dsl::parse(&text) else { continue }; // e.g. no entrypoint: regenerate
        let (mut stored, mut contextual) = (Vec::new(), Vec::new());
        for _ in 0..24 {
            let (t, c) = (random_tuple(rng), random_condition(rng));
            let admitted = validate_tuple(&model, &t, c.as_ref().map(|c| c.name.as_str())).is_ok();
            // The store may hold tuples an older model admitted; contextual tuples are validated.
            if admitted && rng.below(3) == 0 {
                contextual.push((t, c));
            } else if admitted || rng.below(4) == 0 {
                stored.push((t, c));
            }
        }
        return Case { text, model, stored, contextual };
    }
}

/// How the questions of the whole run came out.
#[derive(Default, Debug)]
struct Tally {
    questions: usize,
    same_answer: usize,
    non_empty: usize,
    old_failed_new_answered: usize,
    both_failed: usize,
}

/// The new answer where the old one failed: exactly the objects, among those named in
/// some tuple, whose own check says yes (an object whose check fails may go either way).
fn agrees_with_checks(
    engine: &Engine,
    case: &Case,
    found: &[String],
    relation: &str,
    user: &str,
) -> Result<(), String> {
    let named: BTreeSet<&str> = case.stored.iter().chain(&case.contextual).map(|(t, _)| t.object.as_str()).collect();
    for object in named.into_iter().filter(|o| o.starts_with("doc:")) {
        let listed = found.iter().any(|f| f == object);
        match engine.check(object, relation, user) {
            Ok(true) if !listed => return Err(format!("{object} is not listed but its check says yes")),
            Ok(false) if listed => return Err(format!("{object} is listed but its check says no")),
            _ => {}
        }
    }
    Ok(())
}

fn compare(
    case: &Case,
    context: Option<&serde_json::Map<String, serde_json::Value>>,
    user: &str,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut store = MemoryTuples::default();
    for (t, c) in &case.stored {
        store.insert(t, c.clone());
    }
    let engine = Engine::new(&case.model, &store, &case.contextual, context).map_err(|e| e.to_string())?;
    let mut questions: Vec<(&str, String)> = (0..RELATIONS).map(|r| ("doc", format!("r{r}"))).collect();
    questions.push(("group", "member".into()));
    for (ty, relation) in questions {
        tally.questions += 1;
        let old = engine.list_objects_by_check(ty, &relation, user);
        let new = engine.list_objects(ty, &relation, user);
        match (&old, &new) {
            (Ok(o), Ok(n)) if o == n => {
                tally.same_answer += 1;
                tally.non_empty += usize::from(!n.is_empty());
            }
            (Err(_), Err(_)) => tally.both_failed += 1,
            (Err(_), Ok(n)) if ty == "doc" => {
                agrees_with_checks(&engine, case, n, &relation, user)
                    .map_err(|why| format!("{ty}#{relation} for {user}: old failed, new {n:?}: {why}"))?;
                tally.old_failed_new_answered += 1;
            }
            (Err(_), Ok(_)) => tally.old_failed_new_answered += 1,
            _ => return Err(format!("{ty}#{relation} for {user}: by check {old:?}, by reverse expansion {new:?}")),
        }
    }
    Ok(())
}

fn describe(case: &Case) -> String {
    let show = |ts: &[(Tuple, Option<TupleCondition>)]| {
        ts.iter()
            .map(|(t, c)| format!("  {}#{}@{} {:?}", t.object, t.relation, t.subject, c.as_ref().map(|c| &c.context)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!("{}stored:\n{}\ncontextual:\n{}", case.text, show(&case.stored), show(&case.contextual))
}

#[test]
fn reverse_expansion_lists_what_checking_every_object_lists() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut tally = Tally::default();
    let contexts: Vec<Option<serde_json::Map<String, serde_json::Value>>> =
        vec![None, Some(serde_json::json!({ "y": 2 }).as_object().cloned().unwrap_or_default())];
    for model_number in 0..MODELS {
        let case = random_case(&mut rng);
        let users = ["user:u0", "user:u1", "user:u3", "user:*", "group:g0#member", "doc:d1#r0", "doc:d2#r3"];
        for context in &contexts {
            for user in users {
                if let Err(why) = compare(&case, context.as_ref(), user, &mut tally) {
                    panic!("model {model_number}, context {context:?}: {why}\n{}", describe(&case));
                }
            }
        }
    }
    eprintln!("list-objects: {tally:?}");
    assert!(tally.same_answer >= tally.questions * 3 / 4, "too few comparable answers: {tally:?}");
    assert!(tally.non_empty >= tally.questions / 8, "the generator degenerated into empty lists: {tally:?}");
}

const CHAIN_MODEL: &str = "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define parent: [doc]\n    \
                           define viewer: [user] or viewer from parent\n";

/// A parent chain `doc:d0 <- doc:d1 <- ...` of `len` documents, the user a viewer of `doc:d0`.
fn chain(len: usize) -> MemoryTuples {
    let mut store = MemoryTuples::default();
    store.insert(&Tuple::new("doc:d0", "viewer", "user:u"), None);
    for i in 1..len {
        store.insert(&Tuple::new(format!("doc:d{i}"), "parent", format!("doc:d{}", i - 1)), None);
    }
    store
}

#[test]
fn a_chain_within_the_resolution_limit_is_listed_and_a_deeper_one_fails_as_its_check_does() {
    let model = dsl::parse(CHAIN_MODEL).expect("the chain model parses");
    let store = chain(20);
    let engine = Engine::new(&model, &store, &[], None).expect("engine");
    let mut all: Vec<String> = (0..20).map(|i| format!("doc:d{i}")).collect();
    all.sort();
    assert_eq!(engine.list_objects("doc", "viewer", "user:u"), Ok(all));

    let store = chain(30);
    let engine = Engine::new(&model, &store, &[], None).expect("engine");
    assert!(engine.check("doc:d29", "viewer", "user:u").is_err(), "29 steps are past the limit for a check");
    assert_eq!(engine.list_objects("doc", "viewer", "user:u"), engine.list_objects_by_check("doc", "viewer", "user:u"));
    assert!(engine.list_objects("doc", "viewer", "user:u").is_err());
}
