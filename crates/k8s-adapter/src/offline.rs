//! Offline rendering: Kubernetes objects from YAML -> the routes the controller would write.
//!
//! The documents are fed to the same [`Index`] the controller feeds from its watches. With
//! `from_status` the decisions are the index's own, judged from the objects' status; otherwise
//! every version counts as available unless named as unready, and the decision is made by the
//! same [`decide`] function over that assumption (weight annotations in the input still count).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use routing_core::readiness::{ConditionFact, ObjectSource, ResourceFacts};
use routing_core::{RouteMapSpec, Strategy};
use serde_json::Value;

use crate::config::Config;
use crate::index::{Index, Outcome, decide};
use crate::routemap::{RouteMapKey, RouteMapObject, is_routemap};

/// Input that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// YAML syntax error, with the file and line.
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// File name (`-` for standard input).
        file: String,
        /// Parser message, with line and column.
        message: String,
    },
}

/// One document, with where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    /// File it came from.
    pub file: String,
    /// The object.
    pub object: Value,
}

/// Splits a multi-document YAML stream into objects; empty documents are skipped, and a
/// `kind: List` is unpacked.
pub fn load_documents(file: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| LoadError::Yaml {
        file: file.to_string(),
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    })?;
    let mut out = Vec::new();
    for doc in docs {
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            for item in doc["items"].as_array().into_iter().flatten() {
                out.push(Document {
                    file: file.into(),
                    object: item.clone(),
                });
            }
        } else if doc.is_object() {
            out.push(Document {
                file: file.into(),
                object: doc,
            });
        }
    }
    Ok(out)
}

/// How readiness is judged offline.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Judge each version by the status of its objects in the input.
    pub from_status: bool,
    /// Otherwise: these versions (by name) are unavailable; all others are available.
    pub unready: BTreeSet<String>,
}

/// What was decided for one routemap.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Which routemap.
    pub key: RouteMapKey,
    /// Its decision: a route (or none for strategy `none`), or why it is invalid.
    pub outcome: Outcome,
}

/// Feeds the documents to an index and decides every routemap, in namespace/name order.
pub fn render(
    config: &Config,
    default_namespace: &str,
    documents: &[Document],
    readiness: &Readiness,
) -> Vec<Rendered> {
    let mut index = Index::new(config);
    let types = kinds(config);
    for doc in documents {
        let obj = &doc.object;
        let meta = &obj["metadata"];
        let (Some(name), Some(kind), Some(api_version)) = (
            meta["name"].as_str(),
            obj["kind"].as_str(),
            obj["apiVersion"].as_str(),
        ) else {
            continue;
        };
        let namespace = meta["namespace"].as_str().unwrap_or(default_namespace);
        if kind == "ConfigMap" && api_version == "v1" && is_routemap(&labels(meta)) {
            index.upsert_routemap(RouteMapObject::from_json(obj, default_namespace));
        }
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        if let Some(short) = types.get(&(group.to_string(), kind.to_string())) {
            index.upsert_resource(short, namespace, name, ResourceFacts::from_json(obj));
        }
    }
    let mut out: BTreeMap<RouteMapKey, Outcome> = BTreeMap::new();
    for (owner, outcome) in index.decisions() {
        let key = RouteMapKey::new(owner.namespace.clone(), owner.name.clone());
        let outcome = match (readiness.from_status, outcome, index.spec(&key)) {
            (false, Outcome::Desired { .. }, Some(spec)) => {
                let assumed = Assumed::new(&index, &key.namespace, spec, &readiness.unready);
                decide(&owner, spec, &assumed)
            }
            _ => outcome.clone(),
        };
        out.insert(key, outcome);
    }
    out.into_iter()
        .map(|(key, outcome)| Rendered { key, outcome })
        .collect()
}

/// Version names of all valid routemaps in the documents (to check `--unready` names).
pub fn version_names(rendered: &[Rendered]) -> BTreeSet<String> {
    rendered
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Desired { summary, .. } => {
                Some(summary.versions.iter().map(|v| v.name.clone()))
            }
            Outcome::Invalid { .. } => None,
        })
        .flatten()
        .collect()
}

/// Whether a routemap's strategy writes no route.
pub fn is_none_strategy(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Desired { route: None, summary } if summary.strategy == Strategy::None)
}

fn labels(meta: &Value) -> BTreeMap<String, String> {
    meta["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// (group, kind) -> the short name whose facts the index keeps.
fn kinds(config: &Config) -> HashMap<(String, String), String> {
    config
        .watched_types()
        .into_iter()
        .map(|(short, t)| ((t.group.clone(), t.kind()), short))
        .collect()
}

/// Readiness assumed offline: every resource of a version is ready unless the version is named
/// unready; weight annotations of objects present in the input still apply.
struct Assumed<'a> {
    index: &'a Index,
    facts: HashMap<(String, String, String), ResourceFacts>,
}

impl<'a> Assumed<'a> {
    fn new(
        index: &'a Index,
        namespace: &str,
        spec: &RouteMapSpec,
        unready: &BTreeSet<String>,
    ) -> Self {
        let mut facts = HashMap::new();
        for v in spec.versions.iter().filter(|v| !unready.contains(&v.name)) {
            for r in &v.resources {
                let ns = r.namespace.as_deref().unwrap_or(namespace);
                let seen = index.facts(&r.gvr_short, ns, &r.name);
                let ready = ResourceFacts {
                    watched: true,
                    conditions: Some(
                        index
                            .conditions(&r.gvr_short)
                            .unwrap_or_default()
                            .iter()
                            .map(|c| ConditionFact {
                                kind: c.clone(),
                                status: "True".into(),
                                observed_generation: None,
                            })
                            .collect(),
                    ),
                    weight_annotation: seen.and_then(|f| f.weight_annotation.clone()),
                    ..Default::default()
                };
                facts.insert((r.gvr_short.clone(), ns.to_string(), r.name.clone()), ready);
            }
        }
        Assumed { index, facts }
    }
}

impl ObjectSource for Assumed<'_> {
    fn conditions(&self, gvr_short: &str) -> Option<&[String]> {
        self.index.conditions(gvr_short)
    }

    fn facts(&self, gvr_short: &str, namespace: &str, name: &str) -> Option<&ResourceFacts> {
        self.facts.get(&(
            gvr_short.to_string(),
            namespace.to_string(),
            name.to_string(),
        ))
    }
}
