//! OpenFGA's own conformance suites (`../shared/conformance/openfga/*.yaml`), one
//! trial per assertion, in both modes the reference engine uses: tuples stored,
//! and the same tuples sent as contextual tuples (single-stage tests with at
//! most 100 tuples).
//!
//! Assertions the engine does not pass yet are listed, with the reason, in
//! `tests/conformance-known-failures.txt`: such a trial is reported as ignored,
//! and one more trial, `known_failures_still_fail`, runs them all and fails
//! once any of them passes (so the list only shrinks). Any other failure fails
//! the run.
//!
//! The corpus is looked up at `../shared` from the repository root; when it is
//! missing the run fails under CI (`CI=true`) and is skipped with a notice elsewhere.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use airlock_rebac::engine::{Engine, EngineError, MemoryTuples, TupleCondition};
use airlock_rebac::model::{dsl, Model};
use airlock_rebac::Tuple;
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

#[derive(Deserialize)]
struct Suite {
    tests: Vec<Test>,
}

#[derive(Deserialize)]
struct Test {
    name: String,
    stages: Vec<Stage>,
}

#[derive(Deserialize, Clone)]
struct Stage {
    model: String,
    #[serde(default)]
    tuples: Option<Vec<YTuple>>,
    #[serde(default, rename = "checkAssertions")]
    check: Option<Vec<CheckAssertion>>,
    #[serde(default, rename = "listObjectsAssertions")]
    list_objects: Option<Vec<ListObjectsAssertion>>,
    #[serde(default, rename = "listUsersAssertions")]
    list_users: Option<Vec<ListUsersAssertion>>,
}

#[derive(Deserialize, Clone)]
struct YTuple {
    object: String,
    relation: String,
    user: String,
    #[serde(default)]
    condition: Option<YCondition>,
}

#[derive(Deserialize, Clone)]
struct YCondition {
    name: String,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Clone)]
struct CheckAssertion {
    tuple: YTuple,
    #[serde(default)]
    expectation: Option<bool>,
    #[serde(default, rename = "errorCode")]
    error_code: Option<u32>,
    #[serde(default, rename = "contextualTuples")]
    contextual: Option<Vec<YTuple>>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Clone)]
struct ListUsersRequest {
    object: String,
    relation: String,
    filters: Vec<String>,
    #[serde(default, rename = "contextualTuples")]
    contextual: Option<Vec<YTuple>>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Clone)]
struct ListUsersAssertion {
    request: ListUsersRequest,
    #[serde(default)]
    expectation: Option<Vec<String>>,
    #[serde(default, rename = "errorCode")]
    error_code: Option<u32>,
    #[serde(default, rename = "contextualTuples")]
    contextual: Option<Vec<YTuple>>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Clone)]
struct ListObjectsRequest {
    user: String,
    #[serde(rename = "type")]
    object_type: String,
    relation: String,
    #[serde(default, rename = "contextualTuples")]
    contextual: Option<Vec<YTuple>>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Clone)]
struct ListObjectsAssertion {
    request: ListObjectsRequest,
    #[serde(default)]
    expectation: Option<Vec<String>>,
    #[serde(default, rename = "errorCode")]
    error_code: Option<u32>,
    #[serde(default, rename = "contextualTuples")]
    contextual: Option<Vec<YTuple>>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
}

fn convert(ts: &[YTuple]) -> Vec<(Tuple, Option<TupleCondition>)> {
    ts.iter()
        .map(|t| {
            let c = t
                .condition
                .as_ref()
                .map(|c| TupleCondition { name: c.name.clone(), context: c.context.clone().unwrap_or_default() });
            (Tuple::new(&t.object, &t.relation, &t.user), c)
        })
        .collect()
}

/// What one assertion needs to run: the stage's model, the store, the mode.
#[derive(Clone)]
struct Case {
    model: Result<Model, String>,
    stored: Vec<(Tuple, Option<TupleCondition>)>,
    contextual_mode: bool,
}

impl Case {
    fn engine_inputs(&self, extra: &[YTuple]) -> (MemoryTuples, Vec<(Tuple, Option<TupleCondition>)>) {
        let mut store = MemoryTuples::default();
        let mut contextual = convert(extra);
        if self.contextual_mode {
            contextual.extend(self.stored.iter().cloned());
        } else {
            for (t, c) in &self.stored {
                store.insert(t, c.clone());
            }
        }
        (store, contextual)
    }
}

fn outcome<T: PartialEq + std::fmt::Debug>(
    got: Result<T, EngineError>,
    want: Option<T>,
    code: Option<u32>,
) -> Result<(), String> {
    match (got, code) {
        (Err(e), Some(c)) if e.code() == c => Ok(()),
        (Err(e), Some(c)) => Err(format!("expected error {c}, got error {} ({e})", e.code())),
        (Ok(v), Some(c)) => Err(format!("expected error {c}, got {v:?}")),
        (Err(e), None) => Err(format!("expected {want:?}, got error {} ({e})", e.code())),
        (Ok(v), None) if Some(&v) == want.as_ref() => Ok(()),
        (Ok(v), None) => Err(format!("expected {want:?}, got {v:?}")),
    }
}

fn run_check(case: &Case, a: &CheckAssertion) -> Result<(), String> {
    let model = case.model.as_ref().map_err(|e| format!("model does not parse: {e}"))?;
    let (store, contextual) = case.engine_inputs(a.contextual.as_deref().unwrap_or(&[]));
    let got = Engine::new(model, &store, &contextual, a.context.as_ref())
        .and_then(|e| e.check(&a.tuple.object, &a.tuple.relation, &a.tuple.user));
    outcome(got, a.expectation, a.error_code)
}

fn run_list_objects(case: &Case, a: &ListObjectsAssertion) -> Result<(), String> {
    let model = case.model.as_ref().map_err(|e| format!("model does not parse: {e}"))?;
    let mut extra = a.request.contextual.clone().unwrap_or_default();
    extra.extend(a.contextual.clone().unwrap_or_default());
    let (store, contextual) = case.engine_inputs(&extra);
    let context = a.context.as_ref().or(a.request.context.as_ref());
    let got = Engine::new(model, &store, &contextual, context)
        .and_then(|e| e.list_objects(&a.request.object_type, &a.request.relation, &a.request.user))
        .map(|mut v| {
            v.sort();
            v
        });
    let mut want = a.expectation.clone().unwrap_or_default();
    want.sort();
    outcome(got, if a.error_code.is_some() { None } else { Some(want) }, a.error_code)
}

fn run_list_users(case: &Case, a: &ListUsersAssertion) -> Result<(), String> {
    let model = case.model.as_ref().map_err(|e| format!("model does not parse: {e}"))?;
    let mut extra = a.request.contextual.clone().unwrap_or_default();
    extra.extend(a.contextual.clone().unwrap_or_default());
    let (store, contextual) = case.engine_inputs(&extra);
    let context = a.context.as_ref().or(a.request.context.as_ref());
    let got = Engine::new(model, &store, &contextual, context)
        .and_then(|e| e.list_users(&a.request.object, &a.request.relation, &a.request.filters));
    let mut want = a.expectation.clone().unwrap_or_default();
    want.sort();
    outcome(got, if a.error_code.is_some() { None } else { Some(want) }, a.error_code)
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/openfga");
    if dir.is_dir() {
        return Some(dir);
    }
    let on_ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    assert!(
        !on_ci,
        "the OpenFGA conformance corpus is missing at {}: CI must have ../shared beside the clone",
        dir.display()
    );
    eprintln!("notice: {} not found, conformance suites skipped", dir.display());
    None
}

/// Trials per suite and mode that the corpus yields (see `main`).
const MINIMUM_TRIALS: [(&str, usize); 4] = [
    ("consolidated_1_1_tests stored", 925),
    ("consolidated_1_1_tests contextual", 738),
    ("abac_tests stored", 291),
    ("abac_tests contextual", 271),
];

fn main() {
    let args = Arguments::from_args();
    let known_text = include_str!("conformance-known-failures.txt");
    let known: HashSet<&str> = known_text
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut trials = Vec::new();
    let mut known_runs: Vec<(String, Box<dyn FnOnce() -> Result<(), String> + Send>)> = Vec::new();
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    let Some(dir) = corpus_dir() else {
        libtest_mimic::run(&args, trials).exit();
    };
    for file in ["consolidated_1_1_tests.yaml", "abac_tests.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read corpus");
        let suite: Suite = serde_yaml::from_str(&text).expect("parse corpus");
        let short = file.trim_end_matches(".yaml");
        for test in &suite.tests {
            let single = test.stages.len() == 1 && test.stages[0].tuples.as_ref().map(Vec::len).unwrap_or(0) <= 100;
            for mode in ["stored", "contextual"] {
                if mode == "contextual" && !single {
                    continue;
                }
                let mut stored = Vec::new();
                for (si, stage) in test.stages.iter().enumerate() {
                    stored.extend(convert(stage.tuples.as_deref().unwrap_or(&[])));
                    let case = Case {
                        model: dsl::parse(&stage.model).map_err(|e| e.to_string()),
                        stored: stored.clone(),
                        contextual_mode: mode == "contextual",
                    };
                    let mut add = |kind: &str, i: usize, run: Box<dyn FnOnce() -> Result<(), String> + Send>| {
                        let name = format!("{short}::{}::{mode}::stage{si}::{kind}{i}", test.name);
                        *totals.entry(format!("{short} {mode}")).or_default() += 1;
                        if known.contains(name.as_str()) {
                            trials.push(Trial::test(name.clone(), || Ok(())).with_ignored_flag(true));
                            known_runs.push((name, run));
                        } else {
                            trials.push(Trial::test(name, move || run().map_err(Failed::from)));
                        }
                    };
                    for (i, a) in stage.check.clone().unwrap_or_default().into_iter().enumerate() {
                        let c = case.clone();
                        add("check", i, Box::new(move || run_check(&c, &a)));
                    }
                    for (i, a) in stage.list_objects.clone().unwrap_or_default().into_iter().enumerate() {
                        let c = case.clone();
                        add("list_objects", i, Box::new(move || run_list_objects(&c, &a)));
                    }
                    for (i, a) in stage.list_users.clone().unwrap_or_default().into_iter().enumerate() {
                        let c = case.clone();
                        add("list_users", i, Box::new(move || run_list_users(&c, &a)));
                    }
                }
            }
        }
    }
    eprintln!("conformance trials: {totals:?} (known failures, reported as ignored: {})", known_runs.len());
    // A corpus that parses into fewer assertions than it holds would pass vacuously: the
    // counts of ../shared/conformance/openfga as of 2026-12 (checks, list objects and list
    // users assertions per suite and mode) are the floor.
    let short: Vec<String> = MINIMUM_TRIALS
        .iter()
        .filter(|(suite, floor)| totals.get(*suite).copied().unwrap_or(0) < *floor)
        .map(|(suite, floor)| format!("{suite}: {} of at least {floor}", totals.get(*suite).copied().unwrap_or(0)))
        .collect();
    trials.push(Trial::test("the_whole_corpus_runs", move || {
        if short.is_empty() {
            Ok(())
        } else {
            Err(Failed::from(format!("fewer trials than the corpus holds: {short:?}")))
        }
    }));
    let listed_but_absent: Vec<&str> =
        known.iter().copied().filter(|k| !known_runs.iter().any(|(n, _)| n == k)).collect();
    trials.push(Trial::test("known_failures_still_fail", move || {
        if !listed_but_absent.is_empty() {
            return Err(Failed::from(format!("listed but not in the corpus: {listed_but_absent:?}")));
        }
        let now_passing: Vec<String> =
            known_runs.into_iter().filter_map(|(n, run)| run().is_ok().then_some(n)).collect();
        if now_passing.is_empty() {
            Ok(())
        } else {
            Err(Failed::from(format!(
                "these pass now, remove them from tests/conformance-known-failures.txt: {now_passing:?}"
            )))
        }
    }));
    libtest_mimic::run(&args, trials).exit();
}
