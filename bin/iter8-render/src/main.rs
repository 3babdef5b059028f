//! `iter8-render`: the HTTPRoutes the controller would write, and where a request would go,
//! offline, from the same code as the controller (see `routemap_index::offline`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use iter8_render::{Rayon, route_yaml};
use routemap_index::config::Config;
use routemap_index::index::Decision;
use routemap_index::offline::{self, Availability, Document, Mapper, Rendered};
use routing_core::{Request, explain};

/// Rendering allocates many small strings and maps on every core, which mimalloc serves faster
/// than the system allocator (measured in `docs/performance.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Show the routes of Iter8 releases without a cluster.
///
/// Input is one or more multi-document YAML streams of Kubernetes objects (typically
/// `helm template` output); a routemap ConfigMap alone is enough.
#[derive(Debug, Parser)]
#[command(name = "iter8-render", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print, for every routemap found, the HTTPRoute the controller would apply.
    Routes {
        #[command(flatten)]
        input: Input,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// Print, for every routemap, which version serves a request and its `app-version`.
    Explain {
        #[command(flatten)]
        input: Input,
        /// Request header NAME=VALUE (repeatable).
        #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// Request path (with an optional ?query).
        #[arg(long, default_value = "/")]
        path: String,
        /// Request method.
        #[arg(long, default_value = "GET")]
        method: String,
    },
}

#[derive(Debug, Args)]
struct Input {
    /// YAML files to read; `-` or none reads standard input.
    #[arg(value_name = "FILE")]
    files: Vec<String>,
    /// Treat this version (e.g. `httpbin-1`) as not ready (repeatable).
    #[arg(long, value_name = "NAME", conflicts_with = "from_status")]
    unready: Vec<String>,
    /// Treat this candidate of a guarded routemap as withdrawn by the guard (repeatable): the
    /// routes as the controller writes them after withdrawing it.
    #[arg(long, value_name = "NAME")]
    withdrawn: Vec<String>,
    /// Judge each version by the status of its objects in the input, as the controller does.
    #[arg(long)]
    from_status: bool,
    /// Controller config file (resource types); the chart's defaults otherwise.
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Namespace of objects that name none.
    #[arg(long, short, default_value = "default")]
    namespace: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false) when some routemap was invalid (reported on stderr).
fn run(cli: Cli) -> anyhow::Result<bool> {
    let (input, command) = match &cli.command {
        Command::Routes { input, .. } | Command::Explain { input, .. } => (input, &cli.command),
    };
    let config = match &input.config {
        Some(path) => Config::from_yaml(
            &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        )?,
        // Offline there is no scope: show routemaps whatever namespaces they name (with the
        // controller's config, --config, its own rules apply).
        None => Config {
            cluster_scoped: true,
            allow_cross_namespace_references: true,
            ..Config::default()
        },
    };
    let documents = read_inputs(&input.files)?;
    let availability = Availability {
        from_status: input.from_status,
        unready: input.unready.iter().cloned().collect(),
        withdrawn: std::collections::BTreeMap::from([(
            None,
            input
                .withdrawn
                .iter()
                .map(|n| {
                    let w = routemap_index::index::Withdrawn {
                        why: "named by --withdrawn".to_string(),
                        identity: String::new(),
                    };
                    (n.clone(), w)
                })
                .collect(),
        )]),
    };
    let rendering = offline::render(&config, &input.namespace, &documents, &availability, &Rayon);
    let rendered = &rendering.routemaps;
    let known = offline::version_names(rendered);
    for name in &availability.unready {
        if !known.contains(name) {
            eprintln!("warning: --unready {name}: no routemap has a version of that name");
        }
    }
    for name in &input.withdrawn {
        let guarded = rendered.iter().any(|r| {
            rendering.index.spec(&r.key).is_some_and(|s| {
                s.guard.is_some() && s.versions.iter().skip(1).any(|v| &v.name == name)
            })
        });
        if !guarded {
            eprintln!(
                "warning: --withdrawn {name}: no guarded routemap has a candidate of that name (the guard never withdraws a primary, nor a version of a routemap without guard)"
            );
        }
    }
    let mut ok = true;
    for r in rendered {
        if let Decision::Invalid { error } = &r.decision {
            eprintln!("error: routemap {}: {error}", r.key);
            ok = false;
        }
    }
    // One write per 64 KiB, not one per route (stdout alone is line-buffered).
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match command {
        Command::Routes { output, .. } => print_routes(&mut out, rendered, *output)?,
        Command::Explain {
            headers,
            path,
            method,
            ..
        } => {
            let req = Request {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                headers: headers.clone(),
            };
            print_explain(&mut out, &rendering, &req)?;
        }
    }
    out.flush()?;
    // The process exits next, and the OS takes its memory back at once, faster than freeing
    // thousands of documents, index entries and decisions one by one (docs/performance.md).
    std::mem::forget(documents);
    std::mem::forget(rendering);
    Ok(ok)
}

fn read_inputs(files: &[String]) -> anyhow::Result<Vec<Document>> {
    let files: Vec<&str> = if files.is_empty() {
        vec!["-"]
    } else {
        files.iter().map(String::as_str).collect()
    };
    let mut docs = Vec::new();
    for file in files {
        let text = if file == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input")?;
            s
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
        };
        docs.extend(offline::load_documents(file, &text, &Rayon)?);
    }
    Ok(docs)
}

fn print_routes(out: &mut impl Write, rendered: &[Rendered], format: Format) -> anyhow::Result<()> {
    let routes: Vec<_> = rendered
        .iter()
        .filter_map(|r| match &r.decision {
            Decision::Desired {
                route: Some(route), ..
            } => Some(route),
            Decision::Desired { route: None, .. } => {
                eprintln!(
                    "note: routemap {}: strategy none, no route is written",
                    r.key
                );
                None
            }
            Decision::Invalid { .. } => None,
        })
        .collect();
    match format {
        Format::Yaml => {
            // Serializing is a large part of rendering thousands of routes: use every core.
            let texts = Rayon.map(&routes, |r| route_yaml(r));
            for (i, text) in texts.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                out.write_all(text.as_bytes())?;
            }
        }
        Format::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": routes.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
    }
    Ok(())
}

fn print_explain(
    out: &mut impl Write,
    rendering: &offline::Rendering,
    req: &Request,
) -> anyhow::Result<()> {
    let rendered = &rendering.routemaps;
    let headers: Vec<String> = req
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    let request = if headers.is_empty() {
        format!("{} {}", req.method, req.path)
    } else {
        format!("{} {} [{}]", req.method, req.path, headers.join(", "))
    };
    for r in rendered {
        let Decision::Desired { route, traffic } = &r.decision else {
            continue;
        };
        let unavailable: BTreeSet<&str> = traffic
            .versions
            .iter()
            .filter(|v| !v.available)
            .map(|v| v.name.as_str())
            .collect();
        let kept = match route {
            None => "no route (strategy none)".to_string(),
            Some(route) => match explain(route, req) {
                None => "no rule matches (404)".to_string(),
                Some(e) => {
                    let single = e.backends.len() == 1;
                    let mut parts: Vec<String> = e
                        .backends
                        .iter()
                        .map(|s| {
                            let share = if single {
                                String::new()
                            } else {
                                format!(" {:.1}%", s.percent())
                            };
                            let header = s.app_version.as_deref().unwrap_or("-");
                            format!("{}{share} (app-version: {header})", s.backend)
                        })
                        .collect();
                    for (name, percent) in &e.mirrors {
                        parts.push(format!("mirrored to {name} at {percent}%"));
                    }
                    // Where Gateway API leaves the order to the gateway, say so rather than
                    // claim one.
                    let note = e
                        .implementation_specific
                        .map(|n| format!("  ({n})"))
                        .unwrap_or_default();
                    format!("{} [rule {}]{note}", parts.join(", "), e.rule)
                }
            },
        };
        let note = if unavailable.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = unavailable.into_iter().collect();
            format!("  (unavailable: {})", names.join(", "))
        };
        writeln!(out, "{}: {request} -> {kept}{note}", r.key)?;
        if let Some(guard) = rendering
            .index
            .spec(&r.key)
            .and_then(|s| s.guard.as_deref())
        {
            writeln!(out, "  guard: {}", describe_guard(guard))?;
            for (name, why) in traffic.withdrawn() {
                writeln!(out, "  withdrawn: {name} ({why})")?;
            }
        }
    }
    Ok(())
}

/// One line of what a guard judges: `every 10s over 1m: errorRate <= 0.01, ...`.
fn describe_guard(g: &routing_core::GuardSpec) -> String {
    use routing_core::duration::format_duration;
    let mut objectives = Vec::new();
    if let Some(r) = g.objectives.error_rate {
        objectives.push(format!("errorRate <= {}", r.0));
    }
    if let Some(l) = g.objectives.latency_p99 {
        objectives.push(format!("latencyP99 <= {}", format_duration(l.get())));
    }
    format!(
        "every {} over {}: {}; minRequests {}, failAfter {}{}, metrics {}, prometheus {}",
        format_duration(g.interval.get()),
        format_duration(g.window.get()),
        objectives.join(", "),
        g.min_requests,
        g.fail_after,
        if g.unknown_fails {
            ", unknownFails"
        } else {
            ""
        },
        g.metrics.as_str(),
        g.prometheus
            .as_deref()
            .unwrap_or("the controller's default")
    )
}
