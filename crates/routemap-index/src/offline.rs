//! Offline rendering: Kubernetes objects from YAML -> the routes the controller would write.
//!
//! The documents are fed to the same [`Index`] the controller feeds from its watches. With
//! `from_status` the decisions are the index's own, judged from the objects' status; otherwise
//! every version counts as available unless named as unready, and the decision is made by the
//! same [`decide`](crate::index::decide) function over that assumption (weight annotations in the input still count).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use routing_core::readiness::{ConditionFact, ObjectSource, ResourceFacts};
use routing_core::{RouteMapSpec, Strategy};
use serde_json::Value;

use crate::config::Config;
use crate::index::{Decision, Index, Withdrawals};
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
/// `kind: List` is unpacked. Each document is parsed by its own `mapper` step, so that parsing,
/// the bulk of `iter8-render`'s work (docs/performance.md), can be spread over the cores; a
/// syntax error names the file and the line in the whole stream.
pub fn load_documents(
    file: &str,
    text: &str,
    mapper: &impl Mapper,
) -> Result<Vec<Document>, LoadError> {
    let docs: Vec<Value> = match split_documents(text) {
        Some(chunks) => mapper
            .map(&chunks, |(offset, chunk)| parse_one(file, *offset, chunk))
            .into_iter()
            .collect::<Result<Vec<Value>, LoadError>>()?,
        None => serde_saphyr::from_multiple_with_options(text, yaml_options())
            .map_err(|e| yaml_error(file, 0, &e))?,
    };
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

/// No limit on the size of the input, which may hold every release of a cluster; aliases stay
/// bounded by the default budget.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    if let Some(budget) = options.budget.as_mut() {
        budget.max_documents = usize::MAX;
        budget.max_nodes = usize::MAX;
        budget.max_events = usize::MAX;
        budget.max_total_scalar_bytes = usize::MAX;
        budget.max_reader_input_bytes = None;
    }
    options
}

fn parse_one(file: &str, offset: usize, chunk: &str) -> Result<Value, LoadError> {
    serde_saphyr::from_str_with_options(chunk, yaml_options())
        .map_err(|e| yaml_error(file, offset, &e))
}

/// The parser's first message line, with its line number moved by `offset` (the document's
/// first line in the whole stream).
fn yaml_error(file: &str, offset: usize, e: &serde_saphyr::Error) -> LoadError {
    let text = e.to_string();
    let first = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let message = match e.location() {
        Some(loc) => {
            let rest = first
                .split_once(": ")
                .filter(|(p, _)| p.starts_with("line "))
                .map_or(first, |(_, r)| r);
            format!(
                "line {} column {}: {rest}",
                loc.line() + offset as u64,
                loc.column()
            )
        }
        None => first.to_string(),
    };
    LoadError::Yaml {
        file: file.to_string(),
        message,
    }
}

/// Splits a stream at `---` lines into (lines before the document, document text). `None` when
/// the stream uses YAML features a plain split could get wrong (directives, `...`, content on a
/// `---` line): the caller then parses it as one stream.
fn split_documents(text: &str) -> Option<Vec<(usize, &str)>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut first_line = 0;
    let mut pos = 0;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        if bare.starts_with('%') || bare == "..." {
            return None;
        }
        if let Some(rest) = bare.strip_prefix("---") {
            let rest = rest.trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                return None;
            }
            docs.push((first_line, &text[start..pos]));
            start = pos + line.len();
            first_line = line_no + 1;
        }
        pos += line.len();
    }
    docs.push((first_line, &text[start..]));
    Some(docs)
}

/// How the per-document and per-routemap steps are run. The steps are independent, so a caller
/// may run them on several threads; the result keeps the input order either way.
pub trait Mapper {
    /// `items.iter().map(f)`, collected in order.
    fn map<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R>;
}

/// Runs every step on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct InOrder;

impl Mapper for InOrder {
    fn map<T: Sync, R: Send>(&self, items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
        items.iter().map(f).collect()
    }
}

/// How readiness is judged offline.
#[derive(Debug, Clone, Default)]
pub struct Availability {
    /// Judge each version by the status of its objects in the input.
    pub from_status: bool,
    /// Otherwise: these versions (by name) are unavailable; all others are available.
    pub unready: BTreeSet<String>,
    /// Candidates of guarded routemaps taken as withdrawn by the guard (version name -> why),
    /// for every routemap (key `None`) or one (`Some(key)`): planned out of the route as the
    /// controller plans them.
    pub withdrawn: BTreeMap<Option<RouteMapKey>, Withdrawals>,
}

impl Availability {
    /// The withdrawals that apply to one routemap.
    pub fn withdrawn_for(&self, key: &RouteMapKey) -> Withdrawals {
        let mut all = self.withdrawn.get(&None).cloned().unwrap_or_default();
        if let Some(own) = self.withdrawn.get(&Some(key.clone())) {
            all.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        all
    }
}

/// What was decided for one routemap.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Which routemap.
    pub key: RouteMapKey,
    /// Its decision: a route (or none for strategy `none`), or why it is invalid.
    pub decision: Decision,
}

/// Every routemap's decision, with the index that made them.
#[derive(Debug)]
pub struct Rendering {
    /// One per routemap, in namespace/name order.
    pub routemaps: Vec<Rendered>,
    /// The index, handed back rather than dropped, so that a process about to exit can leave
    /// freeing it to the OS (see `docs/performance.md`).
    pub index: Index,
}

impl Rendering {
    /// The decision of one routemap.
    pub fn decision_of(&self, key: &RouteMapKey) -> Option<&Decision> {
        self.routemaps
            .binary_search_by(|r| r.key.cmp(key))
            .ok()
            .map(|i| &self.routemaps[i].decision)
    }
}

/// Feeds the documents to an index and decides every routemap, in namespace/name order.
pub fn render(
    config: &Config,
    default_namespace: &str,
    documents: &[Document],
    readiness: &Availability,
    mapper: &impl Mapper,
) -> Rendering {
    let types = kinds(config);
    // Parsing routemap specs and extracting facts is per document, so the mapper may share it
    // out; the index is then fed in input order (later documents win, as with `kubectl apply`).
    let prepared = mapper.map(documents, |doc| {
        prepare(&doc.object, &types, default_namespace)
    });
    let mut index = Index::collecting(config);
    for p in prepared {
        if let Some(routemap) = p.routemap {
            index.upsert_routemap(routemap);
        }
        if let Some((short, namespace, name, facts)) = p.resource {
            index.upsert_resource(&short, &namespace, &name, facts);
        }
    }
    // Every routemap decided once, by the index's own decision function.
    let objects: Vec<&RouteMapObject> = index.routemap_objects().collect();
    let decisions = mapper.map(&objects, |object| {
        let withdrawn = readiness.withdrawn_for(&object.key);
        match (&object.spec, readiness.from_status) {
            (Ok(spec), false) => {
                let assumed = Assumed::new(&index, &object.key.namespace, spec, &readiness.unready);
                index.decide_withdrawn(object, &assumed, &withdrawn)
            }
            _ => index.decide_withdrawn(object, &index, &withdrawn),
        }
    });
    let routemaps = objects
        .iter()
        .zip(decisions)
        .map(|(object, decision)| Rendered {
            key: object.key.clone(),
            decision,
        })
        .collect();
    Rendering { routemaps, index }
}

/// What one document contributes to the index.
struct Prepared {
    routemap: Option<RouteMapObject>,
    resource: Option<(String, String, String, ResourceFacts)>,
}

fn prepare(
    obj: &Value,
    types: &HashMap<(String, String), String>,
    default_namespace: &str,
) -> Prepared {
    let mut p = Prepared {
        routemap: None,
        resource: None,
    };
    let meta = &obj["metadata"];
    let (Some(name), Some(kind), Some(api_version)) = (
        meta["name"].as_str(),
        obj["kind"].as_str(),
        obj["apiVersion"].as_str(),
    ) else {
        return p;
    };
    let namespace = meta["namespace"].as_str().unwrap_or(default_namespace);
    if kind == "ConfigMap" && api_version == "v1" && is_routemap(&labels(meta)) {
        p.routemap = Some(RouteMapObject::from_json(obj, default_namespace));
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if let Some(short) = types.get(&(group.to_string(), kind.to_string())) {
        p.resource = Some((
            short.clone(),
            namespace.to_string(),
            name.to_string(),
            ResourceFacts::from_json(obj),
        ));
    }
    p
}

/// Version names of all valid routemaps in the documents (to check `--unready` names).
pub fn version_names(rendered: &[Rendered]) -> BTreeSet<String> {
    rendered
        .iter()
        .filter_map(|r| match &r.decision {
            Decision::Desired { traffic, .. } => {
                Some(traffic.versions.iter().map(|v| v.name.clone()))
            }
            Decision::Invalid { .. } => None,
        })
        .flatten()
        .collect()
}

/// Whether a routemap's strategy writes no route.
pub fn is_none_strategy(decision: &Decision) -> bool {
    matches!(decision, Decision::Desired { route: None, traffic } if traffic.strategy == Strategy::None)
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

/// Availability assumed offline: every resource of a version is ready unless the version is named
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
